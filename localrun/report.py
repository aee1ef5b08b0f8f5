"""The run report: what a finished (or interrupted) run leaves in its folder for a person to read.

`owtrain local` calls `write_report` once at the end with the parameter server's history and the
driver's activation records. It writes `report.json` (numbers a script can check), PNG plots of
loss and accuracy against time and version, of the activations per worker, and of the updates
applied and rejected, plus the final model (`owtrain.exports`: safetensors, torch.export `.pt2`,
ONNX), so the model can be used without owtrain and without pickle.

Every stop and choice during the run is made on the validation split (the evaluations here are
the parameter server's, on `<dataset>-val.tar.gz`). The test split is scored once, here, on the
saved model read back from `model.safetensors`: `report["test"]` is the run's test accuracy, and
the exports are checked against that same model on the first test images (`report["exports"]`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from owtrain.exports import MODEL_FILE, export_model, verify_exports
from owtrain.phases import PHASES, sum_phases

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
EXPORT_CHECK_IMAGES = 1000  # test images each export is run on next to the saved weights
TEST_BATCH = 1000
CURVES_PNG = "curves.png"
ACTIVITY_PNG = "activity.png"
PHASES_PNG = "phases.png"


@dataclass(frozen=True)
class Point:
    """One history point: an evaluation (`kind="eval"`, validation loss and accuracy) or an applied update
    (`kind="update"`, the worker's training loss). `time` is Unix seconds."""

    time: float
    version: int
    kind: str
    loss: float | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """Everything the report is made from; `activations` are the driver's records as dicts with at
    least `worker`, `status`, `start`, `end` (Unix seconds) and the action's result fields."""

    config: Mapping[str, Any]
    points: Sequence[Point]
    activations: Sequence[Mapping[str, Any]]
    updates_applied: int
    rejected: Mapping[str, int]
    started: float
    finished: float
    target_accuracy: float | None
    interrupted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


def train_points(history: Mapping[str, Sequence[Any]]) -> list[Point]:
    """The workers' training loss from the parameter server's `/api/history` columns.

    The server samples once a second; `loss` is the moving average of the losses the workers
    reported with their pushes (None before the first push).
    """
    columns = ("time", "version", "loss")
    return [Point(float(t), int(v), "update", loss=float(loss))
            for t, v, loss in zip(*(history.get(c, []) for c in columns), strict=True) if loss is not None]


def eval_point(accuracy: Mapping[str, Any]) -> Point | None:
    """One `/getAccuracy` answer as an evaluation point (None before the first evaluation)."""
    if accuracy.get("accuracy") is None or accuracy.get("evaluated_version") is None:
        return None
    return Point(float(accuracy["time"]), int(accuracy["evaluated_version"]), "eval",
                 None if accuracy.get("loss") is None else float(accuracy["loss"]), float(accuracy["accuracy"]))


def write_report(run_dir: Path, record: RunRecord, model: nn.Module | None,
                 input_shape: Sequence[int] | None = None, test_shard: Path | None = None,
                 model_version: int | None = None, light: bool = False) -> dict[str, Any]:
    """Write report.json, the plots and (when `model` is given) the model files; return the report.

    `light` (an interrupted session, which must stop within about two seconds): report.json and the
    safetensors weights only; the graph exports, the test score and the plots are written when the
    run ends.

    `input_shape` is the (C, H, W) the model takes; without it only the weights are exported. With
    `test_shard`, the saved weights are scored on it once (`report["test"]`, for `model_version`)
    and each export is checked against them on its first images (`report["exports"]`).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    test: dict[str, Any] | None = None
    checks: dict[str, Any] = {}
    if model is not None:
        files.update(export_model(run_dir, model, input_shape, graphs=not light))
        if test_shard is not None and not light:
            test, checks = score_saved_model(run_dir, model, test_shard, model_version)
    report = summarise(record)
    if not light:
        files[CURVES_PNG] = plot_curves(run_dir / CURVES_PNG, record)
        files[ACTIVITY_PNG] = plot_activity(run_dir / ACTIVITY_PNG, record)
        files[PHASES_PNG] = plot_phases(run_dir / PHASES_PNG, report["phases"])
    report["test"] = test
    report["exports"] = checks
    report["files"] = {k: Path(v).name for k, v in files.items()}
    _atomic_write_bytes(run_dir / REPORT_FILE, json.dumps(report, indent=2, sort_keys=True).encode())
    log.info("report written to %s", run_dir / REPORT_FILE)
    return report


def score_saved_model(run_dir: Path, model: nn.Module, test_shard: Path,
                      version: int | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """({accuracy, loss, version, samples} of the weights in `model.safetensors` on the test shard,
    the export checks) — the weights are read back from the file, so the figure is the saved model's.
    """
    from dataset_packer.shard import read_shard
    from param_server.evaluator import evaluate

    saved = copy.deepcopy(model)
    saved.load_state_dict(load_file(str(run_dir / MODEL_FILE)))
    x, y = read_shard(test_shard).to_tensors()
    loss, accuracy = evaluate(saved, x, y, TEST_BATCH)
    log.info("test accuracy of the saved model (version %s) on %d images: %.4f", version, len(y), accuracy)
    test = {"accuracy": accuracy, "loss": loss, "version": version, "samples": len(y)}
    return test, verify_exports(run_dir, saved, x[:EXPORT_CHECK_IMAGES])


def summarise(record: RunRecord) -> dict[str, Any]:
    """The JSON-ready summary: final accuracy, when the target was first reached, activations and updates."""
    evals = [p for p in record.points if p.kind == "eval" and p.accuracy is not None]
    final = evals[-1] if evals else None
    target = record.target_accuracy
    reached = next((p for p in evals if target is not None and (p.accuracy or 0.0) >= target), None)
    by_status: dict[str, int] = {}
    for act in record.activations:
        status = str(act.get("status", "unknown"))
        by_status[status] = by_status.get(status, 0) + 1
    busy = sum(max(0.0, float(a["end"]) - float(a["start"])) for a in record.activations
               if a.get("start") is not None and a.get("end") is not None)
    return {
        "format": "owtrain-report/1",
        "config": dict(record.config),
        "interrupted": record.interrupted,
        "started": record.started,
        "wall_s": round(record.finished - record.started, 3),
        "final": {
            "accuracy": final.accuracy if final else None,
            "loss": final.loss if final else None,
            "version": final.version if final else None,
        },
        "target": {
            "accuracy": record.target_accuracy,
            "reached": reached is not None,
            "version": reached.version if reached else None,
            "after_s": round(reached.time - record.started, 3) if reached else None,
        },
        "updates": {"applied": record.updates_applied, "rejected": dict(record.rejected)},
        "activations": {
            "count": len(record.activations),
            "by_status": by_status,
            "busy_s": round(busy, 3),
            "samples": sum(int(a.get("samples") or 0) for a in record.activations),
        },
        "evaluations": [{"time": round(p.time - record.started, 3), "version": p.version, "loss": p.loss,
                         "accuracy": p.accuracy} for p in evals],
        "phases": summarise_phases(record.activations),
        **dict(record.extra),
    }


def summarise_phases(activations: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Where the activations' time went (owtrain.phases), over the run and per worker.

    `busy_s` is the wall time of the activations that reported phases (their records' start to
    end), so `busy_s` minus the phases' sum is what no phase covers: the invoker's and the action
    server's own work, and the gaps between a phase and the next.
    """
    timed = [a for a in activations if isinstance(a.get("phases"), Mapping)]
    workers = sorted({str(a.get("worker", "?")) for a in timed})

    def busy(acts: Sequence[Mapping[str, Any]]) -> float:
        return round(sum(max(0.0, float(a["end"]) - float(a["start"])) for a in acts
                         if a.get("start") is not None and a.get("end") is not None), 3)

    return {
        "activations": len(timed),
        "busy_s": busy(timed),
        "total": sum_phases(a["phases"] for a in timed),
        "by_worker": {w: {"activations": sum(str(a.get("worker", "?")) == w for a in timed),
                          "busy_s": busy([a for a in timed if str(a.get("worker", "?")) == w]),
                          "phases": sum_phases(a["phases"] for a in timed if str(a.get("worker", "?")) == w)}
                      for w in workers},
    }


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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
