"""The run report: JSON summary, plots and model files that load back without owtrain."""

from __future__ import annotations

import json
import warnings

import torch
from safetensors.torch import load_file

from owtrain.models import build_model
from owtrain.report import Point, RunRecord, eval_point, train_points, write_report


def _record(target: float) -> RunRecord:
    points = [Point(100.0 + i, i, "update", loss=2.0 / (i + 1)) for i in range(1, 30)]
    points += [Point(100.0 + i, i, "eval", loss=1.0 / i, accuracy=min(0.99, 0.5 + i / 40)) for i in (5, 10, 20, 29)]
    acts = [{"worker": f"w{i % 2}", "status": "success" if i != 3 else "application error", "start": 100.0 + 5 * i,
             "end": 104.0 + 5 * i, "samples": 100} for i in range(6)]
    return RunRecord(config={"dataset": "mnist", "workers": 2}, points=points, activations=acts,
                     updates_applied=29, rejected={"stale": 3, "duplicate": 1}, started=100.0, finished=131.5,
                     target_accuracy=target)


def test_report_summarises_run_and_writes_loadable_models(tmp_path):
    model = build_model("lenet5")
    report = write_report(tmp_path, _record(0.9), model, (1, 28, 28))

    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == report
    assert report["final"] == {"accuracy": 0.99, "loss": 1 / 29, "version": 29}
    # first evaluation at or above 0.9 is version 20 (0.5 + 20/40 = 1.0 → capped 0.99)
    assert report["target"] == {"accuracy": 0.9, "reached": True, "version": 20, "after_s": 20.0}
    assert report["activations"]["by_status"] == {"success": 5, "application error": 1}
    assert report["activations"]["busy_s"] == 24.0
    assert report["updates"] == {"applied": 29, "rejected": {"stale": 3, "duplicate": 1}}
    assert report["wall_s"] == 31.5
    for name in ("curves.png", "activity.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    weights = load_file(str(tmp_path / "model.safetensors"))
    assert set(weights) == set(model.state_dict())
    x = torch.randn(3, 1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(tmp_path / "model.torchscript.pt"))
    assert torch.allclose(scripted(x), model.eval()(x), atol=1e-6)


def test_report_without_target_or_model(tmp_path):
    report = write_report(tmp_path, _record(0.999), None)
    assert report["target"]["reached"] is False
    assert report["target"]["after_s"] is None
    assert "model.safetensors" not in report["files"]
    assert not (tmp_path / "model.safetensors").exists()


def test_history_and_accuracy_become_points():
    history = {"time": [1.0, 2.0, 3.0], "version": [0, 4, 9], "loss": [None, 2.0, 1.5],
               "accuracy": [None, 0.5, 0.5], "eval_loss": [None, 1.9, 1.9]}
    assert train_points(history) == [Point(2.0, 4, "update", loss=2.0), Point(3.0, 9, "update", loss=1.5)]
    assert eval_point({"version": 3, "accuracy": None, "loss": None, "evaluated_version": None, "time": None}) is None
    assert eval_point({"version": 12, "accuracy": 0.8, "loss": 0.7, "evaluated_version": 10, "time": 5.0}) == \
        Point(5.0, 10, "eval", 0.7, 0.8)
