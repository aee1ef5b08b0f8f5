"""The docker invoker against the process invoker, on one machine, interleaved in one script.

1. **Cold start**: from `invoke` to the parameter server applying the activation's first update,
   for a fresh container of each invoker (no stem cell), and the container's peak memory: the
   server process's peak RSS (VmHWM) for both, and for docker the container's memory cgroup peak
   (`memory.max_usage_in_bytes`, page cache included: what the engine's limit counts).
2. **Per-activation overhead** of a warm container, with the test entry that only echoes: a direct
   `POST /run` to the container's server; the docker invoker without pausing (pause grace 10 s:
   records, log reading up to the sentinels); the docker invoker pausing after every activation
   and unpausing for the next (pause grace 0); the process invoker.
3. **Time to accuracy** (`--tta`): `owtrain local --invoker docker` against `--invoker local`,
   LeNet5 on `--limit` MNIST samples to `--target`; seconds of the whole command and from the first
   activation's start to the target, read from the run's report.

Needs root and the Debian engine (like tests/docker/); starts its own dockerd and uses the image
`--image` (default the tests' `owtrain-action:test`, built with `scripts/build-image.sh --offline`
when missing).

    .venv/bin/python bench/docker_invoker.py [--rounds 3] [--calls 20] [--tta N --limit 2000 --target 0.8]
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from action_common import ROOT, cached_shard, machine_note, params, proc_mb, start_ps
from stats import spread

from tests.fixtures.docker import IMAGE, build_image, running_engine, why_no_engine
from tests.fixtures.wsk import action_argv
from wsk.config import DockerConfig, LocalInvokerConfig
from wsk.invoker.docker import DockerContainer, DockerInvoker
from wsk.invoker.local import LocalInvoker

ECHO = "tests.wsk.entries:main"
TRAINING = {"batch_sz_train": 32, "update_intv": 2, "mode": "delta", "lr": 0.05, "threads": 1, "device": "cpu",
            "time_budget_s": 2}


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def serve_folder(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """A plain HTTP server of `folder` on loopback: the shard's URL for both kinds of container."""
    handler = functools.partial(QuietFiles, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}"


def only_container(invoker: LocalInvoker) -> object:
    """The one warm container an invoker holds after a single activation."""
    return next(c for pool in invoker._idle.values() for c in pool)  # noqa: SLF001 - a benchmark's peek


def cgroup_peak_mb(container: DockerContainer) -> float:
    cid = container.inspect("{{.Id}}")
    for root in (Path("/sys/fs/cgroup/memory/docker"), Path("/sys/fs/cgroup/system.slice")):
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            for path in (root / cid / name, root / f"docker-{cid}.scope" / name):
                if path.exists():
                    return int(path.read_text()) / 2**20
    return float("nan")


def cold_start(kind: str, make: Callable[[], LocalInvoker], ps_url: str, value: dict) -> dict:
    from owtrain.ps_client import PSClient
    from owtrain.retry import RetryPolicy

    reader = PSClient(ps_url, value["ps_token"], timeout=10, policy=RetryPolicy(attempts=3))
    before = reader.version()
    invoker = make()
    try:
        t0 = time.monotonic()
        activation_id = invoker.invoke("dist-train", value)
        while reader.version() <= before:
            if (ended := invoker.get(activation_id)) is not None:
                raise RuntimeError(f"{kind}: the activation ended without an update: {ended.result}")
            time.sleep(0.02)
        first_update = time.monotonic() - t0
        activation = invoker.wait(activation_id, 300, interval=0.02)
        if not activation.success:
            raise RuntimeError(f"{kind}: {activation.result}")
        container = only_container(invoker)
        if isinstance(container, DockerContainer):
            pid = container.inspect("{{.State.Pid}}")
            return {"first_update_s": first_update, "rss_peak_mb": proc_mb(pid), "cgroup_peak_mb": cgroup_peak_mb(container)}
        return {"first_update_s": first_update, "rss_peak_mb": proc_mb(container.proc.pid)}  # type: ignore[attr-defined]
    finally:
        invoker.close()


def overhead(invoker: LocalInvoker, calls: int, direct: bool) -> list[float]:
    """Seconds per echo activation on a warm container: through the invoker, or a direct /run."""
    import requests

    invoker.wait(invoker.invoke("a", {}), 120)
    times = []
    container = only_container(invoker)
    for _ in range(calls):
        t0 = time.monotonic()
        if direct:
            body = {"value": {}, "activation_id": "0" * 32, "deadline": str(int(time.time() * 1000) + 60_000)}
            requests.post(container.url + "/run", json=body, timeout=60).raise_for_status()  # type: ignore[attr-defined]
        else:
            invoker.wait(invoker.invoke("a", {}), 60, interval=0.002)
        times.append(time.monotonic() - t0)
    return times


