"""Adaptive batching per model version (Clipper's AIMD), behind a bounded queue.

Requests queue per version; one worker thread takes as many whole requests as the current batch
limit allows, waits up to `max_wait_s` for more when the queue is thin, runs them as one forward
pass and hands each request its rows. The limit comes from a `BatchPolicy`: `Fixed(b)` (b=1 is a
naive per-request server) or `AIMD(slo)`, which adds `step` after a full batch that met the
latency objective and halves after one that missed it. The queue holds at most `max_queue`
instances: `submit` refuses more with `Throttled` (HTTP 429 + Retry-After) before anything is
queued, and everything that was queued is answered, also when the batcher closes.

Results are gevent `AsyncResult`s, which a native thread may set: a greenlet waiting on one
yields to the event loop, and a plain thread can wait on it too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gevent.event import AsyncResult

from owtrain.errors import Throttled
from serving.batch_policy import BatchPolicy

log = logging.getLogger(__name__)

Forward = Callable[[np.ndarray], np.ndarray]
BatchObserver = Callable[[int, float], None]  # (instances in the batch, forward seconds)


@dataclass
class _Request:
    rows: np.ndarray
    result: AsyncResult
    queued: float


class Batcher:
    """The queue and worker thread of one version; `submit` is safe from any thread or greenlet."""

    def __init__(self, forward: Forward, policy: BatchPolicy, max_queue: int, max_wait_s: float,
                 observer: BatchObserver | None = None, name: str = "batcher") -> None:
        self.forward, self.policy = forward, policy
        self.max_queue, self.max_wait_s = max_queue, max_wait_s
        self.observer = observer
        self._queue: deque[_Request] = deque()
        self._queued = 0  # instances waiting
        self._cond = threading.Condition()
        self._closing = False
        self._rate = 0.0  # instances per second, smoothed, for Retry-After
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Instances waiting in the queue."""
        return self._queued

    def submit(self, rows: np.ndarray) -> AsyncResult:
        """Queue one request's rows (N, …); its result is the (N, K) output. Raises Throttled when full."""
        n = len(rows)
        with self._cond:
            if self._closing:
                raise Throttled("this model version is being unloaded; retry shortly", 1.0)
            if self._queued + n > self.max_queue:
                wait = (self._queued + n) / self._rate if self._rate > 0 else 1.0
                raise Throttled(f"the queue of this model version is full ({self._queued} instances "
                                f"waiting, limit {self.max_queue}); retry in {wait:.2f}s", wait)
            request = _Request(rows, AsyncResult(), time.monotonic())
            self._queue.append(request)
            self._queued += n
            self._cond.notify()
        return request.result

    def close(self) -> None:
        """Stop taking requests, answer every queued one, end the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=60)

    def _take(self) -> list[_Request] | None:
        """The next batch: whole requests up to the policy's limit (one oversized request alone)."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait(0.5)
            limit = self.policy.limit()
            if self._queued < limit and not self._closing:
                # A thin queue: wait a little for the batch to fill (bounded by max_wait_s).
                deadline = self._queue[0].queued + self.max_wait_s
                while self._queued < limit and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
            batch = [self._queue.popleft()]
            size = len(batch[0].rows)
            while self._queue and size + len(self._queue[0].rows) <= limit:
                request = self._queue.popleft()
                batch.append(request)
                size += len(request.rows)
            self._queued -= size
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            rows = batch[0].rows if len(batch) == 1 else np.concatenate([r.rows for r in batch])
            start = time.perf_counter()
            try:
                out = self.forward(rows)
            except Exception as exc:  # a model fault: every request of the batch learns it, none hangs
                log.exception("forward pass over %d instances failed", len(rows))
                for r in batch:
                    r.result.set_exception(exc)
                continue
            latency = time.perf_counter() - start
            self.policy.observe(len(rows), latency)
            self._rate = 0.8 * self._rate + 0.2 * (len(rows) / max(latency, 1e-6))
            if self.observer:
                self.observer(len(rows), latency)
            offset = 0
            for r in batch:
                r.result.set(out[offset:offset + len(r.rows)])
                offset += len(r.rows)
