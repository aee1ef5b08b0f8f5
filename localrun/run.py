"""`owtrain local`: the whole pipeline on one machine, read top to bottom.

invoker (it pre-warms one container per worker meanwhile) → fetch → pack (train shards, a
validation shard held out of the training samples, the test shard) → parameter server process
(evaluates on the validation shard, on which every stop and choice is made; writes TensorBoard
files; it starts while the next two steps run) → S3 (embedded moto, or `--s3-endpoint`) → upload → event bridge in poller mode (moto
sends no bucket notifications) with its driver, handed the uploaded train shards so that their
chains of activations start at once (the poller finds any shard uploaded later) → watch until the target accuracy or the epoch limit → close the job on
the server → final model and report (the test set is scored once, on the saved model) → static
dashboard copy, TensorBoard test scalars, MLflow (`--mlflow-uri`). The upload comes before the bridge so that a resumed run's
embedded store (fresh and empty) holds the shards again before the driver presigns their URLs.

Every process it starts runs in its own process group and is stopped here, in reverse order, on
success, error and Ctrl-C alike; after the run they stop on a thread while the report is written
(its plots in a supervised child), and `run_local` returns only once both are done. Ctrl-C lets the running activations return, has the parameter
server write a checkpoint and keeps the driver's state and the shards in the run folder, so
`owtrain local --resume RUN_DIR` continues where it stopped.
"""

from __future__ import annotations

import logging
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm.contrib.logging import logging_redirect_tqdm

from localrun.config import LocalConfig
from localrun.progress import EpochBars
from localrun.reconcile import check_records_agree
from localrun.report import Point, RunRecord, eval_point, train_points, write_report
from localrun.run_lock import RunLock
from localrun.services import (
    STATIC_DASHBOARD,
    check_port_free,
    free_port,
    start_bridge,
    start_invoker,
    start_ps,
)
from localrun.sessions import Session, record_session
from localrun.shards import prepare_shards
from localrun.trackers import record_trackers
from owtrain.errors import OwtrainError
from owtrain.naming import held_out_shard
from owtrain.ps_shards import ShardSet, job_version
from owtrain.s3 import S3Settings
from param_server.checkpoint import list_checkpoints
from param_server.dashboard import write_static

if TYPE_CHECKING:
    from wsk.job import Job

log = logging.getLogger(__name__)

SECRET_FILE = "secret"
WATCH_INTERVAL_S = 0.5
FINAL_EVAL_WAIT_S = 60.0
# Ctrl-C: how long running activations may take to return after the job is closed (they return at
# their next push, every few tenths of a second) and how long to wait for the server to evaluate
# the final version, before stopping anyway; together about two seconds.
INTERRUPT_GRACE_S = 1.0
INTERRUPT_EVAL_WAIT_S = 0.5
INTERRUPT_STOP_S = 1.0  # the server's clean shutdown after Ctrl-C (checkpointed already): then SIGKILL
INTERRUPT_REASON = "owtrain local was interrupted (Ctrl-C); `owtrain local --resume` continues the run"


@dataclass(frozen=True)
class Outcome:
    """How a run ended: the final model's validation accuracy and loss (None if never evaluated), the
    saved model's test accuracy (None without a test shard or a model) and where the report is."""

    accuracy: float | None
    loss: float | None
    version: int
    test_accuracy: float | None
    reached_target: bool
    interrupted: bool
    failed_chains: list[str]
    report: Path


def run_local(cfg: LocalConfig) -> Outcome:
    """Train end to end as described in the module docstring; KeyboardInterrupt ends it cleanly.

    The run folder's lock (`localrun.run_lock`) is held throughout: a second session on the same
    folder, or one that finds an earlier session's processes or another process on the server's
    port, is refused with ConfigError before any work starts.
    """
    lock = RunLock.acquire(cfg.run_dir)
    try:
        return _run(cfg)
    finally:
        lock.close()


