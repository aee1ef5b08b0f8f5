"""Aggregate push throughput of a sharded parameter server: 2 shards against 1, for the 45 MB model.

Three `owtrain ps` processes run side by side for ResNet-18 (`--model resnet18`, 11.2 M parameters,
45 MB of fp32): one plain server (S = 1) and the two shards of a two-shard job (`--shard 0/2`,
`--shard 1/2`), each as a user starts it (strategy `async`, rate limits off, a checkpoint folder so
the journal and checkpoints are on unless `--ps-args` says otherwise). The external load generator
of bench/loadgen.py (one process per client, one keep-alive connection each, closed loop) drives
them in turn, interleaved, `--repeats` times: W workers pushing whole 45 MB gradients to the plain
server; the plain server again with 2W connections (the baseline given as many requests in flight
as the sharded cell has, so that the gain is not merely more concurrency); then W workers pushing to
the two shards, a worker being one connection per shard that sends that shard's slice (cut by
owtrain.shard_plan, as the action cuts it). Every push has its own sequence number, so each is
applied. Both shards are measured over the same window.

The figure compared is whole-model pushes per second: for S = 1 the pushes/s, for S = 2 the bytes
per second both shards took together divided by the model's 45 MB (the slower shard's rate is
printed too: a worker's push completes when both slices are acknowledged). Medians and ranges over
the repeats, the servers' CPU per slice and the 1-minute load average are printed; `--out` keeps
every run as JSON.

    .venv/bin/python bench/ps_shards.py [--workers 2] [--seconds 6] [--repeats 3] [--ps-args "--no-journal"]
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import threading
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

from loadgen import Target, measure  # noqa: E402

from owtrain.codec import CONTENT_TYPE, encode_tensors  # noqa: E402
from owtrain.models import build_model, param_spec  # noqa: E402
from owtrain.shard_plan import make_plan  # noqa: E402
from owtrain.tokens import mint_token  # noqa: E402
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http  # noqa: E402

SECRET, JOB, MODEL = "bench-secret", "bench", "resnet18"
SEQ_WIDTH = 12
SEQ_MARK = "9" * SEQ_WIDTH  # placeholder the load generator overwrites with each request's number


def push_body(tensors: dict[str, torch.Tensor], path: Path) -> tuple[Path, int]:
    """A gradient push body of `tensors` and the offset of its sequence-number field."""
    body = encode_tensors(tensors, {"seq": SEQ_MARK, "base_version": "0", "kind": "grad", "samples": "64",
                                    "loss": "1.0"})
    offset = body.find(SEQ_MARK.encode())
    assert offset > 0 and body.find(SEQ_MARK.encode(), offset + 1) < 0, "the seq placeholder must be unique"
    path.write_bytes(body)
    return path, offset


def start_server(folder: Path, shard: str, ps_args: list[str]) -> tuple[ServiceProcess, int]:
    env = {"OWTRAIN_LOG": "WARNING", "OWTRAIN_JOB_SECRET": SECRET}
    port = free_port()
    argv = [PYTHON, "-m", "commands", "ps", "--model", MODEL, "--host", "127.0.0.1", "--port", str(port),
            "--job", JOB, "--strategy", "async", "--lr", "1e-6", "--worker-rate", "0", "--global-rate", "0",
            "--shard", shard, "--checkpoint-dir", str(folder / f"ckpt-{port}"), *ps_args]
    proc = ServiceProcess(argv, folder / f"ps-{port}.log", env=env)
    wait_http(f"http://127.0.0.1:{port}/getVersion", timeout=180, proc=proc.proc)
    return proc, port


def drive(servers: list[tuple[ServiceProcess, int]], bodies: list[tuple[Path, int]], workers: int,
          seconds: float, run_id: str) -> list[dict]:
    """Load every server at once (one `measure` per server, same window length); one result each."""
    results: list[dict] = [{} for _ in servers]

    def one(i: int) -> None:
        proc, port = servers[i]
        body, offset = bodies[i]
        headers = [{"Authorization": f"Bearer {mint_token(SECRET, JOB, f'{run_id}-w{w}', 3600)}",
                    "Content-Type": CONTENT_TYPE} for w in range(workers)]
        target = Target("127.0.0.1", port, "/putGradient", body, headers, offset, SEQ_WIDTH)
        results[i] = measure(target, workers, seconds, warmup=1.0, server_pid=proc.pid)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (proc, _), out in zip(servers, results, strict=True):
        if out.get("errors") or not out.get("n"):
            raise RuntimeError(f"{out.get('errors')} errors, first: {out.get('first_error')}; "
                               f"server log: {proc.log_text()[-2000:]}")
    return results


def spread(values: list[float], digits: int = 2) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2, help="closed-loop workers (one connection per shard each)")
    ap.add_argument("--seconds", type=float, default=6.0, help="measuring window per cell (after 1 s of warm-up)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the two cells")
    ap.add_argument("--ps-args", default="", help="extra `owtrain ps` options, e.g. \"--no-journal\"")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ps_shards.json", help="JSON of every run")
    args = ap.parse_args()
    if args.repeats < 1 or args.seconds <= 0 or args.workers < 1:
        ap.error("--repeats and --workers must be at least 1 and --seconds positive")
    ps_args = shlex.split(args.ps_args)
    torch.set_num_threads(1)
    spec = param_spec(build_model(MODEL))
    grads = {n: torch.full(shape, 1e-3) for n, (shape, _) in spec.items()}
    model_bytes = sum(t.numel() * 4 for t in grads.values())
    print(f"load average at the start: {os.getloadavg()[0]:.2f}; cores: {os.cpu_count()}; model {MODEL} "
          f"{model_bytes / 1e6:.1f} MB; workers {args.workers}; ps args: {ps_args}", flush=True)
    runs: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="ps_shards-") as tmp:
        folder = Path(tmp)
        whole = [push_body(grads, folder / "whole.bin")]
        sliced = [push_body(part, folder / f"slice-{i}.bin") for i, part in enumerate(make_plan(spec, 2).split(grads))]
        servers: dict[int, list[tuple[ServiceProcess, int]]] = {}
        try:
            servers[1] = [start_server(folder, "0/1", ps_args)]
            servers[2] = [start_server(folder, "0/2", ps_args), start_server(folder, "1/2", ps_args)]
            cells = ((1, whole, args.workers), (1, whole, 2 * args.workers), (2, sliced, args.workers))
            for repeat in range(args.repeats):
                for shards, bodies, conns in cells:  # interleaved: 1 shard, 1 shard 2W, 2 shards, again
                    outs = drive(servers[shards], bodies, conns, args.seconds, f"r{repeat}-s{shards}-c{conns}")
                    model_per_s = sum(o["mb_s"] for o in outs) * 1e6 / model_bytes
                    slowest = min(o["per_s"] for o in outs)
                    run = {"shards": shards, "connections_per_shard": conns, "repeat": repeat,
                           "model_pushes_per_s": model_per_s, "slowest_shard_per_s": slowest,
                           "loadavg_1m": os.getloadavg()[0], "per_shard": outs}
                    runs.append(run)
                    cpu = "/".join(f"{o.get('cpu_ms_per_req') or 0:.0f}" for o in outs)
                    print(f"  shards {shards} x{conns} repeat {repeat}: {model_per_s:6.2f} model pushes/s (slowest shard "
                          f"{slowest:.2f}/s), p99 {max(o['p99_ms'] for o in outs):7.0f} ms, server CPU/slice "
                          f"{cpu} ms, load {run['loadavg_1m']:.2f}", flush=True)
        finally:
            for group in servers.values():
                for proc, _ in group:
                    proc.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "ps_args": ps_args, "workers": args.workers,
                                    "runs": runs}, indent=1))
    table(runs)


def table(runs: list[dict]) -> None:
    keys = sorted({(r["shards"], r["connections_per_shard"]) for r in runs})
    by = {k: [r for r in runs if (r["shards"], r["connections_per_shard"]) == k] for k in keys}
    print("\n| shards | connections per shard | model pushes/s | slowest shard pushes/s | p99 ms | "
          "server CPU ms per slice | load avg |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for (s, conns), rs in by.items():
        p99 = [max(o["p99_ms"] for o in r["per_shard"]) for r in rs]
        cpu = [sum(o.get("cpu_ms_per_req") or 0 for o in r["per_shard"]) / s for r in rs]
        print(f"| {s} | {conns} | {spread([r['model_pushes_per_s'] for r in rs])} | "
              f"{spread([r['slowest_shard_per_s'] for r in rs])} | {spread(p99, 0)} | {spread(cpu, 0)} | "
              f"{spread([r['loadavg_1m'] for r in rs], 1)} |")
    sharded = [r for r in runs if r["shards"] == 2]
    for base in (k for k in keys if k[0] == 1):
        ratios = [b["model_pushes_per_s"] / a["model_pushes_per_s"] for a, b in zip(by[base], sharded, strict=False)]
        print(f"2 shards / 1 shard with {base[1]} connections, per interleaved repeat: {spread(ratios)} (goal >= 1.6)")


if __name__ == "__main__":
    main()
