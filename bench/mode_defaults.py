"""Per-mode training defaults of `owtrain local`: a short measured sweep.

Runs the real `owtrain local` (2 local workers, LeNet5, async strategy, batch 64) on the first
N MNIST training samples for a fixed number of epochs with no target (so every run trains the
same amount), once per setting, interleaved, and reads the validation accuracy of the final
model from each run's report. Gradient mode ("grad": workers push mean gradients every U
batches, the server's SGD steps with lr and momentum) and delta mode ("delta": workers run local
SGD with lr and momentum and push their model delta every U batches) are swept separately; the
best setting of each becomes `MODE_DEFAULTS` in localrun/config.py (docs/benchmarks.md).

Usage: `.venv/bin/python bench/mode_defaults.py [--limit 20000] [--epochs 3] [--repeats 1]
[--only grad:0.1:0.0:2,…] [--out bench/results/mode_defaults.json]`. Each run takes one to four
minutes on 2 shared cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (mode, lr, momentum, update interval); the first grad row is the shared default before this sweep
SETTINGS = [
    ("grad", 0.1, 0.5, 16),
    ("grad", 0.1, 0.0, 1),
    ("grad", 0.05, 0.9, 1),
    ("grad", 0.05, 0.5, 4),
    ("grad", 0.1, 0.5, 4),
    ("grad", 0.1, 0.0, 2),
    ("grad", 0.1, 0.5, 2),
    ("grad", 0.2, 0.5, 4),
    ("grad", 0.1, 0.9, 4),
    ("delta", 0.1, 0.5, 16),
    ("delta", 0.05, 0.5, 16),
    ("delta", 0.1, 0.5, 4),
]


def run_once(mode: str, lr: float, momentum: float, interval: int, limit: int, epochs: int) -> dict:
    """One `owtrain local` run; its final validation accuracy and wall time."""
    with tempfile.TemporaryDirectory(prefix="owtrain-mode-") as tmp:
        run_dir = Path(tmp) / "run"
        argv = [sys.executable, "-m", "commands", "local", "--workers", "2", "--limit", str(limit),
                "--max-epochs", str(epochs), "--target-accuracy", "0", "--mode", mode, "--lr", str(lr),
                "--momentum", str(momentum), "--update-interval", str(interval), "--run-dir", str(run_dir),
                "--no-progress"]
        started = time.monotonic()
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "OWTRAIN_LOG": "WARNING"})
        wall = time.monotonic() - started
        report_path = run_dir / "report.json"
        if not report_path.exists():
            return {"error": (done.stdout + done.stderr)[-2000:], "wall_s": wall}
        report = json.loads(report_path.read_text())
        return {"val_accuracy": report["final"]["accuracy"], "val_loss": report["final"]["loss"],
                "test_accuracy": (report.get("test") or {}).get("accuracy"),
                "updates": report["updates"]["applied"], "wall_s": round(wall, 1), "exit": done.returncode}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--limit", type=int, default=20000, help="first N MNIST training (and test) samples")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (no target accuracy)")
    p.add_argument("--repeats", type=int, default=1, help="runs per setting, interleaved")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "mode_defaults.json")
    p.add_argument("--only", default=None, metavar="MODE:LR:MOMENTUM:INTERVAL,…",
                   help="run only these settings (default: the whole SETTINGS table)")
    args = p.parse_args()
    settings = SETTINGS
    if args.only:
        settings = [(m, float(lr), float(mom), int(u)) for m, lr, mom, u in
                    (item.split(":") for item in args.only.split(","))]
    results: dict[str, list[dict]] = {}
    for r in range(args.repeats):
        for mode, lr, momentum, interval in settings:
            key = f"{mode} lr={lr} momentum={momentum} update_interval={interval}"
            result = run_once(mode, lr, momentum, interval, args.limit, args.epochs)
            results.setdefault(key, []).append(result)
            print(f"[{r + 1}/{args.repeats}] {key}: {result}", flush=True)
    rows = []
    for key, runs in results.items():
        accs = [x["val_accuracy"] for x in runs if x.get("val_accuracy") is not None]
        rows.append({"setting": key, "runs": runs,
                     "val_accuracy_median": statistics.median(accs) if accs else None,
                     "val_accuracy_range": [min(accs), max(accs)] if accs else None})
    summary = {"limit": args.limit, "epochs": args.epochs, "repeats": args.repeats, "workers": 2,
               "load_average": os.getloadavg(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2))
    print(f"\n| setting | validation accuracy after {args.epochs} epochs (median, range) | wall s |")
    print("|---|---|---|")
    for row in rows:
        walls = [x["wall_s"] for x in row["runs"]]
        acc = row["val_accuracy_median"]
        rng = row["val_accuracy_range"]
        print(f"| {row['setting']} | {'-' if acc is None else f'{acc:.4f}'} "
              f"{'' if rng is None else f'({rng[0]:.4f}–{rng[1]:.4f})'} | {statistics.median(walls):.0f} |")
    print(f"load average {os.getloadavg()}; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
