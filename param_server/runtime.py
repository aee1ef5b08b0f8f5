"""Wires one running server together: model, strategy, core, telemetry, admission, evaluator and
the threads that keep tensor math off the gevent loop.

All mutation of the model goes through `apply(fn, *args)`, which runs `fn` on a single OS thread
(a gevent ThreadPool of one): updates are serialised without locks, and the loop stays free to
accept connections while a step runs. Version changes wake long-polling pulls via `watch`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
from gevent.event import Event
from gevent.threadpool import ThreadPool

from owtrain.models import build_model, input_shape
from param_server.admission import Admission
from param_server.checkpoint import S3Uploader
from param_server.config import PSConfig
from param_server.core import Core
from param_server.evaluator import Evaluator, load_eval_shard
from param_server.model_state import ModelState, Snapshot
from param_server.optim import build_optimizer
from param_server.strategies import parse_strategy
from param_server.telemetry import Telemetry

log = logging.getLogger(__name__)
T = TypeVar("T")
TICK_S = 0.1


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
        model = build_model(cfg.model, cfg.num_classes, cfg.seed)
        optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.nesterov,
                                    cfg.weight_decay, cfg.betas)
        self.telemetry = Telemetry()
        uploader = S3Uploader(cfg.s3) if cfg.s3 else None
        self.core = Core(cfg, ModelState(model, optimizer, cfg.warmup_steps, cfg.server_lr),
                         parse_strategy(cfg.strategy), self.telemetry, uploader)
        self.core.restore()
        self.spec = self.core.model.spec
        self.input_shape = input_shape(cfg.model)
        self.admission = Admission(cfg.worker_rate, cfg.worker_burst, cfg.global_rate, cfg.global_burst)
        self.watch = VersionWatch()
        self.apply_pool = ThreadPool(1)
        self.evaluator: Evaluator | None = None
        if cfg.eval_shard:
            eval_model = build_model(cfg.model, cfg.num_classes, cfg.seed)
            self.evaluator = Evaluator(eval_model, load_eval_shard(cfg.eval_shard), self.latest, self.telemetry,
                                       cfg.eval_every, cfg.eval_interval_s, cfg.eval_batch)
        self._housekeeper: gevent.Greenlet | None = None
        self.stopping = Event()

    def request_stop(self) -> None:
        """Ask `serve` to stop accepting requests and shut down cleanly (admin stop, SIGTERM)."""
        self.stopping.set()

    def latest(self) -> Snapshot:
        return self.core.latest()

    def apply(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the apply thread and wake pulls waiting for a newer version."""
        before = self.core.model.version
        try:
            return self.apply_pool.apply(fn, args)
        finally:
            if self.core.model.version != before:
                self.watch.publish()

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
        self.apply_pool.kill()
