"""The single OS thread every model mutation runs on, fed by the gevent loop in batches.

Why not gevent's `ThreadPool(1)`: it hands each task over on its own (a queue put, a wake-up of the
worker, an async watcher and an `AsyncResult` per call), so under load the loop and the worker
trade the GIL once per push in each direction. Here the loop appends jobs to one deque; the
thread takes *everything* queued in one go, runs the jobs in order, calls `after_batch` once (the
core publishes one snapshot for the whole batch) and wakes the loop once, whose callback resumes
every greenlet whose job finished. At low load this is one hand-off per push each way, as before;
at 8-32 concurrent pushes it is one per batch.

Jobs run strictly in submission order, one at a time, so the model, strategy and ledger still
need no locks.
"""

from __future__ import annotations

import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar, cast

import gevent
from gevent.hub import Waiter

T = TypeVar("T")


class _Job:
    __slots__ = ("args", "error", "fn", "result", "waiter")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], waiter: Waiter) -> None:
        self.fn, self.args, self.waiter = fn, args, waiter
        self.result: Any = None
        self.error: BaseException | None = None


class ApplyThread:
    """Runs `fn(*args)` on one dedicated thread for greenlets of the loop that created it."""

    def __init__(self, after_batch: Callable[[], None], after_resume: Callable[[], None]) -> None:
        """`after_batch` runs on the thread after each batch; `after_resume` on the loop before the
        batch's greenlets are resumed (make its version visible, wake long-polls)."""
        self._after_batch, self._after_resume = after_batch, after_resume
        self._queue: deque[_Job] = deque()
        self._done: deque[_Job] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self.batches = 0
        self.jobs = 0
        self._hub = gevent.get_hub()
        self._wake = self._hub.loop.async_()
        self._wake.start(self._resume)
        self._thread = threading.Thread(target=self._run, name="apply", daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the apply thread; block this greenlet (not the loop) until it ran."""
        waiter = Waiter(self._hub)
        job = _Job(fn, args, waiter)
        with self._cond:
            if self._closing:
                raise RuntimeError("the apply thread is stopped")
            self._queue.append(job)
            self._cond.notify()
        waiter.get()
        if job.error is not None:
            raise job.error
        return cast(T, job.result)  # what fn returned, on the apply thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                batch = list(self._queue)
                self._queue.clear()
            for job in batch:
                try:
                    job.result = job.fn(*job.args)
                except BaseException as exc:  # handed to the waiting greenlet, which raises it
                    job.error = exc
            try:
                self._after_batch()
            except BaseException:
                # a failed publication must not leave greenlets waiting forever: the first job sees it
                batch[0].error = batch[0].error or sys.exc_info()[1]
            self.batches += 1
            self.jobs += len(batch)
            self._done.extend(batch)  # deque appends are atomic; the loop pops them
            self._wake.send()

    def _resume(self) -> None:
        """On the loop: make what the finished batches published visible, then resume their
        greenlets. In that order: a resumed push's greenlet answers and may read and serve its
        caller's next request (a pull) before the loop runs anything else, and that pull must see
        the version the answer named."""
        while self._done:
            self._after_resume()
            job = self._done.popleft()
            job.waiter.switch(None)

    def close(self) -> None:
        """Finish the queued jobs, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout=30)
        self._wake.stop()
        self._wake.close()
