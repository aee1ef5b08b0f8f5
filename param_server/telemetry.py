"""What the server tells humans and Prometheus: counters, worker activity, staleness, loss and
accuracy over time. Fed by the routes, the apply thread and the evaluator; read by `/status`,
`/api/history`, `/getAccuracy` and `/metrics`. One lock guards it; every holder is brief.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PCounter

from owtrain.phases import sum_phases
from param_server.tensorboard_log import TensorBoardLog

STALENESS_BUCKETS = (0, 1, 2, 4, 8, 16, 32, 64, 128)
HISTORY_FIELDS = ("time", "version", "loss", "accuracy", "eval_loss", "updates_per_s", "staleness", "workers")


@dataclass
class WorkerInfo:
    """One worker's activity as seen by the server."""

    registered: float
    last_seen: float
    pushes: int = 0
    samples: int = 0
    last_seq: int | None = None
    last_loss: float | None = None
    active: bool = True
    activations: int = 0  # activations that reported their phases (POST /reportPhases)
    wall_s: float = 0.0  # their summed wall time, and below where it went (owtrain.phases)
    phases: dict[str, dict[str, float]] = field(default_factory=dict)


class Telemetry:
    """Counters and time series; `sample()` appends one history point (called once a second).

    `eval` is the latest evaluation of the validation shard (what stops and selects); with
    `tensorboard`, every evaluation and history point is also written as TensorBoard scalars.
    """

    def __init__(self, history_len: int = 3600, loss_ema: float = 0.9, tensorboard: TensorBoardLog | None = None,
                 run: Mapping[str, Any] | None = None) -> None:
        self.lock = threading.Lock()
        self.tensorboard = tensorboard
        self.run = dict(run or {})  # what the dashboard shows the run against (target, epoch size)
        self.started = time.time()
        self.version = 0
        self.counts: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.staleness: Counter[int] = Counter()
        self.workers: dict[str, WorkerInfo] = {}
        self.loss: float | None = None
        self.loss_ema = loss_ema
        self.eval: dict[str, Any] = {"accuracy": None, "loss": None, "evaluated_version": None, "time": None}
        self.history: deque[tuple[Any, ...]] = deque(maxlen=history_len)
        self._window_updates = 0
        self._window_staleness = 0
        self._window_start = time.time()
        self.registry = CollectorRegistry()
        self._p_version = Gauge("owtrain_ps_version", "Current model version", registry=self.registry)
        self._p_updates = PCounter("owtrain_ps_updates", "Pushes taken, by status", ["status"], registry=self.registry)
        self._p_rejected = PCounter("owtrain_ps_rejected", "Pushes refused, by reason", ["reason"],
                                    registry=self.registry)
        self._p_staleness = Histogram("owtrain_ps_staleness", "Staleness of taken pushes (versions)",
                                      buckets=STALENESS_BUCKETS, registry=self.registry)
        self._p_bytes = PCounter("owtrain_ps_received_bytes", "Bytes of update bodies received",
                                 registry=self.registry)
        self._p_accuracy = Gauge("owtrain_ps_accuracy", "Accuracy on the validation shard", registry=self.registry)
        self._p_eval_loss = Gauge("owtrain_ps_eval_loss", "Loss on the validation shard", registry=self.registry)
        self._p_train_loss = Gauge("owtrain_ps_train_loss", "Moving average of workers' reported loss",
                                   registry=self.registry)
        self._p_workers = Gauge("owtrain_ps_workers", "Registered, active workers", registry=self.registry)

    def touch(self, worker: str, registering: bool = False) -> None:
        """Note activity by `worker` (any authenticated call)."""
        now = time.time()
        with self.lock:
            info = self.workers.get(worker)
            if info is None:
                info = self.workers[worker] = WorkerInfo(registered=now, last_seen=now)
            info.last_seen = now
            info.active = info.active or registering
            self._p_workers.set(sum(w.active for w in self.workers.values()))

    def unregister(self, worker: str) -> None:
        with self.lock:
            if worker in self.workers:
                self.workers[worker].active = False
            self._p_workers.set(sum(w.active for w in self.workers.values()))

    def pushed(self, worker: str, seq: int, status: str, staleness: int, samples: int, loss: float | None,
               nbytes: int) -> None:
        """Record a push the server took (applied, accepted or duplicate)."""
        with self.lock:
            self.counts[status] += 1
            self._p_updates.labels(status).inc()
            self._p_bytes.inc(nbytes)
            info = self.workers.get(worker)
            if info is not None:
                info.pushes += 1
                info.last_seq = seq
            if status == "duplicate":
                return
            if info is not None:
                info.samples += samples
                info.last_loss = loss if loss is not None else info.last_loss
            self.staleness[staleness] += 1
            self._p_staleness.observe(staleness)
            self._window_updates += 1
            self._window_staleness += staleness
            if loss is not None:
                self.loss = loss if self.loss is None else self.loss_ema * self.loss + (1 - self.loss_ema) * loss
                self._p_train_loss.set(self.loss)

    def activation_phases(self, worker: str, phases: Mapping[str, Mapping[str, float]], wall_s: float) -> None:
        """Add one finished activation's phase totals (already checked) to `worker`'s."""
        with self.lock:
            info = self.workers.get(worker)
            if info is None:
                info = self.workers[worker] = WorkerInfo(registered=time.time(), last_seen=time.time())
            info.activations += 1
            info.wall_s += wall_s
            info.phases = sum_phases((info.phases, phases))

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected[reason] += 1
            self._p_rejected.labels(reason).inc()

    def set_version(self, version: int) -> None:
        with self.lock:
            self.version = version
            self._p_version.set(version)

    def evaluated(self, version: int, loss: float, accuracy: float) -> None:
        with self.lock:
            self.eval = {"accuracy": accuracy, "loss": loss, "evaluated_version": version, "time": time.time()}
            self._p_accuracy.set(accuracy)
            self._p_eval_loss.set(loss)
        if self.tensorboard is not None:
            self.tensorboard.evaluated("val", version, loss, accuracy)

    def sample(self) -> None:
        """Append one history point: updates/s and mean staleness since the previous point."""
        now = time.time()
        with self.lock:
            span = max(now - self._window_start, 1e-6)
            n = self._window_updates
            row = (now, self.version, self.loss, self.eval["accuracy"], self.eval["loss"], n / span,
                   self._window_staleness / n if n else 0.0, sum(w.active for w in self.workers.values()))
            self.history.append(row)
            self._window_updates = self._window_staleness = 0
            self._window_start = now
            totals = {w: {"pushes": i.pushes, "samples": i.samples} for w, i in self.workers.items()}
        if self.tensorboard is not None:
            self.tensorboard.sampled(row[1], row[2], row[5], row[6], row[7], totals)

    def accuracy(self) -> dict[str, Any]:
        with self.lock:
            return {"version": self.version, **self.eval}

    def history_since(self, since: float) -> dict[str, list[Any]]:
        """Time series (one array per field in HISTORY_FIELDS) of points newer than `since`."""
        with self.lock:
            rows = [row for row in self.history if row[0] > since]
        return {name: [row[i] for row in rows] for i, name in enumerate(HISTORY_FIELDS)}

    def status(self) -> dict[str, Any]:
        with self.lock:
            return {
                "version": self.version,
                "uptime_s": time.time() - self.started,
                "workers": {w: vars(info).copy() for w, info in self.workers.items()},
                "updates": {"applied": self.counts["applied"], "accepted": self.counts["accepted"],
                            "duplicate": self.counts["duplicate"], "rejected": dict(self.rejected)},
                "staleness_histogram": {str(k): v for k, v in sorted(self.staleness.items())},
                "loss": self.loss,
                "eval": dict(self.eval),
                "run": dict(self.run),
            }

    def metrics(self) -> bytes:
        return generate_latest(self.registry)
