"""Serving throughput and latency: batch size 1 vs fixed batches vs AIMD, the cache, the action.

One script, one model (the seeded LeNet5 in a temporary repository), one machine. Every server
is a real `owtrain serve` process with the cache off (except the cache row), started up front;
the cells run interleaved (round-robin over configurations, the order rotated each round) so a
change in the machine's load hits every configuration alike. The load generator is open-loop
(requests leave at their scheduled times whether or not earlier ones have returned; a latency is
counted from the scheduled time, so a backlog shows) and runs in separate processes, each
request one MNIST-sized image as a base64 PNG. Reported per cell: answered requests/s, p50 and
p99 latency of the answered ones, and how many got 429 (queue full). Medians over rounds, with
the range. Then the cache at a given hit rate, and the `predict` action's cold and warm latency
through the local invoker (a fresh `owtrain action serve` container, then the same one again).

    .venv/bin/python bench/serve_batching.py [--loads 150,300,600] [--seconds 3] [--rounds 3] [--slo-ms 20]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
RESULTS = ROOT / "bench" / "results" / "serve_batching.json"
LOAD_PROCESSES = 2


# -- the load generator (runs as `serve_batching.py --load …` in its own process) -------------------

def png_body(img: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(img).save(out, format="PNG")
    return json.dumps({"instances": [{"b64": base64.b64encode(out.getvalue()).decode()}]}).encode()


def load_worker(url: str, rate: float, seconds: float, seed: int, hot: float) -> dict:
    """Send `rate*seconds` requests at fixed spacing; `hot` of them from 20 repeated images."""
    rng = np.random.default_rng(seed)
    n = max(1, int(rate * seconds))
    hot_bodies = [png_body(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(20)]
    bodies = [hot_bodies[int(rng.integers(20))] if rng.random() < hot else
              png_body(rng.integers(0, 256, (28, 28), dtype=np.uint8)) for _ in range(n)]
    local = threading.local()
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def send(i: int) -> None:
        due = start + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        try:
            code = session.post(url, data=bodies[i], headers={"Content-Type": "application/json"}, timeout=30).status_code
        except requests.RequestException:
            code = 0
        with lock:
            results.append((time.monotonic() - due, code))

    with ThreadPoolExecutor(96) as pool:
        list(pool.map(send, range(n)))
    elapsed = time.monotonic() - start
    return {"lat": [lat for lat, code in results if code == 200], "codes": [code for _, code in results],
            "elapsed": elapsed}


def offer(url: str, rate: float, seconds: float, seed: int, hot: float = 0.0) -> dict:
    """Run LOAD_PROCESSES generators at rate/LOAD_PROCESSES each; merge what they measured."""
    procs = [subprocess.Popen([PYTHON, __file__, "--load", url, str(rate / LOAD_PROCESSES), str(seconds),
                               str(seed * 100 + i), str(hot)], stdout=subprocess.PIPE, text=True)
             for i in range(LOAD_PROCESSES)]
    parts = [json.loads(p.communicate(timeout=seconds * 20 + 60)[0]) for p in procs]
    lat = sorted(v for p in parts for v in p["lat"])
    codes = [c for p in parts for c in p["codes"]]
    elapsed = max(p["elapsed"] for p in parts)
    return {"offered": rate, "rps": len(lat) / elapsed, "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
            "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
            "throttled": codes.count(429), "failed": sum(c not in (200, 429) for c in codes), "sent": len(codes)}


# -- the servers -----------------------------------------------------------------------------------

def make_repository(root: Path) -> Path:
    from owtrain.model_signature import Signature
    from owtrain.models import build_model
    from serving.repository import publish

    sig = Signature(shape=(1, 28, 28), classes=tuple(str(d) for d in range(10)), mean=(0.1307,), std=(0.3081,))
    publish(root, "mnist", "lenet5", build_model("lenet5", seed=0).state_dict(), sig)
    return root


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, repo: Path, batching: str, slo_ms: float, cache: int, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1/models/mnist:predict"
        argv = [PYTHON, "-m", "commands", "serve", "--repository", str(repo), "--port", str(self.port),
                "--batching", batching, "--slo-ms", str(slo_ms), "--cache-size", str(cache), "--anon-rate", "0",
                "--max-queue", "4096", "--max-wait-ms", "2", "--poll-s", "0", "--threads", "1"]
        if batching == "bare":
            argv = [PYTHON, str(ROOT / "bench" / "serve_bare.py"), str(self.port)]
        self.proc = subprocess.Popen(argv, stdout=open(log, "wb"), stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "OMP_NUM_THREADS": "1", "OWTRAIN_LOG": "WARNING"})

    def wait(self) -> None:
        body = png_body(np.zeros((28, 28), dtype=np.uint8))
        for _ in range(600):
            try:
                if requests.post(self.url, data=body, timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server {self.url} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def batch_totals(url: str) -> tuple[float, float]:
    """(instances, forward passes) so far, from /metrics."""
    text = requests.get(url.split("/v1/")[0] + "/metrics", timeout=10).text
    total = count = 0.0
    for line in text.splitlines():
        if line.startswith("owtrain_serve_batch_size_sum"):
            total += float(line.split()[-1])
        elif line.startswith("owtrain_serve_batch_size_count"):
            count += float(line.split()[-1])
    return total, count


# -- the action ------------------------------------------------------------------------------------

def action_latency(repo: Path, tmp: Path, warm_n: int) -> dict:
    from wsk.config import LocalInvokerConfig
    from wsk.invoker.local import LocalInvoker

    params = {"instances": [np.zeros((28, 28), dtype=np.uint8).tolist()], "__ow_path": "/mnist"}
    argv = (PYTHON, "-m", "commands", "action", "serve", "--port", "{port}", "--entry", "serving.action:main")
    cold, warm, inside = [], [], []
    for rep in range(2):
        invoker = LocalInvoker(LocalInvokerConfig(db_path=tmp / f"act{rep}.db", action_argv=argv),
                               env={**os.environ, "OWTRAIN_SERVING_REPOSITORY": str(repo), "OMP_NUM_THREADS": "1"})
        try:
            for i in range(1 + (warm_n if rep == 0 else 0)):
                t = time.monotonic()
                activation = invoker.wait(invoker.invoke("predict", params), timeout=120, interval=0.002)
                assert activation.result["statusCode"] == 200, activation.result
                (cold if i == 0 else warm).append(time.monotonic() - t)
                if i:
                    inside.append(activation.end - activation.start)
        finally:
            invoker.close()
    return {"cold_s": cold, "warm_ms_p50": 1000 * statistics.median(warm),
            "warm_ms_range": [1000 * min(warm), 1000 * max(warm)], "warm_activation_ms_p50": statistics.median(inside)}


# -- the script ------------------------------------------------------------------------------------

def summarise(cells: list[dict]) -> dict:
    def med(key: str) -> tuple[float | None, float | None, float | None]:
        values = [c[key] for c in cells if c[key] is not None]
        return (statistics.median(values), min(values), max(values)) if values else (None, None, None)

    return {"rps": med("rps"), "p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"),
            "throttled": sum(c["throttled"] for c in cells), "failed": sum(c["failed"] for c in cells),
            "mean_batch": cells[-1].get("mean_batch")}


def fmt(triple: tuple) -> str:
    mid, low, high = triple
    return "–" if mid is None else f"{mid:.0f} ({low:.0f}–{high:.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", default="150,300,600", help="offered requests/s, comma-separated")
    ap.add_argument("--seconds", type=float, default=3.0, help="length of one cell")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--slo-ms", type=float, default=20.0, help="AIMD's objective (owtrain serve's default)")
    ap.add_argument("--fixed", default="8,32", help="fixed batch sizes besides 1")
    ap.add_argument("--hit-rate", type=float, default=0.9)
    ap.add_argument("--warm", type=int, default=20, help="warm action invocations")
    args = ap.parse_args()
    loads = [float(v) for v in args.loads.split(",")]
    configs = ["bare", "fixed:1", *(f"fixed:{b}" for b in args.fixed.split(",")), "aimd"]
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    repo = make_repository(tmp / "repo")
    load_before = os.getloadavg()
    servers = {c: Server(repo, c, args.slo_ms, 0, tmp / f"{c.replace(':', '')}.log") for c in configs}
    servers["aimd+cache"] = Server(repo, "aimd", args.slo_ms, 10_000, tmp / "cache.log")
    try:
        for s in servers.values():
            s.wait()
        cells: dict[tuple[str, float], list[dict]] = {}  # "bare": the stack alone (bench/serve_bare.py)
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for load in loads:
                for c in order:
                    before = batch_totals(servers[c].url)
                    cell = offer(servers[c].url, load, args.seconds, seed=r)
                    after = batch_totals(servers[c].url)
                    passes = after[1] - before[1]
                    cell["mean_batch"] = (after[0] - before[0]) / passes if passes else None
                    cells.setdefault((c, load), []).append(cell)
                    print(f"round {r + 1} {c:9s} {load:5.0f}/s: {cell['rps']:6.1f} req/s p50 {cell['p50_ms'] or 0:7.1f} "
                          f"ms p99 {cell['p99_ms'] or 0:7.1f} ms 429: {cell['throttled']}", flush=True)
        cache_load = loads[-1]
        cache_cells: dict[str, list[dict]] = {}
        for r in range(args.rounds):
            for c, server in (("aimd", servers["aimd"]), ("aimd+cache", servers["aimd+cache"])):
                cache_cells.setdefault(c, []).append(offer(server.url, cache_load, args.seconds, 50 + r,
                                                           hot=args.hit_rate))
    finally:
        for s in servers.values():
            s.stop()
    action = action_latency(repo, tmp, args.warm)
    result = {"slo_ms": args.slo_ms, "seconds": args.seconds, "rounds": args.rounds, "loads": loads,
              "load_average_before": load_before, "load_average_after": os.getloadavg(),
              "cells": {f"{c}@{load:g}": summarise(v) for (c, load), v in cells.items()},
              "cache": {"load": cache_load, "hit_rate": args.hit_rate,
                        **{c: summarise(v) for c, v in cache_cells.items()}},
              "action": action}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print("\n| batching | offered req/s | answered req/s | p50 ms | p99 ms | 429s | mean batch |")
    print("|---|---|---|---|---|---|---|")
    for (c, load), v in cells.items():
        s = summarise(v)
        batch = f"{s['mean_batch']:.1f}" if s["mean_batch"] else "–"
        print(f"| {c} | {load:g} | {fmt(s['rps'])} | {fmt(s['p50_ms'])} | {fmt(s['p99_ms'])} | {s['throttled']} | "
              f"{batch} |")
    print(f"\ncache at {args.hit_rate:.0%} hits, {cache_load:g} req/s offered:")
    for c, v in cache_cells.items():
        s = summarise(v)
        print(f"| {c} | {fmt(s['rps'])} | {fmt(s['p50_ms'])} | {fmt(s['p99_ms'])} |")
    print(f"\naction: cold {', '.join(f'{v:.2f}' for v in action['cold_s'])} s; warm p50 {action['warm_ms_p50']:.1f} ms "
          f"(range {action['warm_ms_range'][0]:.1f}–{action['warm_ms_range'][1]:.1f}; "
          f"{action['warm_activation_ms_p50']:.0f} ms of it inside the activation)")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores shared with other work; load average before {load_before[0]:.1f}, "
          f"after {load[0]:.1f}")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--load":
        _, _, url, rate, seconds, seed, hot = sys.argv
        print(json.dumps(load_worker(url, float(rate), float(seconds), int(seed), float(hot))))
    else:
        main()