def _run(cfg: LocalConfig) -> Outcome:
    started = time.time()
    if cfg.ps_port == 0:
        # The port is part of the job's identity in the driver's state: a resumed run reuses it.
        cfg = replace(cfg, ps_port=free_port(cfg.bind_host))
    for shard in range(cfg.ps_shards):  # shard i listens on ps_port + i
        check_port_free(cfg.bind_host, cfg.ps_port + shard)
    cfg.save()
    secret_file = _job_secret(cfg.run_dir)
    secret = secret_file.read_text().strip()
    interrupted = False
    with ExitStack() as stack:
        invoker = stack.enter_context(start_invoker(cfg))                           # pre-warms containers
        shards_dir, samples_per_epoch = prepare_shards(cfg)                         # fetch + pack
        ps = stack.enter_context(start_ps(cfg, secret_file, shards_dir, samples_per_epoch))  # parameter server,
        store = stack.enter_context(object_store(cfg))                              # S3 while it starts
        uploaded = upload(store, shards_dir, cfg)                                   # shards into the bucket
        ps.wait_ready()
        admin = ShardSet(ps.urls, ps.admin_token)  # every shard (one without --ps-shards)
        check_records_agree(cfg.run_dir, admin)                                     # after a crash
        print(f"dashboard: {ps.url}/dashboard", flush=True)
        bridge = stack.enter_context(start_bridge(cfg, secret, ",".join(ps.urls), store, invoker,  # → driver
                                                  uploaded))
        bars = EpochBars(samples_per_epoch, cfg.max_epochs, bridge.samples_before, cfg.progress)
        evals: list[Point] = []
        try:
            with logging_redirect_tqdm():  # log lines above the bars, not through them
                watch(cfg, admin, bridge, bars, evals)                              # until target / epochs
        except KeyboardInterrupt:
            interrupted = True
            print("\ninterrupted: closing the job, checkpointing and stopping every process (resume with "
                  f"`owtrain local --resume {cfg.run_dir}`)", file=sys.stderr, flush=True)
        with _no_interrupts():
            end = wind_down(cfg, admin, bridge, evals, interrupted)
            bars.close(end.status, end.final)
        if interrupted:
            ps.stop_timeout_s = INTERRUPT_STOP_S
        services = stack.pop_all()
    with _in_background(services.close, "stop-services"):  # the servers stop while the report is written
        return _finish(cfg, started, samples_per_epoch, shards_dir, ps.url, bars, end, evals, interrupted)


def _finish(cfg: LocalConfig, started: float, samples_per_epoch: int, shards_dir: Path, dashboard: str,
            bars: EpochBars, end: WindDown, evals: list[Point], interrupted: bool) -> Outcome:
    """The session's record, the report (model files, test score, plots), the static dashboard, the
    trackers and the published model, from what the services said last (`wind_down`)."""
    session = Session(started=started, finished=time.time(), updates_applied=int(end.status["updates"]["applied"]),
                      rejected=end.status["updates"].get("rejected", {}), interrupted=interrupted,
                      points=train_points(end.history) + evals)
    run = record_session(cfg.run_dir, session)  # the report covers every session of the run
    record = RunRecord(
        config={**_public(cfg), "samples_per_epoch": samples_per_epoch, "dashboard": f"{dashboard}/dashboard"},
        points=run.points, activations=end.activations, updates_applied=run.updates_applied, rejected=run.rejected,
        started=run.started, finished=session.finished, target_accuracy=cfg.target_accuracy, interrupted=interrupted,
        extra={"epochs": bars.lines, "rollback": _rollback_targets(end.status, cfg.run_dir),
               "restored": end.restored, "failed_chains": end.failed, "sessions": run.sessions,
               "saved_version": end.params[0] if end.params else None},
    )
    model, shape = _model(cfg, end.params)
    saved_version = end.params[0] if end.params else None
    # after Ctrl-C: report.json and the weights only (the exports, plots and test score wait for the run's end)
    report = write_report(cfg.run_dir, record, model, shape, light=interrupted, model_version=saved_version,
                          test_shard=held_out_shard(shards_dir, "test"))  # + the one test evaluation
    write_static(cfg.run_dir / STATIC_DASHBOARD, end.status, end.history, report["test"])  # opens offline
    record_trackers(cfg, report)
    if model is not None and not interrupted:  # the final model becomes the next version in RUN_DIR/models (docs/serving.md)
        from serving.publish import publish_run

        test = report["test"] or {}
        scored = (end.final.get("evaluated_version") == saved_version  # the server scores the validation split
                  and held_out_shard(shards_dir, "val") is not None)
        val = {"accuracy": end.final.get("accuracy"), "loss": end.final.get("loss")} if scored else {}
        published = publish_run(cfg.run_dir, cfg.model, model, shards_dir, {"test": test, "validation": val},
                                {"job": cfg.job, "ps_version": end.params[0] if end.params else None})
        print(f"published: model {published.name} version {published.version} ({published.path}); serve it with: "
              f"{published.command(cfg.run_dir)}", flush=True)
    # The printed final model is the saved one: its version, and its accuracy only if the server
    # evaluated exactly that version (after Ctrl-C there may not have been time).
    version = end.params[0] if end.params else int(end.final["version"])
    evaluated = end.final.get("evaluated_version") == version
    return Outcome(accuracy=end.final.get("accuracy") if evaluated else None,
                   loss=end.final.get("loss") if evaluated else None, version=version,
                   test_accuracy=(report["test"] or {}).get("accuracy"),
                   reached_target=bool(report["target"]["reached"]), interrupted=interrupted,
                   failed_chains=end.failed, report=cfg.run_dir / "report.json")


