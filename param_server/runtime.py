"""Wires one running server together: model, strategy, core, telemetry, admission, evaluator and
the threads that keep tensor math off the gevent loop.

All mutation of the model goes through `apply(fn, *args)`, which runs `fn` on a single OS thread
(`apply_thread.ApplyThread`, fed in batches): updates are serialised without locks, and the loop
stays free to accept connections while a step runs. Each batch publishes one version snapshot;
version changes wake long-polling pulls via `watch`.

With a journal, `push` answers only once the update's record is on disk: the apply thread commits
each batch's records itself (one fdatasync per batch) before it wakes the loop, which makes the
versions that became durable visible and resumes the batch's pushes; records appended outside a
batch are written by whoever flushes them, or at close.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from gevent.event import Event

from owtrain.models import build_model, input_shape
from param_server.admission import Admission
from param_server.apply_thread import ApplyThread
from param_server.assembler import evaluation_source
from param_server.checkpoint import S3Uploader
from param_server.config import PSConfig
from param_server.core import Core
from param_server.dashboard import write_static
from param_server.evaluator import Evaluator, load_eval_shard
from param_server.journal import Journal
from param_server.model_state import ModelState, Snapshot
from param_server.optim import build_optimizer
from param_server.shard_slice import ShardSlice
from param_server.strategies import Update, parse_strategy
from param_server.telemetry import Telemetry
from param_server.tensorboard_log import TensorBoardLog

log = logging.getLogger(__name__)
T = TypeVar("T")
Body = bytes | bytearray  # a push body as read (the hot path reads into a bytearray)
TICK_S = 0.1
STATIC_COPY_INTERVAL_S = 5.0


class VersionWatch:
    """Lets greenlets wait for the next version (long-poll pulls) without polling."""

    def __init__(self) -> None:
        self._event = Event()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)

    def publish(self) -> None:
        event, self._event = self._event, Event()
        event.set()


class Runtime:
    """One server's parts; `start()` launches the background work, `close()` ends it."""

    def __init__(self, cfg: PSConfig) -> None:
        self.cfg = cfg
        self.shard = ShardSlice(build_model(cfg.model, cfg.num_classes, cfg.seed), cfg.shard, cfg.shards)
        model = self.shard.module  # the whole model, or with shards this server's slice of it
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov,
                                    cfg.weight_decay, cfg.betas)
        tensorboard = TensorBoardLog(cfg.tensorboard_dir) if cfg.tensorboard_dir else None
        run = {"target_accuracy": cfg.target_accuracy, "samples_per_epoch": cfg.samples_per_epoch,
               "max_epochs": cfg.max_epochs}
        self.telemetry = Telemetry(tensorboard=tensorboard, run=run)
        uploader = S3Uploader(cfg.s3, cfg.s3_prefix) if cfg.s3 else None
        self._loop = gevent.get_hub().loop
        self.durable_watch = VersionWatch()
        folder = cfg.journal_folder()
        self.journal = (Journal(folder, cfg.journal_segment_bytes, self._durable_from_writer, background=False)
                        if folder else None)
        if self.journal is not None:
            self.journal.open()
        self.core = Core(cfg, ModelState(model, optimizer, cfg.warmup_steps, cfg.server_lr),
                         parse_strategy(cfg.strategy), self.telemetry, uploader, self.journal)
        self.core.restore()
        self.spec = self.core.model.spec
        self.input_shape = input_shape(cfg.model)
        self.admission = Admission(cfg.worker_rate, cfg.worker_burst, cfg.global_rate, cfg.global_burst)
        self.watch = VersionWatch()
        self.apply_thread = ApplyThread(self.core.end_batch, self._after_batch)
        self.evaluator: Evaluator | None = None
        # the whole model at the job's version: this server's own, or on shard 0 of a sharded job the
        # slices of every shard joined (what the evaluator scores and `POST /admin/publish` publishes)
        self.whole: Callable[[], Snapshot] = self.latest
        if cfg.eval_shard and cfg.shard == 0:  # a sharded job is evaluated once, by shard 0, on the whole model
            eval_model = build_model(cfg.model, cfg.num_classes, cfg.seed)
            self.whole, version = evaluation_source(cfg, self.shard, self.latest)
            self.evaluator = Evaluator(eval_model, load_eval_shard(cfg.eval_shard), self.whole, self.telemetry,
                                       cfg.eval_every, cfg.eval_interval_s, cfg.eval_batch, version)
        self._housekeeper: gevent.Greenlet | None = None
        self._static_version, self._static_time = -1, 0.0
        self.stopping = Event()

    def request_stop(self) -> None:
        """Ask `serve` to stop accepting requests and shut down cleanly (admin stop, SIGTERM)."""
        self.stopping.set()

    def latest(self) -> Snapshot:
        return self.core.latest()

    def apply(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the apply thread (in the next batch); pulls waiting for a newer
        version are woken once the batch is published (`_after_batch`)."""
        return self.apply_thread.run(fn, *args)

    def _after_batch(self) -> None:
        if self.core.advance_visible():
            self.watch.publish()

    def push(self, body: Body, decode: Callable[[Body], Update]) -> tuple[Update, dict[str, Any]]:
        """Decode and take one push on the apply thread (one hand-off from the loop, not two);
        return the update and its answer once it is durable."""
        update, answer, offset = self.apply(self._decode_and_push, body, decode)
        if self.journal is not None:
            while self.journal.durable <= offset:
                self.durable_watch.wait(1.0)
        return update, answer

    def _decode_and_push(self, body: Body, decode: Callable[[Body], Update]) -> tuple[Update, dict[str, Any], int]:
        update = decode(body)
        answer, offset = self.core.push(update, body)
        return update, answer, offset

    def _durable_from_writer(self, durable: int) -> None:
        """Called on the journal's writer thread after each group commit: hand over to the loop."""
        self._loop.run_callback_threadsafe(self._durable_in_loop)

    def _durable_in_loop(self) -> None:
        if self.core.advance_visible():
            self.watch.publish()
        self.durable_watch.publish()

    def journal_stats(self) -> dict[str, Any] | None:
        return self.journal.stats() if self.journal else None

    def status(self) -> dict[str, Any]:
        """What `/status` answers: the telemetry plus the job, model, strategy and what is kept."""
        body = self.telemetry.status()
        body.update({"job": self.cfg.job, "model": self.cfg.model, "strategy": self.core.strategy.describe(),
                     "kept_versions": self.core.versions.versions(), "closed": self.core.closed,
                     "journal": self.journal_stats(), "replayed": self.core.replayed, "shard": self.shard.describe(),
                     "apply": {"batches": self.apply_thread.batches, "jobs": self.apply_thread.jobs}})
        return body

    def write_static_dashboard(self, force: bool = False) -> None:
        """With `static_dashboard` set, write the dashboard's static copy when a checkpoint was written
        since the last copy (at most every STATIC_COPY_INTERVAL_S), or now with `force`."""
        path = self.cfg.static_dashboard
        if path is None or not (force or (self.core.last_ckpt_version != self._static_version
                                          and time.monotonic() - self._static_time >= STATIC_COPY_INTERVAL_S)):
            return
        self._static_version, self._static_time = self.core.last_ckpt_version, time.monotonic()
        try:
            write_static(path, self.status(), self.telemetry.history_since(0.0))
        except OSError as exc:  # a full disk must not stop training; the next checkpoint tries again
            log.warning("cannot write the static dashboard %s: %s", path, exc)

    def start(self) -> None:
        if self.evaluator:
            self.evaluator.start()
        self._housekeeper = gevent.spawn(self._housekeep)

    def _housekeep(self) -> None:
        """Strategy time-outs and time-based checkpoints every TICK_S; a history point per interval."""
        next_sample = time.monotonic()
        while True:
            gevent.sleep(TICK_S)
            try:
                self.apply(self.core.tick, time.monotonic())
            except Exception:  # keep serving; the failure is in the log
                log.exception("periodic tick failed")
            if time.monotonic() >= next_sample:
                self.telemetry.sample()
                next_sample = time.monotonic() + self.cfg.history_interval_s
            self.write_static_dashboard()

    def close(self, final_checkpoint: bool = True) -> None:
        """Stop background work and, with a checkpoint folder, write a last checkpoint."""
        if self._housekeeper is not None:
            self._housekeeper.kill()
        if self.evaluator:
            self.evaluator.stop()
        if final_checkpoint and self.cfg.checkpoint_dir:
            self.apply(self.core.checkpoint)
        if self.core.uploader:
            self.core.uploader.close()
        if self.journal is not None:
            self.journal.close()
        self.apply_thread.close()
        self.write_static_dashboard(force=True)
        if self.telemetry.tensorboard is not None:
            self.telemetry.tensorboard.close()
