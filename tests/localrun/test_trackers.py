"""The run's results in TensorBoard and MLflow, read back with the real libraries."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from localrun.config import check_mlflow
from localrun.trackers import EXPERIMENT, log_mlflow, write_test_scalars


def test_test_accuracy_lands_next_to_the_servers_scalars(tmp_path):
    write_test_scalars(tmp_path / "tb", {"accuracy": 0.9812, "loss": 0.061, "version": 140, "samples": 10000})
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    [acc] = events.Scalars("test/accuracy")
    assert (acc.step, acc.value) == (140, pytest.approx(0.9812))
    assert events.Scalars("test/loss")[0].value == pytest.approx(0.061)


def test_mlflow_run_holds_params_curves_test_accuracy_and_the_model(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this to use a plain folder
    check_mlflow()
    uri = (tmp_path / "mlruns").as_uri()
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"weights")
    report = tmp_path / "report.json"
    report.write_text("{}")
    evaluations = [{"version": v, "accuracy": a, "loss": 1 - a, "time": t}
                   for v, a, t in ((10, 0.9, 1.0), (40, 0.97, 5.0), (80, 0.981, 9.5))]
    params = {"lr": 0.1, "mode": "delta", "workers": 2, "long": "x" * 900}
    run_id = log_mlflow(uri, "mnist-abc123", params, evaluations,
                        {"accuracy": 0.9803, "loss": 0.07, "version": 80}, [model, report, tmp_path / "absent"],
                        started=1_700_000_000.0)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(run_id)
    assert run.info.run_name == "mnist-abc123" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.params["lr"] == "0.1" and run.data.params["mode"] == "delta"
    assert len(run.data.params["long"]) == 500
    history = client.get_metric_history(run_id, "val_accuracy")
    assert [(m.step, m.value) for m in history] == [(10, 0.9), (40, 0.97), (80, 0.981)]
    assert history[1].timestamp == 1_700_000_005_000
    assert run.data.metrics["test_accuracy"] == pytest.approx(0.9803)
    assert sorted(a.path for a in client.list_artifacts(run_id)) == ["model.safetensors", "report.json"]
    local = client.download_artifacts(run_id, "model.safetensors", str(tmp_path / "back"))
    assert open(local, "rb").read() == b"weights"

    # a second owtrain run goes into the same experiment
    again = log_mlflow(uri, "mnist-def456", {}, [], None, [], started=1_700_000_100.0)
    assert client.get_run(again).info.experiment_id == run.info.experiment_id