def time_to_accuracy(invoker: str, env: dict, limit: int, target: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        argv = [sys.executable, "-m", "commands", "local", "--run-dir", str(run_dir), "--no-progress",
                "--limit", str(limit), "--target-accuracy", str(target), "--max-epochs", "8", "--invoker", invoker]
        if invoker == "docker":
            argv += ["--image", IMAGE]
        t0 = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        command = time.monotonic() - t0
        if done.returncode != 0:
            raise RuntimeError(f"owtrain local --invoker {invoker} exited {done.returncode}: {done.stderr[-2000:]}")
        report = json.loads((run_dir / "report.json").read_text())
        return {"command_s": command, "accuracy": report["final"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="cold starts of each invoker, interleaved (0: none)")
    parser.add_argument("--calls", type=int, default=20, help="warm echo activations per overhead row (0: none)")
    parser.add_argument("--tta", type=int, default=0, help="runs of owtrain local with each invoker, interleaved")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--target", type=float, default=0.8)
    args = parser.parse_args()
    if reason := why_no_engine():
        sys.exit(f"no Docker engine: {reason}")
    with running_engine() as engine, tempfile.TemporaryDirectory() as tmp:
        if engine.docker("image", "inspect", IMAGE).returncode != 0:
            build_image(engine)
        folder = Path(tmp)
        shard, sha = cached_shard(folder / "www", 512)
        web, base = serve_folder(shard.parent)
        ps, ps_url = start_ps(folder)
        try:
            value = {**params(ps_url, sha), **TRAINING, "dataset_url": f"{base}/{shard.name}"}
            mounts = ("-v", f"{ROOT / 'tests'}:/opt/owtrain/tests:ro")

            def limits(name: str, entry: str | None = None) -> LocalInvokerConfig:
                # 256 MB is a real cgroup for docker; the process invoker's stricter RSS rule needs 512
                # (a LeNet5 activation's RSS peaks near 272 MB, most of it reclaimable file pages).
                return LocalInvokerConfig(db_path=folder / f"{name}.db", memory_mb=256 if name == "docker" else 512,
                                          timeout_ms=120_000, action_argv=action_argv(entry))

            def docker(grace: float, entry: str | None = None) -> DockerInvoker:
                command = ("owtrain", "action", "serve", "--entry", entry) if entry else ()
                config = DockerConfig(image=IMAGE, pause_grace_s=grace, command=command,
                                      extra_args=mounts if entry else ())
                return DockerInvoker(limits("docker", entry), config, engine.env)

            def process(entry: str | None = None) -> LocalInvoker:
                # A shard cache of its own per container, as each docker container has.
                env = {**engine.env, "OWTRAIN_SHARD_CACHE": tempfile.mkdtemp(dir=folder)}
                return LocalInvoker(limits("process", entry), env)

            cold: dict[str, list[dict]] = {"process": [], "docker": []}
            for r in range(args.rounds):
                for kind in (("process", "docker") if r % 2 == 0 else ("docker", "process")):
                    make = process if kind == "process" else functools.partial(docker, 10.0)
                    # A worker of its own each time: the server takes each worker's pushes once.
                    fresh = {**value, **params(ps_url, sha, worker=f"{kind}{r}"), **TRAINING,
                             "dataset_url": value["dataset_url"]}
                    cold[kind].append(cold_start(kind, make, ps_url, fresh))
                    print(f"cold start {r} {kind}: {cold[kind][-1]}", flush=True)
            rows: dict[str, list[float]] = {}
            for name, make_invoker, direct in [] if args.calls == 0 else (("direct POST /run to the container", lambda: docker(10.0, ECHO), True),
                                               ("docker invoker, no pause (grace 10 s)", lambda: docker(10.0, ECHO), False),
                                               ("docker invoker, pause + unpause (grace 0)", lambda: docker(0.0, ECHO), False),
                                               ("process invoker", lambda: process(ECHO), False)):
                invoker = make_invoker()
                try:
                    rows[name] = overhead(invoker, args.calls, direct)
                    print(f"{name}: median {statistics.median(rows[name]) * 1000:.1f} ms", flush=True)
                finally:
                    invoker.close()
            tta: dict[str, list[dict]] = {}
            for r in range(args.tta):
                for kind in (("local", "docker") if r % 2 == 0 else ("docker", "local")):
                    tta.setdefault(kind, []).append(time_to_accuracy(kind, engine.env, args.limit, args.target))
                    print(f"owtrain local --invoker {kind}: {tta[kind][-1]}", flush=True)
        finally:
            ps.stop()
            web.shutdown()
    print(machine_note())
    if args.rounds:
        print(f"\ncold start, invoke -> first update applied, {args.rounds} rounds interleaved (median, range):")
    for kind, runs in cold.items() if args.rounds else ():
        line = f"  {kind:8s} {spread([r['first_update_s'] for r in runs], 2)} s, peak RSS {spread([r['rss_peak_mb'] for r in runs], 0)} MB"
        if kind == "docker":
            line += f", cgroup peak {spread([r['cgroup_peak_mb'] for r in runs], 0)} MB"
        print(line)
    if rows:
        print(f"\nwarm echo activation, {args.calls} calls each (median, range, ms):")
    for name, times in rows.items():
        print(f"  {name:44s} {spread(times, 1, scale=1000)}")
    if tta:
        print(f"\nowtrain local --limit {args.limit} --target-accuracy {args.target}, {args.tta} runs each (median, range):")
    for kind, outs in tta.items():
        print(f"  --invoker {kind:7s} command {spread([o['command_s'] for o in outs], 1)} s, "
              f"final validation accuracy {spread([o['accuracy'] for o in outs], 4)}")


if __name__ == "__main__":
    main()
