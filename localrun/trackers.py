"""The run's results in the trackers ML engineers already use, written once the run is over.

- TensorBoard: the parameter server writes the live scalars itself (`param_server.tensorboard_log`,
  `RUN_DIR/tensorboard`); `write_test_scalars` adds the one test evaluation of the saved model to
  the same folder, so `tensorboard --logdir RUN_DIR/tensorboard` shows validation and test together.
- MLflow (`owtrain local --mlflow-uri URI`): one MLflow run per owtrain run, named after the job,
  with the settings as params, the validation curve (step = model version), the test accuracy,
  and the model files and report as artifacts. The client comes from `mlflow-skinny` (or `mlflow`),
  imported only when asked for; `localrun.config.check_mlflow` says what to install before the run starts.
  MLflow 3 refuses plain-folder stores (`file:`) unless `MLFLOW_ALLOW_FILE_STORE=true` is set;
  `http(s)://` tracking servers need nothing more, `sqlite:` needs the full `mlflow` package.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from localrun.config import TENSORBOARD_DIR, LocalConfig, check_mlflow

log = logging.getLogger(__name__)

EXPERIMENT = "owtrain"
MAX_PARAM_CHARS = 500  # MLflow's limit on a param value; longer ones are cut, not refused


def record_trackers(cfg: LocalConfig, report: Mapping[str, Any]) -> None:
    """After the report of a run: its test evaluation next to the server's TensorBoard files and,
    with `--mlflow-uri`, the MLflow run. A tracker that fails is logged; the run folder has it all."""

    if cfg.tensorboard and report.get("test"):
        write_test_scalars(cfg.run_dir / TENSORBOARD_DIR, report["test"])
    if cfg.mlflow_uri and not report.get("interrupted"):  # a resumed run records the whole run at its end
        files = [cfg.run_dir / name for name in report["files"].values()] + [cfg.run_dir / "report.json"]
        try:
            log_mlflow(cfg.mlflow_uri, cfg.job, report["config"], report["evaluations"], report.get("test"), files,
                       float(report["started"]))
        except Exception as exc:  # an unreachable tracking server must not lose the finished run
            log.error("could not record the run at MLflow %s: %s", cfg.mlflow_uri, exc)


def write_test_scalars(logdir: Path, test: Mapping[str, Any]) -> None:
    """Add `test/accuracy` and `test/loss` of the saved model (step = its version) under `logdir`."""
    from param_server.tensorboard_log import TensorBoardLog

    board = TensorBoardLog(logdir)
    try:
        board.evaluated("test", int(test.get("version") or 0), float(test["loss"]), float(test["accuracy"]))
    finally:
        board.close()


def log_mlflow(uri: str, run_name: str, params: Mapping[str, Any], evaluations: Iterable[Mapping[str, Any]],
               test: Mapping[str, Any] | None, artifacts: Iterable[Path], started: float) -> str:
    """Record one finished run at the MLflow tracking `uri`; returns the MLflow run id.

    `evaluations` are the report's validation points (`version`, `accuracy`, `loss`, `time` in seconds
    since `started`, Unix seconds); metrics `val_accuracy` and `val_loss` are logged per version,
    `test_accuracy` and `test_loss` once.
    """
    check_mlflow()
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    run = client.create_run(experiment_id, run_name=run_name, start_time=int(started * 1000),
                            tags={"owtrain.job": run_name})
    run_id = run.info.run_id
    metrics = []
    for e in evaluations:
        stamp = int((started + float(e.get("time") or 0.0)) * 1000)
        for key in ("accuracy", "loss"):
            if e.get(key) is not None:
                metrics.append(Metric(f"val_{key}", float(e[key]), stamp, int(e["version"])))
    if test is not None:
        for key in ("accuracy", "loss"):
            metrics.append(Metric(f"test_{key}", float(test[key]), int(started * 1000), int(test.get("version") or 0)))
    values = [Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in sorted(params.items())]
    # MLflow takes at most 100 params and 1000 metrics in one log_batch call
    for i in range(0, len(values), 100):
        client.log_batch(run_id, params=values[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[i:i + 1000])
    for path in artifacts:
        if path.is_file():
            client.log_artifact(run_id, str(path))
    client.set_terminated(run_id)
    log.info("MLflow run %s (experiment %r) at %s", run_id, EXPERIMENT, uri)
    return str(run_id)
