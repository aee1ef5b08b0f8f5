"""How much training the machine's cores give one process against two: the ceiling of `owtrain local`'s
two workers, measured without owtrain.

Each cell trains LeNet5 (SGD, momentum 0.9, batch 64, pre-normalised float inputs, as the plain
baseline of bench/time_to_accuracy.py does) for `--batches` timed batches after a warm-up, in child
processes started together:

- `1x1`: one process, 1 torch thread (plain1's configuration);
- `2x1`: two processes at once, 1 thread each (what owtrain's two workers get at best: no server,
  no evaluator, no pushes);
- `1x2`: one process, 2 threads (plain2's configuration).

The cells run interleaved, `--repeats` times; the table gives each process's ms per batch and the
cell's aggregate samples per second (medians and ranges), with the 1-minute load average.

    .venv/bin/python bench/worker_parallelism.py [--batches 400] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stats import spread

ROOT = Path(__file__).resolve().parents[1]
CELLS = {"1x1": (1, 1), "2x1": (2, 1), "1x2": (1, 2)}  # name -> (processes, threads each)
BATCH = 64


def child(threads: int, batches: int, start_at: float) -> None:
    """Train `batches` timed batches; print the seconds they took as JSON."""
    import torch
    from torch.nn import functional as F

    sys.path.insert(0, str(ROOT))
    from owtrain.models import build_model

    torch.set_num_threads(threads)
    model = build_model("lenet5", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    x, y = torch.randn(BATCH * 32, 1, 28, 28), torch.randint(0, 10, (BATCH * 32,))

    def step(i: int) -> None:
        lo = (i % 32) * BATCH
        loss = F.cross_entropy(model(x[lo:lo + BATCH]), y[lo:lo + BATCH])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(30):
        step(i)
    time.sleep(max(0.0, start_at - time.time()))  # every process of a cell starts timing together
    t0 = time.perf_counter()
    for i in range(batches):
        step(i)
    print(json.dumps({"seconds": time.perf_counter() - t0}))


def run_cell(name: str, batches: int) -> dict:
    procs, threads = CELLS[name]
    start_at = time.time() + 8.0  # room for every child to import torch and warm up first
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    children = [subprocess.Popen([sys.executable, __file__, "--child", str(threads), "--batches", str(batches),
                                  "--start-at", str(start_at)], stdout=subprocess.PIPE, text=True, env=env)
                for _ in range(procs)]
    seconds = [json.loads(c.communicate()[0])["seconds"] for c in children]
    return {"cell": name, "ms_per_batch": [s / batches * 1000 for s in seconds],
            "samples_per_s": sum(batches * BATCH / s for s in seconds), "loadavg_1m": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "worker_parallelism.json")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.batches, args.start_at)
        return
    runs = []
    for repeat in range(args.repeats):
        names = list(CELLS)[repeat % len(CELLS):] + list(CELLS)[:repeat % len(CELLS)]
        for name in names:
            runs.append({**run_cell(name, args.batches), "repeat": repeat})
            print(f"  {runs[-1]}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": " ".join(sys.argv), "runs": runs}, indent=1))
    base = statistics.median(r["samples_per_s"] for r in runs if r["cell"] == "1x1")
    print("\n| cell | processes × threads | ms per batch (each process) | samples/s (all) | vs 1x1 | load avg |")
    print("|---|---|---:|---:|---:|---:|")
    for name, (procs, threads) in CELLS.items():
        rs = [r for r in runs if r["cell"] == name]
        ms = [m for r in rs for m in r["ms_per_batch"]]
        sps = [r["samples_per_s"] for r in rs]
        print(f"| {name} | {procs} × {threads} | {spread(ms, 2, thousands=True)} | {spread(sps, 0, thousands=True)} | "
              f"{statistics.median(sps) / base:.2f}× | {spread([r['loadavg_1m'] for r in rs])} |")


if __name__ == "__main__":
    main()
