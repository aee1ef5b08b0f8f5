"""Cold start of the action: process start to the first update pushed, with the shard cached.

A fresh `owtrain action serve` process is spawned (what a new container runs), initialised and
given an activation; a poller watches the parameter server's version and records when the first
update lands. Two baselines run in the same script: the same measurement for a second
activation on the now warm server (same process, shard and model cached), and a fresh process
that only imports torch — the floor of any cold torch worker. Goal: cold start under 2 s.

    .venv/bin/python bench/action_cold_start.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests
from action_common import PYTHON, cached_shard, init, machine_note, params, run, start_action, start_ps


def import_torch_s() -> float:
    """Wall seconds for a fresh Python process that only imports torch."""
    t = time.monotonic()
    subprocess.run([PYTHON, "-c", "import torch"], check=True, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return time.monotonic() - t


def first_push_after(ps_url: str, version: int, started: float, box: dict) -> None:
    """Poll /getVersion every 10 ms; store seconds from `started` until it exceeds `version`."""
    with requests.Session() as session:
        while time.monotonic() - started < 120:
            try:
                if session.get(ps_url + "/getVersion", timeout=5).json()["version"] > version:
                    box["t"] = time.monotonic() - started
                    return
            except requests.RequestException:
                pass  # a busy server; try again
            time.sleep(0.01)


def activation_to_first_push(url: str, ps_url: str, value: dict, started: float) -> float:
    """Run one activation from `started`; returns seconds until the server saw its first push."""
    version = requests.get(ps_url + "/getVersion", timeout=5).json()["version"]
    box: dict = {}
    poller = threading.Thread(target=first_push_after, args=(ps_url, version, started, box))
    poller.start()
    run(url, value)
    poller.join()
    return box["t"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="cold starts to measure (median reported)")
    parser.add_argument("--samples", type=int, default=6000, help="samples in the cached shard")
    args = parser.parse_args()
    cold, warm, spawn, init_s, torch_s = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _, sha = cached_shard(folder / "cache", args.samples)
        ps, ps_url = start_ps(folder)
        try:
            for i in range(args.repeat):
                value = params(ps_url, sha, worker=f"w{i}", epoch_n=1, time_budget_s=1.0)
                action, url, started = start_action(folder, folder / "cache")
                try:
                    spawn.append(time.monotonic() - started)
                    t = time.monotonic()
                    init(url)
                    init_s.append(time.monotonic() - t)
                    cold.append(activation_to_first_push(url, ps_url, value, started))
                    warm.append(activation_to_first_push(url, ps_url, value, time.monotonic()))
                finally:
                    action.stop()
                torch_s.append(import_torch_s())
        finally:
            ps.stop()
    med = statistics.median
    print(machine_note())
    print(f"{args.repeat} cold starts, shard of {args.samples} samples cached on disk, LeNet5, batch 32, 1 thread")
    print(f"  spawn to listening      {med(spawn):6.2f} s   (python, flask, gevent, and the entry's import: torch)")
    print(f"  /init                   {med(init_s):6.2f} s   (exports env; the entry is already imported)")
    print(f"  cold: spawn->1st push   {med(cold):6.2f} s   (all: {', '.join(f'{c:.2f}' for c in cold)})")
    print(f"  warm: /run->1st push    {med(warm):6.2f} s   (baseline: same server, second activation)")
    print(f"  cold / warm             {med(cold) / med(warm):6.1f}x")
    print(f"  baseline: import torch  {med(torch_s):6.2f} s   (fresh process; cold / this = "
          f"{med(cold) / med(torch_s):.2f}x, cold - this = {med(cold) - med(torch_s):.2f} s)")
    print(f"goal < 2 s: {'met' if med(cold) < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
