"""The run report: JSON summary, plots and model files that load back without owtrain."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dataset_packer.shard import ShardInfo, read_shard, write_shard
from localrun.report import Point, RunRecord, eval_point, train_points, write_report
from owtrain.models import build_model
from param_server.evaluator import evaluate


def _record(target: float) -> RunRecord:
    points = [Point(100.0 + i, i, "update", loss=2.0 / (i + 1)) for i in range(1, 30)]
    points += [Point(100.0 + i, i, "eval", loss=1.0 / i, accuracy=min(0.99, 0.5 + i / 40)) for i in (5, 10, 20, 29)]
    acts = [{"worker": f"w{i % 2}", "status": "success" if i != 3 else "application error", "start": 100.0 + 5 * i,
             "end": 104.0 + 5 * i, "samples": 100} for i in range(6)]
    return RunRecord(config={"dataset": "mnist", "workers": 2}, points=points, activations=acts,
                     updates_applied=29, rejected={"stale": 3, "duplicate": 1}, started=100.0, finished=131.5,
                     target_accuracy=target)


def _test_shard(path, n=300):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, n).astype(np.int64)
    x = (rng.integers(0, 40, (n, 1, 28, 28)) + (y * 20)[:, None, None, None]).astype(np.uint8)
    info = ShardInfo(dataset="toy", split="test", index=0, num_shards=1, sample_range=(0, n),
                     classes=tuple(str(i) for i in range(10)), mean=(0.5,), std=(0.25,), scale=255.0)
    write_shard(path, x, y, info)
    return path


def test_report_summarises_run_and_writes_loadable_models(tmp_path):
    model = build_model("lenet5")
    shard = _test_shard(tmp_path / "toy-test.tar.gz")
    out = tmp_path / "run"
    report = write_report(out, _record(0.9), model, (1, 28, 28), test_shard=shard, model_version=29)
    tmp_path = out

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
    exported = torch.export.load(str(tmp_path / "model.pt2")).module()
    assert torch.allclose(exported(x), model.eval()(x), atol=1e-5)
    assert set(report["files"]) >= {"model.safetensors", "model.pt2", "model.onnx", "curves.png"}

    # the test split is scored once, on the weights read back from model.safetensors
    xt, yt = read_shard(shard).to_tensors()
    loss, accuracy = evaluate(model, xt, yt, batch=1000)
    assert report["test"] == {"accuracy": pytest.approx(accuracy), "loss": pytest.approx(loss, rel=1e-5),
                              "version": 29, "samples": 300}
    assert set(report["exports"]) == {"model.pt2", "model.onnx"}
    assert all(c["ok"] and c["images"] == 300 for c in report["exports"].values())


def test_report_without_target_or_model(tmp_path):
    report = write_report(tmp_path, _record(0.999), None)
    assert report["target"]["reached"] is False
    assert report["target"]["after_s"] is None
    assert "model.safetensors" not in report["files"]
    assert report["test"] is None and report["exports"] == {}
    assert not (tmp_path / "model.safetensors").exists()


def test_history_and_accuracy_become_points():
    history = {"time": [1.0, 2.0, 3.0], "version": [0, 4, 9], "loss": [None, 2.0, 1.5],
               "accuracy": [None, 0.5, 0.5], "eval_loss": [None, 1.9, 1.9]}
    assert train_points(history) == [Point(2.0, 4, "update", loss=2.0), Point(3.0, 9, "update", loss=1.5)]
    assert eval_point({"version": 3, "accuracy": None, "loss": None, "evaluated_version": None, "time": None}) is None
    assert eval_point({"version": 12, "accuracy": 0.8, "loss": 0.7, "evaluated_version": 10, "time": 5.0}) == \
        Point(5.0, 10, "eval", 0.7, 0.8)
