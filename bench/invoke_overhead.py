"""Overhead of the local invoker per activation, against the bare Docker-action protocol.

Baseline: POST /run straight to one warm `owtrain action serve` process (what OpenWhisk's invoker
does, minus everything else). Measured: the same trivial action through `LocalInvoker`
(invoke + wait: quota check, SQLite record, container pool, RSS/deadline watch, log split at the
sentinel), one at a time and with several in flight. The action is `builtins:dict` (returns its
parameters), so the numbers are the platform's cost, not training's.

    .venv/bin/python bench/invoke_overhead.py [--n 200] [--parallel 4]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

from wsk.config import LocalInvokerConfig
from wsk.invoker import protocol
from wsk.invoker.local import LocalInvoker

ENTRY = "builtins:dict"


def argv(port: str) -> list[str]:
    return [sys.executable, "-m", "commands", "action", "serve", "--port", port, "--entry", ENTRY]


def direct(n: int) -> float:
    """Activations per second of sequential POST /run to one warm server."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(argv(str(port)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(url, timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.05)
        requests.post(url + "/init", json=protocol.init_body("bench", {}), timeout=30).raise_for_status()
        t0 = time.perf_counter()
        for i in range(n):
            # A new connection per call, as the invoker makes: a kept-alive one stalls ~40 ms per
            # call here (delayed ACK against gevent's server), which would flatter the invoker.
            body = protocol.run_body({"i": i}, "guest", "bench", uuid.uuid4().hex, int(time.time() * 1000) + 60_000)
            requests.post(url + "/run", json=body, timeout=30).raise_for_status()
        return n / (time.perf_counter() - t0)
    finally:
        proc.kill()
        proc.wait()


def through_invoker(n: int, parallel: int, db: Path) -> float:
    """Activations per second through LocalInvoker with `parallel` in flight (warm containers)."""
    config = LocalInvokerConfig(db_path=db, concurrent=parallel, per_minute=10**9,
                                action_argv=tuple(argv("{port}")))
    invoker = LocalInvoker(config)
    try:
        for _ in range(parallel):  # warm up: start and /init every container first
            ids = [invoker.invoke("bench", {}) for _ in range(parallel)]
            for activation_id in ids:
                invoker.wait(activation_id, 60)
        t0 = time.perf_counter()
        done = 0
        inflight: list[str] = []
        while done < n:
            while len(inflight) < parallel and done + len(inflight) < n:
                inflight.append(invoker.invoke("bench", {"i": done + len(inflight)}))
            activation = invoker.wait(inflight.pop(0), 60, interval=0.002)
            assert activation.success, activation
            done += 1
        return n / (time.perf_counter() - t0)
    finally:
        invoker.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="activations per measurement (default 200)")
    parser.add_argument("--parallel", type=int, default=4, help="in flight for the parallel run (default 4)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = direct(args.n)
        seq = through_invoker(args.n, 1, Path(tmp) / "seq.db")
        par = through_invoker(args.n, args.parallel, Path(tmp) / "par.db")
    print(f"direct POST /run (baseline)     {base:8.1f} activations/s  1.00x")
    print(f"LocalInvoker, 1 in flight       {seq:8.1f} activations/s  {seq / base:.2f}x")
    print(f"LocalInvoker, {args.parallel} in flight       {par:8.1f} activations/s  {par / base:.2f}x")
    print(f"per-activation overhead (1 in flight): {1000 / seq - 1000 / base:.1f} ms")


if __name__ == "__main__":
    main()
