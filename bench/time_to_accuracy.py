"""Time to accuracy: owtrain (2 local workers) against plain single-process PyTorch, same run.

Both train LeNet5 on the same MNIST arrays (`dataset_packer`'s loader, same normalisation) until
the test accuracy reaches the target, each with one torch thread:

- baseline: one process, SGD with momentum, batch 64, the test set evaluated every
  `--eval-interval` seconds of training; the clock stops while it evaluates (the baseline is not
  charged for its evaluations, which makes the comparison harder for owtrain);
- owtrain: `owtrain local` as a user runs it (defaults: 2 workers, delta mode), in a subprocess;
  the server evaluates in the background every `--eval-interval` seconds. Two times are read from
  its report: from the command's start (fetch, pack, embedded S3, server and action start-up
  included) and from the first activation's start (training only).

Prints both times and the ratios owtrain / baseline, and writes the accuracy curves as JSON and
PNG. Usage: `.venv/bin/python bench/time_to_accuracy.py [--target 0.98] [--out bench/results]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def plain_pytorch(target: float, eval_interval: float, max_epochs: int, seed: int) -> dict:
    """Train LeNet5 in this process until `target` test accuracy; returns the curve and the time."""
    import torch
    from torch.nn import functional as F

    from dataset_packer.config import default_data_dir
    from dataset_packer.sources import load_source
    from owtrain.models import build_model

    torch.set_num_threads(1)
    ds = load_source("mnist", default_data_dir())
    mean, std = ds.mean[0], ds.std[0]
    x = (torch.from_numpy(ds.train_x).float() / ds.scale - mean) / std
    y = torch.from_numpy(ds.train_y).long()
    xt = (torch.from_numpy(ds.test_x).float() / ds.scale - mean) / std
    yt = torch.from_numpy(ds.test_y).long()
    model = build_model("lenet5", seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(seed)
    curve, trained, last_eval = [], 0.0, 0.0
    for _ in range(max_epochs):
        perm = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 64):
            t0 = time.perf_counter()
            idx = perm[i:i + 64]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            trained += time.perf_counter() - t0
            if trained - last_eval >= eval_interval:
                last_eval = trained
                with torch.no_grad():
                    model.eval()
                    acc = float((model(xt).argmax(1) == yt).float().mean())
                    model.train()
                curve.append({"time": round(trained, 3), "accuracy": acc})
                print(f"  plain: {trained:6.1f}s accuracy {acc:.4f}", flush=True)
                if acc >= target:
                    return {"time_to_target_s": trained, "curve": curve}
    return {"time_to_target_s": None, "curve": curve}


def owtrain_local(target: float, eval_interval: float, run_dir: Path) -> dict:
    """Run `owtrain local` (defaults, 2 workers) and read the times from its report."""
    argv = [sys.executable, "-m", "owtrain.cli", "local", "--target-accuracy", str(target), "--workers", "2",
            "--eval-interval", str(eval_interval), "--run-dir", str(run_dir), "--no-progress"]
    t0 = time.time()
    subprocess.run(argv, cwd=ROOT, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"})
    wall = time.time() - t0
    report = json.loads((run_dir / "report.json").read_text())
    started = float(report["started"])  # Unix time; the report's times are relative to it
    starts = [a["started"] for a in _activations(run_dir)]
    first = min(starts) if starts else None
    after = report["target"]["after_s"]
    reached_at = None if after is None else started + after
    return {
        "time_to_target_s": None if reached_at is None else reached_at - t0,
        "training_time_to_target_s": None if reached_at is None or first is None else reached_at - first,
        "first_activation_s": None if first is None else first - started,
        "wall_s": wall, "final_accuracy": report["final"]["accuracy"],
        "curve": [{"time": e["time"], "version": e["version"], "accuracy": e["accuracy"]}
                  for e in report["evaluations"]],
    }


def _activations(run_dir: Path) -> list[dict]:
    from wsk.state import DriverState

    state = DriverState(run_dir / "driver.db")
    try:
        return [row for shard in state.shards() for row in state.history(shard.key) if row["started"]]
    finally:
        state.close()


def plot(path: Path, plain: dict, ow: dict, target: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([p["time"] for p in plain["curve"]], [p["accuracy"] for p in plain["curve"]], "-o", ms=3,
            label="plain PyTorch, 1 process (training time, evaluations excluded)")
    offset = ow["first_activation_s"] or 0.0
    ax.plot([p["time"] - offset for p in ow["curve"]], [p["accuracy"] for p in ow["curve"]], "-o", ms=3,
            label="owtrain local, 2 workers (since the first activation started)")
    ax.axhline(target, ls="--", color="grey", label=f"target {target:g}")
    ax.set_ylim(0.9, 1.0)
    ax.set_xlabel("seconds")
    ax.set_ylabel("test accuracy")
    ax.set_title("LeNet5 on MNIST: time to accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", type=float, default=0.98, help="test accuracy to reach")
    p.add_argument("--eval-interval", type=float, default=2.0, help="seconds between test-set evaluations")
    p.add_argument("--max-epochs", type=int, default=5, help="baseline gives up after this many epochs")
    p.add_argument("--seed", type=int, default=0, help="initial weights and shuffling of the baseline")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results", help="folder for the JSON result")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "time_to_accuracy.png", help="PNG path")
    args = p.parse_args()

    print("baseline: plain single-process PyTorch", flush=True)
    plain = plain_pytorch(args.target, args.eval_interval, args.max_epochs, args.seed)
    print("owtrain local: 2 workers", flush=True)
    run_dir = ROOT / "runs" / f"bench-tta-{time.strftime('%Y%m%d-%H%M%S')}"  # gitignored
    ow = owtrain_local(args.target, args.eval_interval, run_dir)

    base = plain["time_to_target_s"]
    result = {"target": args.target, "plain": plain, "owtrain": ow, "command": " ".join(sys.argv),
              "ratio_end_to_end": None if not base or ow["time_to_target_s"] is None else ow["time_to_target_s"] / base,
              "ratio_training": None if not base or ow["training_time_to_target_s"] is None
              else ow["training_time_to_target_s"] / base}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "time_to_accuracy.json").write_text(json.dumps(result, indent=2))
    plot(args.plot, plain, ow, args.target)

    def fmt(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1f} s"

    print(f"plain PyTorch (1 process):           {fmt(base)} of training to {args.target}")
    print(f"owtrain local (2 workers), training: {fmt(ow['training_time_to_target_s'])}  "
          f"ratio {result['ratio_training'] or float('nan'):.2f}x")
    print(f"owtrain local, whole command:        {fmt(ow['time_to_target_s'])}  "
          f"ratio {result['ratio_end_to_end'] or float('nan'):.2f}x")
    print(f"final owtrain test accuracy {ow['final_accuracy']:.4f}; curves: {args.plot}, "
          f"{args.out / 'time_to_accuracy.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
