"""The fan-out driver: one chain of activations per shard, continued with each returned cursor.

Read top to bottom, one `step` is: collect the activations that ended (advance their chain's
cursor, or schedule a bounded retry of a transient failure), then start new ones while the job's
width (`workers`), the namespace quota (concurrency and invocations per window) and any 429
back-off allow, then look at the model's accuracy now and then. Every decision is committed to the
state file (`wsk.state`) before the next, which is what lets a killed driver resume exactly.

The driver does not know which `Invoker` it drives; the event bridge runs the same driver with
chains added as shards are uploaded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from owtrain.action_params import ActionParams
from owtrain.errors import (
    TRANSIENT_NAMES,
    BadRequest,
    ObjectMissing,
    OwtrainError,
    PayloadTooLarge,
    Throttled,
)
from owtrain.retry import RetryPolicy, backoff_delay
from wsk.config import DriverConfig
from wsk.invoker.base import Activation, Invoker
from wsk.ratelimit import RateLimiter
from wsk.state import DriverState, Shard, Summary

log = logging.getLogger(__name__)

# Failures worth retrying with the same cursor: the platform's, or the action's crash / time-out /
# out-of-memory (developer errors), and application errors that name a passing condition.
TRANSIENT_STATUSES = ("whisk internal error", "action developer error")
RETRY_POLICY = RetryPolicy(base=1.0, cap=30.0)
PAUSED_META = "paused_activations"  # ids of activations that were running when the job was paused
STALLED = ("the activation trained no sample before its deadline; give the action more time "
           "(wsk action update --timeout, or a larger time_budget_s)")

# (shard) -> (url, sha256): fills in a shard known only by its key (the bridge presigns at launch).
Resolver = Callable[[Shard], tuple[str, str]]
Progress = Callable[[Summary, float | None], None]


def is_transient(activation: Activation) -> bool:
    """Whether a failed activation is worth retrying from the same cursor: the platform's failures
    (above), or an action error whose type (`error_type`, carried as data) is one of
    `owtrain.errors.TRANSIENT`. A result without the type (an action of the user's own, or a
    controller that kept only `error`) is classified by the type name its text starts with."""
    if activation.status in TRANSIENT_STATUSES:
        return True
    kind = activation.error_type or _leading_type(activation.error or "")
    return kind in TRANSIENT_NAMES


def _leading_type(text: str) -> str | None:
    """`Name` of an error text `Name: message` (owtrain's actions and action server write them so)."""
    head, sep, _ = text.partition(": ")
    return head if sep and head.isidentifier() else None


def _epoch_of(cursor: object) -> int:
    """The epoch an unfinished chain's cursor is in (0 for a cursor of an action that keeps none)."""
    return int(cursor.get("epoch", 0)) if isinstance(cursor, dict) else 0


def _phases(result: object) -> dict[str, Any] | None:
    """The activation's phase totals (owtrain.phases) when its result carries them."""
    phases = result.get("phases") if isinstance(result, dict) else None
    return phases if isinstance(phases, dict) else None


class Driver:
    """Runs the chains recorded in `state` through `invoker` under `config`'s limits."""

    def __init__(self, invoker: Invoker, state: DriverState, config: DriverConfig,
                 resolver: Resolver | None = None, progress: Progress | None = None,
                 accuracy: Callable[[], float | None] | None = None,
                 closer: Callable[[str], None] | None = None) -> None:
        self.invoker = invoker
        self.state = state
        self.config = config
        self.resolver = resolver
        self.progress = progress
        self.accuracy_fn = accuracy
        self.closer = closer  # closes the job on the parameter server once the target is reached
        self.limiter = RateLimiter(config.per_minute, config.rate_window_s)
        self.throttled_until = 0.0
        self.throttles = 0
        self.accuracy: float | None = None
        self.target_reached = False
        self.closed: str | None = None  # why the parameter server closed the job, once an action saw it
        self.paused = threading.Event()  # set once a requested pause is in effect (see `pause`)
        self.finishing = False  # the job is over (see `finish`)
        self._pause_reason: str | None = None
        self._next_accuracy = 0.0
        self._tokens: dict[str, str] = {}
        state.bind_job({"job": config.job, "action": config.action, "epochs": config.epochs,
                        "ps_url": config.ps_url})

    # -- the loop -------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> Summary:
        """Step until every chain is final (or `stop` is set); returns the final summary."""
        while not stop.is_set():
            running = self.step()
            if running == 0 and not self.state.shards("pending"):
                break
            stop.wait(self.config.poll_interval_s)
        return self.state.summary(self.config.epochs)

    def step(self) -> int:
        """Collect, check accuracy, launch; returns how many activations are in flight."""
        if self._pause_reason is not None and not self.paused.is_set():
            self._pause(self._pause_reason)
        running = self.state.shards("running")
        for shard in running:
            self._collect(shard)
        if self.paused.is_set():
            return len(self.state.shards("running"))
        self._check_accuracy()
        if self.target_reached or self.finishing or self.closed is not None:
            self.state.stop_pending()
        else:
            self._launch()
        if self.progress:
            self.progress(self.state.summary(self.config.epochs), self.accuracy)
        return len(self.state.shards("running"))

    def finish(self) -> None:
        """The job is over (its owner decided): launch nothing more; every chain is marked stopped once
        its running activation has returned, as when the target is reached."""
        self.finishing = True

    # -- pausing (an interrupted run that will be resumed) -------------------------------------

    def pause(self, reason: str) -> None:
        """Ask the loop to pause: launch nothing more, close the job on the parameter server (so the
        running activations return at their next push) and keep every chain resumable.

        The pause takes effect at the start of the loop's next `step` (the loop's thread is the only
        one that launches, so no activation starts after it); `paused` is set then. The ids of the
        activations running at that moment are recorded in the state file: their results say
        `closed`, and for them that means "paused" (the chain stays pending at its new cursor), also
        when a resumed driver collects them, instead of "the job is over".
        """
        self._pause_reason = reason

    def _pause(self, reason: str) -> None:
        ids = set(self._paused_ids()) | {s.activation_id for s in self.state.shards("running") if s.activation_id}
        self.state.set_meta(PAUSED_META, json.dumps(sorted(ids)))
        self.paused.set()
        self._close_job(reason)

    def _paused_ids(self) -> list[str]:
        ids = json.loads(self.state.get_meta(PAUSED_META) or "[]")  # written by `pause` as a list of ids
        return [str(i) for i in ids] if isinstance(ids, list) else []

    # -- collecting -----------------------------------------------------------------------------

    def _collect(self, shard: Shard) -> None:
        assert shard.activation_id is not None
        try:
            activation = self.invoker.get(shard.activation_id)
        except ObjectMissing as exc:  # the invoker forgot it (e.g. a deleted local record)
            self._failed(shard, "whisk internal error", str(exc), transient=True)
            return
        except OwtrainError as exc:
            log.warning("cannot read activation %s yet: %s", shard.activation_id, exc)
            return
        if activation is None:
            return
        if activation.success and isinstance(activation.result, dict):
            result = activation.result
            cursor = result.get("next")
            done = bool(result.get("done")) or cursor is None
            if done and cursor is None:
                # keep where the finished chain ended: its pushes count when a resume checks the
                # server's recovered ledger against the records (localrun/reconcile.py)
                start = shard.cursor if isinstance(shard.cursor, dict) else {}
                cursor = {"seq": int(start.get("seq", 0)) + int(result.get("pushes", 0) or 0), "done": True}
            epoch = self.config.epochs if done else _epoch_of(cursor)
            closed = result.get("closed")  # the server takes no more updates: launch nothing more
            # closed by a pause: the chain stays pending and continues from `next` when resumed
            paused = bool(closed) and shard.activation_id in self._paused_ids()
            if not closed and not done and int(result.get("samples", 0)) == 0 and cursor == shard.cursor:
                # No progress: re-invoking with the same cursor would loop forever; give it the
                # bounded retries of a transient failure, then fail the chain with what to do.
                self._failed(shard, "application error", STALLED, transient=True)
                return
            self.state.advanced(shard, activation.status, int(result.get("samples", 0)), cursor, epoch, done,
                                phases=_phases(result))
            log.info("shard %s: activation %s trained %s samples (epoch %d%s)", shard.key,
                     activation.activation_id, result.get("samples"), epoch, ", done" if done else "")
            if closed and not paused:
                if self.closed is None:  # the reason is in the activation's result
                    log.info("the parameter server closed the job: stopping every chain")
                self.closed = str(closed)
        else:
            self._failed(shard, activation.status, activation.error or "no result", is_transient(activation),
                         _phases(activation.result))

    def _failed(self, shard: Shard, status: str, error: str, transient: bool, phases: dict[str, Any] | None = None) -> None:
        retry = transient and shard.attempts < self.config.max_retries
        retry_at = time.time() + backoff_delay(shard.attempts, RETRY_POLICY) if retry else None
        self.state.failed(shard, status, error, retry_at, phases)
        log.warning("shard %s: activation %s %s: %s%s", shard.key, shard.activation_id, status, error,
                    f" (retry {shard.attempts + 1}/{self.config.max_retries})" if retry else " (giving up)")

    # -- launching ------------------------------------------------------------------------------

    def _launch(self) -> None:
        width = min(self.config.workers, self.config.concurrent)
        free = width - len(self.state.shards("running"))
        if free <= 0 or time.monotonic() < self.throttled_until:
            return
        for shard in self.state.runnable(free):
            if not self.limiter.try_acquire():
                return
            try:
                params = self._params(shard)
                activation_id = self.invoker.invoke(self.config.action, params)
            except Throttled as exc:
                # Nothing was started: keep the chain pending and pause launches for a while.
                self.throttles += 1
                self.throttled_until = time.monotonic() + max(exc.retry_after, 0.1)
                log.info("throttled (%s); pausing launches for %.1fs", exc, exc.retry_after)
                return
            except (BadRequest, ObjectMissing, PayloadTooLarge) as exc:  # retrying cannot help
                self._failed(shard, "whisk internal error", f"{type(exc).__name__}: {exc}", transient=False)
                continue
            except OwtrainError as exc:
                self._failed(shard, "whisk internal error", f"{type(exc).__name__}: {exc}", transient=True)
                continue
            self.state.started(shard, activation_id)

    def _params(self, shard: Shard) -> dict[str, Any]:
        """The action's parameters (Contract 3) for the next activation of `shard`'s chain."""
        url, sha256 = shard.url, shard.sha256
        if self.resolver is not None:
            url, sha256 = self.resolver(shard)
            self.state.resolved(shard.key, url, sha256)
        return ActionParams.wire(dict(self.config.action_params), self.config.epochs, shard.cursor,
                                 dataset_url=url, dataset_sha256=sha256, apihost=self.config.ps_url,
                                 ps_token=self._token(shard.worker), job=self.config.job, worker=shard.worker)

    def _token(self, worker: str) -> str:
        if worker not in self._tokens:
            from owtrain.tokens import mint_token

            self._tokens[worker] = mint_token(self.config.secret, self.config.job, worker, self.config.token_ttl_s)
        return self._tokens[worker]

    # -- accuracy -------------------------------------------------------------------------------

    def _check_accuracy(self) -> None:
        if self.accuracy_fn is None or time.monotonic() < self._next_accuracy:
            return
        self._next_accuracy = time.monotonic() + self.config.accuracy_interval_s
        try:
            self.accuracy = self.accuracy_fn()
        except OwtrainError as exc:
            log.warning("cannot read the model's accuracy: %s", exc)
            return
        target = self.config.target_accuracy
        if target is not None and self.accuracy is not None and self.accuracy >= target and not self.target_reached:
            log.info("accuracy %.4f reached the target %.4f: no new activations", self.accuracy, target)
            self.target_reached = True
            self._close_job(f"target accuracy {target:g} reached: {self.accuracy:.4f}")

    def _close_job(self, reason: str) -> None:
        """Running activations return at their next push instead of training to their time limit
        (which OpenWhisk bills); without it they finish on their own, which is only slower."""
        if self.closer is None:
            return
        try:
            self.closer(reason)
        except OwtrainError as exc:
            log.warning("cannot close the job on the parameter server (running activations will train "
                        "until their time budget ends): %s", exc)
