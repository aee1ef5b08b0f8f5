"""The run report's plots, drawn in a child process while the parent writes the model files.

matplotlib costs seconds to import and draw on a busy machine, and the exports (`owtrain.exports`)
and the test score need the parent's torch, so `start_plots` draws the three PNGs in a supervised
child (`owtrain.supervised`: it dies with the parent, however the parent ends) and `PlotJob.wait`
joins it before the report is written. The child imports neither torch nor the rest of the run:
only this module, matplotlib and the record read from a JSON file.

    python -m localrun.plots SPEC.json   # what the child runs; SPEC is written by start_plots
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localrun.record import Point, RunRecord
from owtrain import supervised
from owtrain.phases import PHASES

log = logging.getLogger(__name__)

CURVES_PNG = "curves.png"
ACTIVITY_PNG = "activity.png"
PHASES_PNG = "phases.png"
SPEC_FILE = ".plots.json"
PLOTS_TIMEOUT_S = 300.0  # drawing three PNGs takes seconds; far beyond that the child is stuck


def write_plots(run_dir: Path, record: RunRecord, phases: Mapping[str, Any]) -> dict[str, Path]:
    """Draw the three plots into `run_dir` (in this process); file name → path."""
    return {CURVES_PNG: plot_curves(run_dir / CURVES_PNG, record),
            ACTIVITY_PNG: plot_activity(run_dir / ACTIVITY_PNG, record),
            PHASES_PNG: plot_phases(run_dir / PHASES_PNG, phases)}


class PlotJob:
    """The plots' child process; `wait` joins it, `kill` ends it (an error in the parent)."""

    def __init__(self, run_dir: Path, proc: subprocess.Popen[bytes], spec: Path, log_path: Path) -> None:
        self.run_dir, self.proc, self.spec, self.log_path = run_dir, proc, spec, log_path

    def wait(self, timeout: float = PLOTS_TIMEOUT_S) -> dict[str, Path]:
        """The plots written (file name → path); a child that failed is logged and its plots left out."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("the plots took over %.0f s; the report is written without them", timeout)
            return {}
        finally:
            self.kill()  # reaps it (and tells the run lock it ended); kills it if it still runs
        if self.proc.returncode != 0:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            log.error("drawing the plots failed (exit %s, see %s); the report is written without them:\n%s",
                      self.proc.returncode, self.log_path, tail)
            return {}
        return {name: self.run_dir / name for name in (CURVES_PNG, ACTIVITY_PNG, PHASES_PNG)}

    def kill(self) -> None:
        supervised.kill(self.proc, "plots")
        self.spec.unlink(missing_ok=True)


def start_plots(run_dir: Path, record: RunRecord, phases: Mapping[str, Any]) -> PlotJob:
    """Start drawing the plots in a child process (see the module doc); returns at once. Its output
    goes to RUN_DIR/logs/plots.log."""
    spec = run_dir / SPEC_FILE
    spec.write_text(json.dumps({
        "points": [vars(p) for p in record.points], "activations": [_plotted(a) for a in record.activations],
        "updates_applied": record.updates_applied, "rejected": dict(record.rejected), "started": record.started,
        "target_accuracy": record.target_accuracy, "phases": phases}))
    log_path = run_dir / "logs" / "plots.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as out:  # the child holds its own copy of the descriptor
        proc = supervised.spawn([sys.executable, "-m", "localrun.plots", str(spec)], role="plots", env=os.environ,
                                stdout=out, stderr=subprocess.STDOUT)
    return PlotJob(run_dir, proc, spec, log_path)


def _plotted(activation: Mapping[str, Any]) -> dict[str, Any]:
    return {k: activation.get(k) for k in ("worker", "status", "start", "end")}


def main(argv: list[str]) -> int:
    """The child: draw the plots described by the spec file next to it."""
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    record = RunRecord(config={}, points=[Point(**p) for p in spec["points"]], activations=spec["activations"],
                       updates_applied=spec["updates_applied"], rejected=spec["rejected"], started=spec["started"],
                       finished=spec["started"], target_accuracy=spec["target_accuracy"])
    write_plots(spec_path.parent, record, spec["phases"])
    return 0


def plot_curves(path: Path, record: RunRecord) -> Path:
    """2×2 PNG: loss and accuracy against model version and against seconds since the start."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    train = [p for p in record.points if p.kind == "update" and p.loss is not None]
    evals = [p for p in record.points if p.kind == "eval"]
    for col, (xlabel, x) in enumerate((("model version", lambda p: p.version),
                                       ("seconds since start", lambda p: p.time - record.started))):
        ax = axes[0][col]
        if train:
            ax.plot([x(p) for p in train], [p.loss for p in train], ".", ms=2, alpha=0.4, label="train loss (pushes)")
        ev = [p for p in evals if p.loss is not None]
        ax.plot([x(p) for p in ev], [p.loss for p in ev], "-o", ms=3, label="validation loss")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("loss")
        ax.set_yscale("log" if train or ev else "linear")
        ax.legend(loc="upper right")
        ax = axes[1][col]
        ev = [p for p in evals if p.accuracy is not None]
        ax.plot([x(p) for p in ev], [p.accuracy for p in ev], "-o", ms=3, color="tab:green",
                label="validation accuracy")
        if record.target_accuracy is not None:
            ax.axhline(record.target_accuracy, ls="--", color="grey", label=f"target {record.target_accuracy:g}")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy")
        ax.legend(loc="lower right")
    fig.suptitle("owtrain run: loss and accuracy")
    fig.tight_layout()
    return _save(fig, path)


