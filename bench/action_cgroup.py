"""Does one activation fit OpenWhisk's memory limit? Run it under a real memory cgroup.

OpenWhisk starts each action container with `docker run --memory M --memory-swap M`: a memory
cgroup whose limit counts anonymous memory *and* page cache, and whose kernel reclaims clean file
pages (libtorch's code, the cached shard) before it OOM-kills. Peak RSS (bench/action_memory.py)
counts those file pages as if they could not be reclaimed, so it overstates what must fit. This
script puts the real action server (`owtrain action serve`, initialised, one activation of LeNet5,
batch 32, over a cached 6000-sample shard) into a cgroup-v1 memory cgroup with memory and
memory+swap limited to M, for several M, and reports whether the activation completed or was
OOM-killed. The baseline, in the same run and under the same limits: plain PyTorch training of the
same model on the same shard in a fresh process.

Before each run the page cache is dropped (when /proc/sys/vm/drop_caches is writable), so that
libtorch's pages are read in, and charged to the cgroup, by the process under test, as in a fresh
container; without that they would stay charged to whoever read them first and the peak would
look smaller than it is.

Needs root and a writable cgroup-v1 memory hierarchy (/sys/fs/cgroup/memory), as on the
development machine; it says so and exits otherwise.

    .venv/bin/python bench/action_cgroup.py [--limits 512 256 224 192 176 160]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
from action_common import PYTHON, ROOT, cached_shard, init, machine_note, params, run, start_action, start_ps

CGROUP_ROOT = Path("/sys/fs/cgroup/memory")
JOIN = 'echo $$ > "$0/cgroup.procs" && exec "$@"'  # sh: move this shell into the cgroup, then exec argv


def drop_page_cache() -> bool:
    """Empty the page cache (needs root); False where that is not allowed."""
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1")
    except OSError:
        return False
    return True


@contextmanager
def memory_cgroup(limit_mb: int) -> Iterator[Path]:
    """A fresh cgroup-v1 memory cgroup limited to `limit_mb` of memory and of memory+swap."""
    path = CGROUP_ROOT / f"owtrain-bench-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        limit = str(limit_mb * 1024 * 1024)
        (path / "memory.limit_in_bytes").write_text(limit)
        (path / "memory.memsw.limit_in_bytes").write_text(limit)
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        path.rmdir()


def oom_kills(cgroup: Path) -> int:
    for line in (cgroup / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return 0


def peak_mb(cgroup: Path) -> float:
    """The cgroup's peak charge (anonymous memory plus page cache) in MB."""
    return int((cgroup / "memory.memsw.max_usage_in_bytes").read_text()) / 2**20


def action_under(limit_mb: int, folder: Path, cache: Path, ps_url: str, sha: str) -> tuple[str, float]:
    """('completed N samples' or what went wrong, peak MB) for one activation under `limit_mb`."""
    with memory_cgroup(limit_mb) as cg:
        drop_page_cache()
        try:
            action, url, _ = start_action(folder, cache, wrapper=["sh", "-c", JOIN, str(cg)])
        except RuntimeError as exc:
            return f"server did not start ({exc})", peak_mb(cg)
        try:
            init(url)
            t0 = time.monotonic()
            result = run(url, params(ps_url, sha, worker=f"cg{limit_mb}", epoch_n=1))
            outcome = f"completed, {result['samples']} samples in {time.monotonic() - t0:.1f} s"
        except (requests.RequestException, RuntimeError) as exc:
            outcome = f"failed: {type(exc).__name__}"
        finally:
            action.stop()
        if oom_kills(cg):
            outcome = "OOM-killed"
        return outcome, peak_mb(cg)


def plain_under(limit_mb: int, shard: Path) -> tuple[str, float]:
    """The baseline: plain PyTorch training of the same shard in a fresh process under `limit_mb`."""
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r})\n" \
           f"from action_plain import plain_train\nplain_train({str(shard)!r})"
    with memory_cgroup(limit_mb) as cg:
        drop_page_cache()
        done = subprocess.run(["sh", "-c", JOIN, str(cg), PYTHON, "-c", code], cwd=ROOT, capture_output=True,
                              env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
        outcome = "completed" if done.returncode == 0 else ("OOM-killed" if oom_kills(cg) else
                                                             f"failed (exit {done.returncode})")
        return outcome, peak_mb(cg)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limits", type=int, nargs="+", default=[512, 256, 224, 192, 176, 160], help="limits in MB")
    parser.add_argument("--samples", type=int, default=6000, help="samples in the cached shard")
    args = parser.parse_args()
    try:
        probe = CGROUP_ROOT / f"owtrain-probe-{uuid.uuid4().hex[:8]}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        print(f"cannot create memory cgroups under {CGROUP_ROOT} ({exc}): run as root on a cgroup-v1 host",
              file=sys.stderr)
        return 2
    dropped = drop_page_cache()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shard, sha = cached_shard(folder / "cache", args.samples)
        ps, ps_url = start_ps(folder)
        try:
            for limit in args.limits:
                rows.append((limit, action_under(limit, folder, folder / "cache", ps_url, sha),
                             plain_under(limit, shard)))
        finally:
            ps.stop()
    print(machine_note())
    print(f"one activation, LeNet5, batch 32, grad mode, 1 thread, {args.samples}-sample shard cached; "
          "limit = memory and memory+swap (docker --memory M --memory-swap M); page cache dropped before "
          f"each run: {'yes' if dropped else 'no (not root: peaks understate file pages)'}")
    print(f"{'limit MB':>8}  {'action server':<42}{'peak MB':>8}  {'plain PyTorch (baseline)':<26}{'peak MB':>8}")
    for limit, (action, a_peak), (plain, p_peak) in rows:
        print(f"{limit:>8}  {action:<42}{a_peak:>8.1f}  {plain:<26}{p_peak:>8.1f}")
    fits = [limit for limit, (action, _), _ in rows if action.startswith("completed")]
    print(f"smallest limit the activation completed under: {min(fits) if fits else 'none'} MB "
          f"(OpenWhisk's default is 256 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
