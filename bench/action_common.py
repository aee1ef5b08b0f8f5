"""Shared set-up of the action benchmarks: a cached shard, a parameter server, an action server.

The shard is put straight into the action's disk cache under its sha256, which is exactly the
state of a container that downloaded it before, so the benchmarks measure the action and not the
object store. The parameter server and the action server are the real processes the tests start.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the test fixtures' process helpers and data builders

import requests  # noqa: E402

from dataset_packer.download import cached_path  # noqa: E402
from dataset_packer.shard import ShardInfo, write_shard  # noqa: E402
from owtrain.tokens import mint_token  # noqa: E402
from tests.actions.helpers import learnable_arrays  # noqa: E402
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http  # noqa: E402

JOB, SECRET = "bench", "bench-secret"


def cached_shard(cache: Path, n: int) -> tuple[Path, str]:
    """Write an MNIST-shaped shard of `n` samples into `cache` as a downloaded one; (path, sha256)."""
    info = ShardInfo(dataset="bench", split="train", index=0, num_shards=1, sample_range=(0, n),
                     classes=tuple(str(i) for i in range(10)), mean=(0.5,), std=(0.25,), scale=255.0)
    tmp = cache / "incoming.tar.gz"
    cache.mkdir(parents=True, exist_ok=True)
    write_shard(tmp, *learnable_arrays(n), info)
    sha = hashlib.sha256(tmp.read_bytes()).hexdigest()
    path = cached_path(cache, sha)
    tmp.replace(path)
    return path, sha


def start_ps(folder: Path, model: str = "lenet5") -> tuple[ServiceProcess, str]:
    port = free_port()
    argv = [PYTHON, "-m", "commands", "ps", "--model", model, "--host", "127.0.0.1", "--port", str(port),
            "--job", JOB, "--worker-rate", "0", "--global-rate", "0"]
    proc = ServiceProcess(argv, folder / "ps.log", env={"OWTRAIN_JOB_SECRET": SECRET})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/getVersion", timeout=120, proc=proc.proc)
    return proc, url


def start_action(folder: Path, cache: Path, wrapper: Sequence[str] = ()) -> tuple[ServiceProcess, str, float]:
    """Start `owtrain action serve` (behind `wrapper`, a command that execs its arguments, if given);
    returns (process, url, monotonic time just before the spawn)."""
    port = free_port()
    started = time.monotonic()
    proc = ServiceProcess([*wrapper, str(Path(PYTHON).parent / "owtrain"), "action", "serve", "--port", str(port)],
                          folder / f"action-{port}.log", env={"OWTRAIN_SHARD_CACHE": str(cache)})
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", timeout=120, proc=proc.proc)
    return proc, url, started


def params(ps_url: str, sha: str, worker: str = "w0", **extra: object) -> dict:
    """Contract 3 parameters; the URL is never fetched because the shard is in the cache."""
    return {"dataset_url": "http://127.0.0.1:9/not-fetched", "dataset_sha256": sha, "apihost": ps_url,
            "ps_token": mint_token(SECRET, JOB, worker, 3600), "job": JOB, "worker": worker,
            "batch_sz_train": 32, **extra}


def init(url: str) -> None:
    requests.post(url + "/init", json={"value": {"name": "dist-train", "env": {}}}, timeout=120).raise_for_status()


def run(url: str, value: dict) -> dict:
    body = {"value": value, "activation_id": "0" * 32, "deadline": str(int(time.time() * 1000) + 300_000)}
    result = requests.post(url + "/run", json=body, timeout=300).json()
    if "error" in result:
        raise RuntimeError(result["error"])
    return result


def proc_mb(pid: int | str, field: str = "VmHWM") -> float:
    """A memory field of /proc/PID/status in MB: VmHWM (peak RSS), RssAnon, RssFile, …"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")



@dataclass(frozen=True)
class Services:
    """A running parameter server and an initialised action server sharing a cached shard."""

    shard: Path
    sha256: str
    ps_url: str
    url: str
    action: ServiceProcess


@contextmanager
def services(samples: int) -> Iterator[Services]:
    """Shard of `samples` in a fresh cache, a parameter server, an initialised action server."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shard, sha = cached_shard(folder / "cache", samples)
        ps, ps_url = start_ps(folder)
        try:
            action, url, _ = start_action(folder, folder / "cache")
            try:
                init(url)
                yield Services(shard, sha, ps_url, url, action)
            finally:
                action.stop()
        finally:
            ps.stop()


def machine_note() -> str:
    """A line to print beside the numbers: this machine is shared, so say how busy it was."""
    load = os.getloadavg()
    return f"machine: {os.cpu_count()} cores shared with other work, load average {load[0]:.1f} / {load[1]:.1f} (1 / 5 min)"
