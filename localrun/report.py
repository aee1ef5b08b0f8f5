"""The run report: what a finished (or interrupted) run leaves in its folder for a person to read.

`owtrain local` calls `write_report` once at the end with the parameter server's history and the
driver's activation records. It writes `report.json` (numbers a script can check), PNG plots of
loss and accuracy against time and version, of the activations per worker, and of the updates
applied and rejected, plus the final model (`owtrain.exports`: safetensors, torch.export `.pt2`,
ONNX), so the model can be used without owtrain and without pickle. The plots are drawn by a
child process (`localrun.plots`) while this process writes the exports and scores the test set:
both are seconds of CPU on their own, and the report waits for both.

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
from pathlib import Path
from typing import Any

from safetensors.torch import load_file
from torch import nn

from localrun.plots import ACTIVITY_PNG, CURVES_PNG, PHASES_PNG, start_plots
from localrun.record import Point, RunRecord
from owtrain.exports import MODEL_FILE, export_model, verify_exports
from owtrain.phases import sum_phases

log = logging.getLogger(__name__)

REPORT_FILE = "report.json"
EXPORT_CHECK_IMAGES = 1000  # test images each export is run on next to the saved weights
TEST_BATCH = 1000
__all__ = ["ACTIVITY_PNG", "CURVES_PNG", "PHASES_PNG", "Point", "RunRecord", "eval_point", "train_points",
           "write_report"]


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
    report = summarise(record)
    plots = None if light else start_plots(run_dir, record, report["phases"])  # drawn beside the exports
    try:
        if model is not None:
            files.update(export_model(run_dir, model, input_shape, graphs=not light))
            if test_shard is not None and not light:
                test, checks = score_saved_model(run_dir, model, test_shard, model_version)
    except BaseException:
        if plots is not None:
            plots.kill()
        raise
    if plots is not None:
        files.update(plots.wait())
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


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
