"""Benchmark: where `owtrain local`'s fixed time goes, its set-up (command start → first activation)
and its wind-down (the evaluation that saw the target → process exit), for one or more source
trees run interleaved (e.g. the tree before a change and after it, on the same load).

Each run is `python -m commands local --target-accuracy 0.98 --no-progress` with `OWTRAIN_LOG=INFO`,
OMP_NUM_THREADS=1 and the dataset cache warm, started from the tree's folder with its code first
on PYTHONPATH. The milestones come from the command's own records: its log lines' timestamps, the
report's `started` and `target.after_s`, the server's log (RUN_DIR/logs/ps.log) and the driver's
activation records (driver.db); the
load average is read before and after every run.

    .venv/bin/python bench/set_up_wind_down.py --trees /tmp/before,. --repeats 2 [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from stats import spread

ROOT = Path(__file__).resolve().parents[1]
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ ([\w.]+): (.*)$")
# log line (logger, start of the message) → milestone name; the first match of each counts
MILESTONES = {
    ("dataset_packer.fetch", ""): "fetch checked",
    ("localrun.shards", ""): "shards ready",
    ("localrun.embedded_s3", "embedded S3"): "S3 up",
    ("param_server.serve", "parameter server for job"): "server listening",
    ("wsk.bridge", "poller queued"): "bridge queued",
    ("localrun.run", "validation accuracy"): "target seen",
    ("localrun.report", "test accuracy"): "test scored",
    ("localrun.report", "report written"): "report written",
}


def run_once(tree: Path, target: float, work: Path) -> dict:
    """One `owtrain local` from `tree`: milestone seconds since the command's start, and the two spans."""
    run_dir = work / f"run-{time.time_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OWTRAIN_LOG": "INFO", "PYTHONPATH": str(tree)}
    load_before = os.getloadavg()[0]
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "commands", "local", "--target-accuracy", str(target),
                           "--run-dir", str(run_dir), "--no-progress"], cwd=tree, env=env, capture_output=True,
                          text=True)
    end = time.time()
    report = json.loads((run_dir / "report.json").read_text())
    db = sqlite3.connect(run_dir / "driver.db")
    try:
        first = db.execute("SELECT min(started) FROM history").fetchone()[0]
    finally:
        db.close()
    marks: dict[str, float] = {"report started": float(report["started"]) - t0}
    ps_log = run_dir / "logs" / "ps.log"
    lines = (proc.stdout + proc.stderr).splitlines()
    lines += [] if not ps_log.exists() else ps_log.read_text(errors="replace").splitlines()
    for line in lines:
        m = LOG_TIME.match(line)
        if not m:
            continue
        when = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for (logger, start), name in MILESTONES.items():
            if m.group(2) == logger and m.group(3).startswith(start) and name not in marks:
                marks[name] = when - t0
    after = report["target"]["after_s"]
    reached = None if after is None else float(report["started"]) + float(after)
    marks["first activation"] = float(first) - t0
    if reached is not None:
        marks["target evaluated"] = reached - t0
    marks["exit"] = end - t0
    return {"tree": str(tree), "exit_code": proc.returncode, "wall_s": end - t0,
            "set_up_s": float(first) - t0, "wind_down_s": None if reached is None else end - reached,
            "files": sorted(report.get("files", {})), "test_accuracy": (report.get("test") or {}).get("accuracy"),
            "milestones": dict(sorted(marks.items(), key=lambda kv: kv[1])),
            "load_before": load_before, "load_after": os.getloadavg()[0]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", default=".", help="comma-separated source trees, run in turn (default: this one)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--target", type=float, default=0.98)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "set_up_wind_down.json")
    args = parser.parse_args()
    trees = [Path(t).resolve() for t in args.trees.split(",")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="owtrain-bench-wind-") as tmp:
        for repeat in range(args.repeats):
            for tree in trees:
                run = run_once(tree, args.target, Path(tmp))
                run["repeat"] = repeat
                runs.append(run)
                print(f"{tree.name or tree}: set-up {run['set_up_s']:.1f} s, wind-down {run['wind_down_s']:.1f} s, "
                      f"exit {run['exit_code']}, load {run['load_before']:.1f}→{run['load_after']:.1f}; "
                      + ", ".join(f"{k} {v:.1f}" for k, v in run["milestones"].items()), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                                    "runs": runs}, indent=2) + "\n")
    for tree in trees:
        mine = [r for r in runs if r["tree"] == str(tree)]
        print(f"{tree}: set-up {spread([r['set_up_s'] for r in mine])} s, wind-down "
              f"{spread([r['wind_down_s'] for r in mine if r['wind_down_s'] is not None])} s, load "
              f"{spread([r['load_before'] for r in mine] + [r['load_after'] for r in mine])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
