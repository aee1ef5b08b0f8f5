"""Validate the scale model against real runs on this machine: `owtrain local` (the real parameter
server, bridge, local invoker and action processes) with 1, 2, 4 and 8 workers and one server, and
with `--shards 1,2` also against the sharded server (`owtrain local --ps-shards 2`).

For each run the measured figures come from its activation records (activations.db: start, end and
the action's own phase timings): updates/s = acknowledged pushes / (last end − first start), and the
time per epoch = that span / epochs. The model then simulates the same job whole (the same chains,
shard sizes, epochs, batch, push interval and time budget; `Run.epochs`), with the calibrated costs
(calibration.json) and its workers and shards on this machine's cores (`Platform.host_cores`: they
compete for them in the model, by processor sharing).

Three inputs are taken from the run itself. The platform's per-activation overhead (the gap between
one activation's end and the next one's start in a chain, plus its registration) and a chain's
start-up (its first activation's shard download, check and registration) are the platform's, which
the model does not predict. The third is the run's compute time per batch: it shows how fast this
machine ran our code in that run, contention included. Since the model itself now simulates the
contention between the run's own workers and shards, that time is not applied as it is (it would
count the contention twice): the CPU costs are scaled by the factor (`external_slowdown`) for which
the model's own compute per batch equals the run's, found by iterating (the model's stretch times
the factor = the measured slowdown); what it holds is what the model leaves out (other processes,
the cores' speed in that run). What the model predicts is then everything else: the push and pull
latencies with their queueing at the shards and the cores, how many batches fit each activation,
and so the throughput and the time per epoch.

    .venv/bin/python bench/scale/validate.py [--workers 1,2,4,8] [--shards 1] [--limit 8000] [--epochs 2]
        [--extra-run RUN_DIR …] [--out bench/scale/validation.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

import costs as calibration  # noqa: E402
from model import Platform, Run, simulate  # noqa: E402

PYTHON = sys.executable  # the interpreter running this script (its venv, its PYTHONPATH)
HOST_CORES = os.cpu_count() or 1  # the runs' workers, shards and evaluator all share this machine's cores
FIXED_POINT_ROUNDS = 8
RUN_BOUND_S = 3600.0  # a simulated run that has not ended by then is reported as not ending (0 updates/s)


def run_local(run_dir: Path, workers: int, limit: int, epochs: int, model: str, batch: int, interval: int,
              budget: float, shards: int = 1) -> float:
    """`owtrain local` as a user runs it; returns its wall time."""
    argv = [PYTHON, "-m", "commands", "local", "--dataset", "fashion-mnist", "--model", model,
            "--workers", str(workers), "--limit", str(limit), "--max-epochs", str(epochs), "--target-accuracy", "0",
            "--batch-size", str(batch), "--update-interval", str(interval), "--time-budget", str(budget),
            "--eval-interval", "60", "--run-dir", str(run_dir), "--no-progress", "--action-memory-mb", "1024",
            "--ps-shards", str(shards)]
    t0 = time.monotonic()
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900,
                   env={**os.environ, "OWTRAIN_LOG": "WARNING"})
    return time.monotonic() - t0


def measured(run_dir: Path) -> dict[str, Any]:
    """Throughput, phases and per-activation overhead of a finished run, from its activation records."""
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    db = sqlite3.connect(run_dir / "activations.db")
    rows = db.execute("SELECT start, end, result FROM activations WHERE status = 'success' ORDER BY start").fetchall()
    db.close()
    results = [(s / 1000, e / 1000, json.loads(r)) for s, e, r in rows]
    phases: dict[str, list[float]] = {}
    for _, _, res in results:
        for name, p in res["phases"].items():
            acc = phases.setdefault(name, [0.0, 0.0])
            acc[0] += p["s"]
            acc[1] += p["n"]
    by_worker: dict[str, list[tuple[float, float, dict]]] = {}
    for item in results:
        by_worker.setdefault(item[2]["worker"], []).append(item)
    gaps = [b[0] - a[1] for chain in by_worker.values() for a, b in zip(chain, chain[1:], strict=False)]
    register = phases.get("register", [0.0, 1.0])
    # a chain's first activation fetches and checks its shard and registers before its first pull
    startups = [sum(chain[0][2]["phases"].get(name, {"s": 0.0})["s"] for name in ("download", "verify", "register"))
                for chain in by_worker.values()]
    span = max(e for _, e, _ in results) - min(s for s, _, _ in results)
    pushes = sum(r["pushes"] for _, _, r in results)
    return {"workers": config["workers"], "shards": config.get("ps_shards", 1), "model": config["model"], "batch": config["batch_size"],
            "interval": config["update_interval"], "budget": config["time_budget_s"],
            "epochs": config["max_epochs"], "samples": sum(r["samples"] for _, _, r in results),
            "pushes": pushes, "activations": len(results), "span_s": span, "updates_per_s": pushes / span,
            "epoch_s": span / config["max_epochs"],
            "compute_per_batch_s": phases["compute"][0] / phases["compute"][1],
            "push_s": phases["push"][0] / max(1.0, phases["push"][1]),
            "pull_s": phases["pull"][0] / max(1.0, phases["pull"][1]),
            "overhead_s": (statistics.median(gaps) if gaps else 0.0) + register[0] / max(1.0, register[1]),
            "startup_s": statistics.mean(startups)}


def predicted(m: dict[str, Any], cal: dict[str, Any], cores: int = HOST_CORES) -> dict[str, Any]:
    """The model's figures for the job of measured run `m`, its workers and shards on `cores` shared
    cores (the model's own contention), the CPU costs scaled by what the model leaves out: the factor
    for which the simulated compute per batch equals the run's (a fixed point, found by iterating)."""
    base = calibration.costs(cal, m["model"], "none", m["batch"])
    slowdown = m["compute_per_batch_s"] / base.compute_per_batch_s
    # the local invoker's quotas (30 concurrent, 60 a minute), pre-warmed containers whose first
    # activation spends the run's measured start-up, loopback links, every process on this machine's cores
    platform = Platform(concurrent=30, per_minute=60, invokers=1, blackbox_fraction=1.0, user_memory_mb=10**6,
                        action_memory_mb=1024, cold_start_s=0.0, warm_overhead_s=m["overhead_s"],
                        download_s=m["startup_s"], link_bytes_per_s=2e9, rtt_s=0.0002, host_cores=cores)
    # the same job, simulated whole (its epochs, start-up and tail: the span measured of the run)
    run = Run(chains=m["workers"], shards=int(m["shards"]), update_interval=m["interval"], batch_size=m["batch"],
              time_budget_s=m["budget"], dataset_samples=round(m["samples"] / m["epochs"]), epochs=m["epochs"],
              duration_s=RUN_BOUND_S)
    external = slowdown
    for _ in range(FIXED_POINT_ROUNDS):
        c = base.slowed(external)
        r = simulate(c, platform, run)
        settled = abs(slowdown / r.compute_stretch / external - 1) < 0.005
        external = slowdown / r.compute_stretch
        if settled:
            break
    return {"slowdown": slowdown, "external_slowdown": external, "model_stretch": r.compute_stretch,
            "updates_per_s": r.updates_per_s, "epoch_s": r.epoch_s, "push_s": r.push_p50_s,
            "samples_per_s": r.samples_per_s, "shard_utilisation": r.shard_utilisation[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--shards", default="1", help="parameter-server shards of each run (e.g. 1,2)")
    ap.add_argument("--limit", type=int, default=8000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--interval", type=int, default=4)
    ap.add_argument("--budget", type=float, default=15.0)
    ap.add_argument("--extra-run", type=Path, action="append", default=[],
                    help="also compare a finished run folder (e.g. a ResNet-18 run)")
    ap.add_argument("--out", type=Path, default=HERE / "validation.json")
    ap.add_argument("--calibration", type=Path, default=calibration.CALIBRATION)
    ap.add_argument("--replay", action="store_true",
                    help="no new runs: predict again for the runs measured in --out (after a model change)")
    args = ap.parse_args()
    cal = calibration.load(args.calibration)
    rows = []
    if args.replay:
        rows = [{k: v for k, v in r.items() if k in ("run", "load", "wall_s", "measured")}
                for r in json.loads(args.out.read_text(encoding="utf-8"))["rows"]]
        args.workers, args.extra_run = "", []
    with tempfile.TemporaryDirectory() as tmp:
        for s in (int(x) for x in args.shards.split(",") if x):
            for w in (int(x) for x in args.workers.split(",") if x):
                run_dir = Path(tmp) / f"lenet5-w{w}-s{s}"
                load = os.getloadavg()[0]
                wall = run_local(run_dir, w, args.limit, args.epochs, "lenet5", args.batch, args.interval, args.budget,
                                 s)
                name = f"lenet5, {w} worker(s)" + (f", {s} shards" if s > 1 else "")
                rows.append({"run": name, "load": load, "wall_s": wall, "measured": measured(run_dir)})
                print(json.dumps(rows[-1]), flush=True)
    for run_dir in args.extra_run:
        m = measured(run_dir)
        rows.append({"run": f"{m['model']}, {m['workers']} worker(s) ({run_dir.name})", "load": None, "measured": m})
    for row in rows:
        row["predicted"] = predicted(row["measured"], cal)
        mu, pu = row["measured"]["updates_per_s"], row["predicted"]["updates_per_s"]
        row["error"] = pu / mu - 1
        print(f"{row['run']:<40} measured {mu:8.2f} updates/s, predicted {pu:8.2f} ({100 * row['error']:+.1f} %); "
              f"epoch {row['measured']['epoch_s']:.1f} s vs {row['predicted']['epoch_s']:.1f} s; slowdown "
              f"{row['predicted']['slowdown']:.2f}", flush=True)
    measured_at = (json.loads(args.out.read_text(encoding="utf-8"))["measured_at"] if args.replay
                   else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    args.out.write_text(json.dumps({"measured_at": measured_at,
                                    "calibration": cal["measured_at"], "rows": rows}, indent=2) + "\n",
                        encoding="utf-8")
    print(f"written to {args.out}")
    print(markdown(rows))
    print(f"plot: {plot(rows, ROOT / 'docs' / 'img' / 'scale-validation.png')}")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The validation table of docs/scale.md."""
    lines = ["| run | load | activations | pushes | compute/batch ms (run) | slowdown | model's contention | "
             "external | updates/s measured | model | error | epoch s measured | model | error | "
             "model's shard utilisation |", "|---|" + "---:|" * 14]
    for r in rows:
        m, p = r["measured"], r["predicted"]
        epoch_error = p["epoch_s"] / m["epoch_s"] - 1
        load = "" if r["load"] is None else f"{r['load']:.1f}"
        lines.append(
            f"| {r['run']} | {load} | {m['activations']} | {m['pushes']} | {1000 * m['compute_per_batch_s']:.1f} | "
            f"{p['slowdown']:.2f} | {p['model_stretch']:.2f} | {p['external_slowdown']:.2f} | "
            f"{m['updates_per_s']:.2f} | {p['updates_per_s']:.2f} | {100 * r['error']:+.1f} % | {m['epoch_s']:.2f} | "
            f"{p['epoch_s']:.2f} | {100 * epoch_error:+.1f} % | {100 * p['shard_utilisation']:.0f} % |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Measured and predicted updates/s of every run, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    xs = range(len(rows))
    ax.bar([x - 0.2 for x in xs], [r["measured"]["updates_per_s"] for r in rows], 0.4, label="measured")
    ax.bar([x + 0.2 for x in xs], [r["predicted"]["updates_per_s"] for r in rows], 0.4, label="model")
    for x, r in zip(xs, rows, strict=True):
        ax.annotate(f"{100 * r['error']:+.0f} %", (x + 0.2, r["predicted"]["updates_per_s"]), ha="center",
                    va="bottom", fontsize=8)
    ax.set_xticks(list(xs), [r["run"].split(" (")[0] for r in rows], rotation=15, fontsize=8)
    ax.set_ylabel("updates/s")
    ax.set_yscale("log")
    ax.set_title("Scale model vs real owtrain local runs (1 or S parameter-server shards)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