@dataclass(frozen=True)
class WindDown:
    """What the services said last, collected before they stop: the report is made from it."""

    final: dict[str, Any]
    restored: dict[str, Any] | None
    history: dict[str, list[Any]]
    status: dict[str, Any]
    params: tuple[int, dict[str, Any]] | None
    activations: list[dict[str, Any]]
    failed: list[str]


def wind_down(cfg: LocalConfig, admin: ShardSet, bridge: Job, evals: list[Point],
              interrupted: bool) -> WindDown:
    """Stop the activations, settle on the final model, checkpoint it and read what the report needs.

    The job is closed on the server first, so that running activations return at their next push
    instead of training on until their time budget ends. After Ctrl-C the driver pauses the chains
    instead of ending them (they continue with `--resume`: a restarted server is open again), and
    nothing waits longer than about two seconds.
    """
    if interrupted:
        bridge.pause(INTERRUPT_REASON, INTERRUPT_GRACE_S)                   # closes the job first
    else:
        admin.admin("close", {"reason": "owtrain local: the run is over (target reached or epochs done)"})
        bridge.stop(drain=True)                                             # no more pushes
    reached = first_reaching(evals, cfg.target_accuracy)
    if interrupted:
        final = final_evaluation(admin, wait=INTERRUPT_EVAL_WAIT_S)
    elif reached is None:  # every epoch trained: the last version is the model, scored on validation
        final = final_evaluation(admin, wait=FINAL_EVAL_WAIT_S)
    else:  # the version that reached the target is the model unless a later one is scored as good already
        final = admin.accuracy()
    _note_eval(evals, final)
    restored = None if interrupted or reached is None else keep_target_model(admin, reached, cfg.target_accuracy,
                                                                             final)
    if restored is not None and reached is not None:
        # the restored version holds exactly the weights of the one that reached the target, so its
        # validation score is that version's: no second evaluation to wait for
        final = {**final, "version": restored["as_version"], "evaluated_version": restored["as_version"],
                 "accuracy": reached.accuracy, "loss": reached.loss, "time": time.time()}
        _note_eval(evals, final)
    admin.admin("checkpoint")                                               # what --resume starts from
    versions, params = admin.pull_whole()  # the whole model, joined from every shard
    return WindDown(final=final, restored=restored, history=admin.history(), status=admin.status(),
                    params=(job_version(versions), params), activations=bridge.activations(),
                    failed=bridge.failures())


@contextmanager
def object_store(cfg: LocalConfig) -> Iterator[S3Settings]:
    """The S3 endpoint for this run: `--s3-endpoint`, or an embedded moto server until the run ends."""
    if cfg.s3 is not None:
        yield cfg.s3
        return
    from localrun.embedded_s3 import embedded_s3

    with embedded_s3(free_port(cfg.bind_host), f"owtrain-{cfg.job}", cfg.bind_host, cfg.advertise_host) as store:
        yield store


def upload(store: S3Settings, shards_dir: Path, cfg: LocalConfig) -> list[str]:
    """Upload the shards under the job's prefix; returns their keys (the driver starts a chain per
    train shard among them, and the bridge's poller sees any other uploaded later)."""
    from dataset_packer.stores import open_store
    from dataset_packer.upload import upload_dir

    done = upload_dir(open_store("s3", store), shards_dir, prefix=f"{cfg.job}/", progress=cfg.progress)
    return [u.key for u in done]


def watch(cfg: LocalConfig, admin: ShardSet, bridge: Job, bars: EpochBars, evals: list[Point]) -> None:
    """Show progress until the server's accuracy reaches the target or every chain has finished;
    `evals` collects each evaluation the server made (for the report)."""
    while True:
        status, accuracy = admin.status(), admin.accuracy()
        _note_eval(evals, accuracy)
        bars.update(status, accuracy)
        reached = (cfg.target_accuracy is not None and accuracy.get("accuracy") is not None
                   and accuracy["accuracy"] >= cfg.target_accuracy)
        if reached:
            log.info("validation accuracy %.4f reached the target %.4f", accuracy["accuracy"], cfg.target_accuracy)
            return
        if bridge.finished():
            failed = bridge.failures()
            if failed:
                log.error("%d shard chain(s) failed for good:\n  %s", len(failed), "\n  ".join(failed))
            else:
                log.info("every shard chain has ended (%s)",
                         ", ".join(f"{n} {state}" for state, n in sorted(bridge.chain_states().items())))
            return
        bridge.check()
        time.sleep(WATCH_INTERVAL_S)


