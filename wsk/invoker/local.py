"""The local backend: OpenWhisk's invoker in miniature, running `owtrain action serve` processes.

It keeps OpenWhisk's rules so that a job that runs here runs the same on a real deployment: the
namespace quota (concurrent activations and invocations per window → `Throttled`, like a 429), the
payload limit (→ `PayloadTooLarge`, like a 413), one `/init` per container and warm reuse after a
success or application error, the container destroyed after a developer error, the action timeout
(the process is killed at the deadline) and the memory limit (killed when its RSS exceeds it), and
logs split at the sentinel. Records live in SQLite (`wsk.activations`).

Like OpenWhisk's invoker with its "stem cell" containers, it can keep `prewarm` containers
started but not yet initialised: the first activations then skip the process start and the
import of torch and pay only for `/init`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from owtrain.errors import PayloadTooLarge, Throttled
from wsk.activations import ActivationStore, now_ms
from wsk.config import LocalInvokerConfig
from wsk.invoker import protocol as p
from wsk.invoker.base import Activation, Invoker
from wsk.invoker.container import Container, Reply
from wsk.ratelimit import RateLimiter

log = logging.getLogger(__name__)
SENTINEL_WAIT_S = 2.0  # OpenWhisk's idle gap when collecting logs


class LocalInvoker(Invoker):
    """Runs activations in local processes under OpenWhisk's limits (see module docstring)."""

    def __init__(self, config: LocalInvokerConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = {**(env if env is not None else os.environ), "__OW_API_HOST": config.apihost}
        self.store = ActivationStore(config.db_path)
        orphans = self.store.fail_orphans()
        if orphans:
            log.warning("%d activation(s) of a stopped invoker marked as whisk internal error", orphans)
        self.limiter = RateLimiter(config.per_minute, config.rate_window_s)
        self._queue: queue.Queue[tuple[str, str, Any] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._inflight = 0
        self._idle: dict[str, list[Container]] = {}
        self._stem_cells: list[Container] = []  # started, not yet initialised for any action
        self._busy: set[Container] = set()
        self._workers: list[threading.Thread] = []
        self._closed = False
        with self._lock:
            for _ in range(min(config.prewarm, config.concurrent)):
                self._add_worker(prewarm=True)

    # -- the Invoker interface ------------------------------------------------------------------

    def invoke(self, action: str, params: dict[str, Any]) -> str:
        size = len(json.dumps(params).encode())
        if size > self.config.payload_limit:
            raise PayloadTooLarge(f"Request larger than allowed: {size} > {self.config.payload_limit} bytes.")
        with self._lock:
            if self._inflight >= self.config.concurrent:
                raise Throttled(f"Too many concurrent requests in flight (count: {self._inflight}, "
                                f"allowed: {self.config.concurrent}).", retry_after=0.5)
            if not self.limiter.try_acquire():
                raise Throttled(f"Too many requests in the last minute (allowed: {self.config.per_minute}).",
                                retry_after=self.limiter.wait_time())
            self._inflight += 1
            if len(self._workers) < min(self._inflight, self.config.concurrent):
                self._add_worker(prewarm=False)
        activation_id = uuid.uuid4().hex
        self.store.create(activation_id, action)
        self._queue.put((activation_id, action, params))
        return activation_id

    def get(self, activation_id: str) -> Activation | None:
        return self.store.get(activation_id)

    def activations(self, **filters: Any) -> list[dict[str, Any]]:
        """Activation summaries, newest first (`name`, `limit`, `skip`, `since`, `upto`)."""
        return self.store.list(**filters)

    def close(self, grace_s: float | None = None) -> None:
        """Stop the workers after the running activations (killed after `grace_s` seconds; None: the
        action's time limit) and kill every container (idempotent). A killed activation's record
        stays open; the next invoker on the same file marks it a whisk internal error."""
        if self._closed:
            return
        self._closed = True
        for _ in self._workers:
            self._queue.put(None)
        grace = self.config.timeout_ms / 1000 + 10 if grace_s is None else grace_s
        deadline = time.monotonic() + grace
        for worker in self._workers:
            worker.join(timeout=max(deadline - time.monotonic(), 0.0))
        with self._lock:
            containers = [c for pool in self._idle.values() for c in pool] + self._stem_cells + list(self._busy)
            self._idle.clear()
            self._stem_cells.clear()
        for container in containers:
            container.kill()
        for worker in self._workers:  # their calls fail fast once the containers are gone
            worker.join(timeout=5)
        self._workers = []
        self.store.close()

    # -- one worker thread per concurrent activation -------------------------------------------

    def _add_worker(self, prewarm: bool) -> None:
        """Start one worker thread (the caller holds the lock)."""
        worker = threading.Thread(target=self._work, args=(prewarm,), name=f"local-invoker-{len(self._workers)}",
                                  daemon=True)
        self._workers.append(worker)
        worker.start()

    def _work(self, prewarm: bool) -> None:
        # Containers may be started from any thread: owtrain.supervised forks them all on its own
        # long-lived thread, so each dies with this process (PR_SET_PDEATHSIG), not with this worker.
        if prewarm:
            self._start_stem_cell()
        while (item := self._queue.get()) is not None:
            activation_id, action, params = item
            try:
                self.store.finish(self._activate(activation_id, action, params))
            except Exception:  # a bug here must not hang the caller polling this activation
                log.exception("activation %s failed inside the invoker", activation_id)
                self.store.finish(self._record(activation_id, action, now_ms(), p.WHISK_ERROR,
                                               {"error": "internal error in the local invoker"}, [], {}))
            finally:
                with self._lock:
                    self._inflight -= 1

    def _start_stem_cell(self) -> None:
        try:
            container = self._start_container()
        except (OSError, RuntimeError) as exc:
            log.warning("cannot pre-warm a container (activations will start their own): %s", exc)
            return
        with self._lock:
            self._stem_cells.append(container)

    def _start_container(self) -> Container:
        return Container(self.config.action_argv, self.env, self.config.start_timeout_s, self.config.log_limit)

    def _activate(self, activation_id: str, action: str, params: Any) -> Activation:
        start = now_ms()
        timeout_ms = self.config.timeout_ms
        deadline_ms = start + timeout_ms
        deadline = time.monotonic() + timeout_ms / 1000
        memory = self.config.memory_mb * 1024 * 1024
        annotations: dict[str, Any] = {"path": f"{self.config.namespace}/{action}", "kind": "blackbox",
                                       "limits": {"timeout": timeout_ms, "memory": self.config.memory_mb,
                                                  "logs": self.config.log_limit // (1024 * 1024), "concurrency": 1}}
        container = self._take(action)
        if container is None or not container.initialized:  # a cold start, or a stem cell's first use
            t0 = time.monotonic()
            if container is None:
                try:
                    container = self._start_container()
                except (OSError, RuntimeError) as exc:
                    log.error("cannot start a container for %s: %s", action, exc)
                    return self._record(activation_id, action, start, p.WHISK_ERROR,
                                        {"error": "Failed to provision resources to run the action."}, [],
                                        annotations)
                with self._lock:
                    self._busy.add(container)
            env = p.context_env(self.config.namespace, action, activation_id, deadline_ms)
            reply = container.call("/init", p.init_body(action, env), deadline, memory)
            annotations["initTime"] = int((time.monotonic() - t0) * 1000)
            failure = self._killed(reply, timeout_ms, init=True) or p.classify_init(reply.status_code, reply.body)
            if failure is not None:
                return self._finish_failed(container, activation_id, action, start, failure, annotations)
            container.initialized = True
        body = p.run_body(params, self.config.namespace, action, activation_id, deadline_ms)
        reply = container.call("/run", body, deadline, memory)
        if reply.killed:
            annotations["timeout"] = reply.killed == "timeout"
            failure = self._killed(reply, timeout_ms, init=False)
            assert failure is not None
            return self._finish_failed(container, activation_id, action, start, failure, annotations)
        status, result = p.classify_run(reply.status_code, reply.body, self.config.payload_limit)
        if status == p.DEV_ERROR:
            return self._finish_failed(container, activation_id, action, start, (status, result), annotations)
        logs = container.take_logs(SENTINEL_WAIT_S)
        self._give_back(action, container)
        return self._record(activation_id, action, start, status, result, logs, annotations)

    @staticmethod
    def _killed(reply: Reply, timeout_ms: int, init: bool) -> tuple[str, Any] | None:
        if reply.killed == "timeout":
            msg = p.INIT_TIMEOUT_MSG if init else p.TIMEOUT_MSG
            return p.DEV_ERROR, {"error": msg.format(ms=timeout_ms)}
        if reply.killed == "memory":
            return p.DEV_ERROR, {"error": p.MEMORY_MSG}
        if reply.killed == "exited":
            return p.DEV_ERROR, {"error": p.EXITED_MSG}
        return None

    def _finish_failed(self, container: Container, activation_id: str, action: str, start: int,
                       failure: tuple[str, Any], annotations: dict[str, Any]) -> Activation:
        """A developer error destroys the container, as OpenWhisk does; its logs get a warning."""
        logs = container.take_logs(0.2 if container.alive else 0)
        container.kill()
        with self._lock:
            self._busy.discard(container)
        logs.append(p.log_line("stderr", p.LOGS_MISSING_MSG))
        return self._record(activation_id, action, start, failure[0], failure[1], logs, annotations)

    def _take(self, action: str) -> Container | None:
        """A warm container of `action`, else a stem cell (still to be initialised), else None."""
        with self._lock:
            for pool in (self._idle.get(action, []), self._stem_cells):
                while pool:
                    container = pool.pop()
                    if container.alive:
                        self._busy.add(container)
                        return container
        return None

    def _give_back(self, action: str, container: Container) -> None:
        with self._lock:
            self._busy.discard(container)
            self._idle.setdefault(action, []).append(container)

    @staticmethod
    def _record(activation_id: str, action: str, start: int, status: str, result: Any, logs: list[str],
                annotations: dict[str, Any]) -> Activation:
        return Activation(activation_id=activation_id, name=action, status=status, result=result, start=start,
                          end=max(now_ms(), start), logs=logs, annotations=annotations)