def plot_activity(path: Path, record: RunRecord) -> Path:
    """PNG: one bar per activation on its worker's row over time, and updates applied vs rejected."""
    plt = _pyplot()
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 1]})
    workers = sorted({str(a.get("worker", "?")) for a in record.activations})
    colours = {"success": "tab:blue"}
    for act in record.activations:
        if act.get("start") is None or act.get("end") is None:
            continue
        row = workers.index(str(act.get("worker", "?")))
        start = float(act["start"]) - record.started
        ax.barh(row, float(act["end"]) - float(act["start"]), left=start, height=0.6,
                color=colours.get(str(act.get("status")), "tab:red"), edgecolor="white")
    ax.set_yticks(range(len(workers)), workers)
    ax.set_xlim(left=0)
    ax.set_xlabel("seconds since start")
    ax.set_title(f"{len(record.activations)} activations (red: not successful)")
    labels = ["applied", *record.rejected]
    values = [record.updates_applied, *record.rejected.values()]
    bx.bar(range(len(labels)), values, color=["tab:green"] + ["tab:red"] * len(record.rejected))
    bx.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    bx.set_title("updates")
    fig.tight_layout()
    return _save(fig, path)


def plot_phases(path: Path, phases: Mapping[str, Any]) -> Path:
    """PNG: per worker, one bar of its activations' seconds split by phase, and what no phase covers."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 1.6 + 0.5 * max(1, len(phases["by_worker"]))))
    rows = list(phases["by_worker"].items())
    for row, (_, entry) in enumerate(rows):
        left = 0.0
        for i, name in enumerate(PHASES):
            width = float(entry["phases"][name]["s"])
            ax.barh(row, width, left=left, height=0.6, color=f"C{i}", label=name if row == 0 else None)
            left += width
        other = max(0.0, float(entry["busy_s"]) - left)
        ax.barh(row, other, left=left, height=0.6, color="lightgrey", label="no phase" if row == 0 else None)
    ax.set_yticks(range(len(rows)), [w for w, _ in rows])
    ax.set_xlabel("seconds in activations")
    ax.set_title(f"where {phases['activations']} activations spent their time" if rows
                 else "no activation reported its phases")
    if rows:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=len(PHASES) + 1, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def _pyplot() -> Any:
    """matplotlib with the file-only Agg backend (no display on servers; set before pyplot loads)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=100)
    _pyplot().close(fig)
    os.replace(tmp, path)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