def final_evaluation(admin: ShardSet, wait: float) -> dict[str, Any]:
    """The accuracy of the final version: waits up to `wait` seconds for the server to evaluate it."""
    deadline = time.monotonic() + wait
    while True:
        acc = admin.accuracy()
        if acc.get("evaluated_version") == acc["version"] or time.monotonic() >= deadline:
            return acc
        time.sleep(0.1)


def first_reaching(evals: list[Point], target: float | None) -> Point | None:
    """The first evaluation that reached the target (the one the stop decision was based on)."""
    return next((p for p in evals if target is not None and p.accuracy is not None and p.accuracy >= target), None)


def keep_target_model(admin: ShardSet, reached: Point, target: float | None,
                      final: dict[str, Any]) -> dict[str, Any] | None:
    """Make the version that reached the target current again unless the final one is it, or is
    scored on the validation split at the target or above.

    Activations in flight when the target is reached keep pushing until they return, and
    asynchronous SGD is noisy, so the last version can fall back below the target, and it is not
    scored yet when the run ends. The version the stop decision was based on is the model the run
    reached; the parameter server's rollback restores it (as a new version). Returns what was
    restored, or None.
    """
    scored = final.get("evaluated_version") == final.get("version") and final.get("accuracy") is not None
    if int(final["version"]) == reached.version or (scored and target is not None and final["accuracy"] >= target):
        return None
    try:
        # every shard restores its own version N (their counters agree while each push reaches every shard)
        answers = admin.admin("rollback", {"version": reached.version})
    except OwtrainError as exc:  # evicted from memory and not on disk: keep the final version
        log.warning("cannot restore version %d that reached the target: %s", reached.version, exc)
        return None
    as_version = job_version([a["version"] for a in answers])
    replaced = final["accuracy"] if scored else None
    log.info("final version %d %s; restored version %d (%.4f) as version %d", int(final["version"]),
             f"scored {replaced:.4f} < target" if replaced is not None else "is not scored on validation",
             reached.version, reached.accuracy, as_version)
    return {"version": reached.version, "accuracy": reached.accuracy, "as_version": as_version,
            "replaced_accuracy": replaced}


def _note_eval(evals: list[Point], accuracy: dict[str, Any]) -> None:
    point = eval_point(accuracy)
    if point is not None and (not evals or evals[-1].time != point.time):
        evals.append(point)


def _model(cfg: LocalConfig, pulled: tuple[int, dict[str, Any]] | None) -> tuple[Any, tuple[int, ...] | None]:
    """The final parameters in a freshly built model (for the safetensors and TorchScript files)."""
    from owtrain.models import build_model, input_shape

    if pulled is None:
        return None, None
    model = build_model(cfg.model, seed=cfg.seed)
    model.load_state_dict(pulled[1], strict=False)
    return model, input_shape(cfg.model)


def _rollback_targets(status: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Which versions `owtrain ps rollback --version N` can restore: recent ones in memory, checkpoints on disk."""
    kept = status.get("kept_versions") or []
    on_disk = [version for version, _ in list_checkpoints(run_dir / "checkpoints")]
    return {"in_memory": [min(kept), max(kept)] if kept else [], "checkpoints": on_disk}


def _job_secret(run_dir: Path) -> Path:
    """The file holding the run's job secret (signs worker tokens): created once, mode 0600, kept on resume."""
    path = run_dir / SECRET_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path


def _public(cfg: LocalConfig) -> dict[str, Any]:
    """The config for the report, without credentials."""
    data = {k: v for k, v in cfg.to_json().items() if k != "s3"}
    data["s3_endpoint"] = cfg.s3.endpoint if cfg.s3 else "embedded (moto)"
    return data


@contextmanager
def _in_background(work: Callable[[], object], name: str) -> Iterator[None]:
    """Run `work` on a thread for the duration of the block and join it at the block's end (so the
    caller never returns before it is done); its exception is raised then unless the block raised."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    try:
        yield
    finally:
        thread.join()
    if errors:
        raise errors[0]


@contextmanager
def _no_interrupts() -> Iterator[None]:
    """Finish the shutdown even if Ctrl-C is pressed again (processes must not be left behind)."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

