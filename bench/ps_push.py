"""Push throughput of the parameter server over loopback, against the transport's own limit.

Starts the real server (same Flask app, same gevent WSGI server) in a subprocess with one extra
route, `POST /bench/sink`, that only reads the body. Then, for 1, 8 and 32 concurrent clients
(threads, one HTTP session each), it pushes LeNet5-sized fp32 gradients (247 KB) to
`/putGradient` and the same bodies to `/bench/sink` for a fixed time, and prints pushes/s, MB/s,
p50/p99 latency and the ratio push/sink. Finally one client pushes a 45 MB update (an 11.25 M
parameter model, ResNet-18-sized) a few times, to both endpoints.

    .venv/bin/python bench/ps_push.py [--seconds 4] [--clients 1,8,32] [--big-pushes 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from owtrain.codec import CONTENT_TYPE, encode_tensors  # noqa: E402
from owtrain.models import build_model  # noqa: E402
from param_server.auth import mint_token  # noqa: E402
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http  # noqa: E402

SECRET, JOB = "bench-secret", "bench"


class Wide(nn.Module):
    """11.25 M parameters (45 MB of fp32), the size of ResNet-18, in two layers."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(784, 14_336), nn.ReLU(), nn.Linear(14_336, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def serve(model: str, port: int) -> None:
    """Server side: the real app plus a sink route on the same stack."""
    from flask import request

    from param_server.app import create_app
    from param_server.config import PSConfig
    from param_server.runtime import Runtime
    from param_server.serve import serve_runtime

    torch.set_num_threads(1)
    cfg = PSConfig(job=JOB, secret=SECRET, model=model, port=port, strategy="async", lr=1e-6, worker_rate=0,
                   global_rate=0, checkpoint_dir=None)
    rt = Runtime(cfg)
    app = create_app(rt)

    @app.post("/bench/sink")
    def sink():
        body = request.get_data(cache=False)
        return {"status": "read", "bytes": len(body)}

    serve_runtime(rt, app)


def run_clients(url: str, path: str, spec: dict, clients: int, seconds: float | None, pushes: int | None) -> dict:
    """Push from `clients` threads for `seconds` (or `pushes` each); return rate and latency stats."""
    import requests

    latencies: list[float] = []
    sizes: list[int] = []
    lock = threading.Lock()
    start_evt = threading.Event()
    deadline: list[float] = [0.0]

    def worker(i: int) -> None:
        name = f"c{i}-{path.strip('/').replace('/', '_')}"
        session = requests.Session()
        headers = {"Authorization": f"Bearer {mint_token(SECRET, JOB, name, 3600)}", "Content-Type": CONTENT_TYPE}
        grads = {n: torch.full(shape, 1e-3) for n, (shape, _) in spec.items()}
        start_evt.wait()
        seq = 0
        while (pushes is None and time.monotonic() < deadline[0]) or (pushes is not None and seq < pushes):
            body = encode_tensors(grads, {"worker": name, "seq": seq, "base_version": 0, "kind": "grad"})
            t0 = time.perf_counter()
            resp = session.post(url + path, data=body, headers=headers, timeout=120)
            dt = time.perf_counter() - t0
            if resp.status_code != 200:
                raise RuntimeError(f"{path} answered {resp.status_code}: {resp.text[:200]}")
            with lock:
                latencies.append(dt)
                sizes.append(len(body))
            seq += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    t_start = time.monotonic()
    deadline[0] = t_start + (seconds or 0)
    start_evt.set()
    for t in threads:
        t.join()
    wall = time.monotonic() - t_start
    lat = sorted(latencies)
    return {"n": len(lat), "per_s": len(lat) / wall, "mb_s": sum(sizes) / wall / 1e6,
            "p50_ms": 1000 * statistics.median(lat), "p99_ms": 1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))]}


def start_server(model: str, env: dict) -> tuple[ServiceProcess, str]:
    port = free_port()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"ps_push_{port}.log"
    proc = ServiceProcess([PYTHON, str(Path(__file__).resolve()), "--serve", model, "--port", str(port)], log, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/getVersion", timeout=120, proc=proc.proc)
    return proc, url


def row(label: str, push: dict, sink: dict) -> str:
    return (f"| {label} | {push['per_s']:.0f} | {push['mb_s']:.0f} | {push['p50_ms']:.1f} | {push['p99_ms']:.1f} | "
            f"{sink['per_s']:.0f} | {sink['mb_s']:.0f} | {sink['p99_ms']:.1f} | {push['per_s'] / sink['per_s']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--serve", metavar="MODEL", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=4.0, help="measuring time per (endpoint, clients) cell")
    ap.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    ap.add_argument("--big-pushes", type=int, default=5, help="pushes of the 45 MB update (0 skips it)")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    torch.set_num_threads(1)
    env = {"PYTHONPATH": f"{Path(__file__).resolve().parent}:{ROOT}", "OWTRAIN_LOG": "WARNING"}
    print("| clients | push/s | push MB/s | push p50 ms | push p99 ms | sink/s | sink MB/s | sink p99 ms | push/sink |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    proc, url = start_server("lenet5", env)
    try:
        spec = {n: (tuple(p.shape), p.dtype) for n, p in build_model("lenet5").named_parameters()}
        for clients in (int(c) for c in args.clients.split(",")):
            sink = run_clients(url, "/bench/sink", spec, clients, args.seconds, None)
            push = run_clients(url, "/putGradient", spec, clients, args.seconds, None)
            print(row(str(clients), push, sink), flush=True)
    finally:
        proc.stop()
    if args.big_pushes:
        proc, url = start_server("ps_push:Wide", env)
        try:
            spec = {n: (tuple(p.shape), p.dtype) for n, p in Wide().named_parameters()}
            sink = run_clients(url, "/bench/sink", spec, 1, None, args.big_pushes)
            push = run_clients(url, "/putGradient", spec, 1, None, args.big_pushes)
            print(row("1 (45 MB update)", push, sink), flush=True)
        finally:
            proc.stop()


if __name__ == "__main__":
    main()
