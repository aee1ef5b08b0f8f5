"""The event bridge: object uploads in, one training chain per new shard out.

Two ways in: MinIO's webhook (`POST /events`, token checked, body per reference §6.3) and, for
stores that send no notifications (Swift, moto, AWS without SNS), a poller doing ListObjectsV2
with a persisted `start-after` cursor plus a periodic full rescan. Either way a shard becomes a row
of the driver's state file, committed (fsync) before the webhook answers 2xx: the row's unique key
is the deduplication (MinIO delivers at least once), and the row is the durable queue.

One way out by default: the bridge's own `Driver` invokes the action per shard under the quota and
keeps each activation id, so an event can be delayed by throttling but never dropped. Firing an
OpenWhisk trigger instead (`dispatch="trigger"`) is possible but can lose events: the fire is
accepted (202) before the rule's invoke is admitted, and a throttled rule invoke is dropped
silently (reference §7.1; docs/invocation.md).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from flask import Flask, Response, jsonify, request

from owtrain.errors import BadRequest, OwtrainError, Unauthorized
from owtrain.parse import json_object
from owtrain.rejections import REJECTIONS
from wsk.config import BridgeConfig
from wsk.driver import Driver
from wsk.events import check_authorization, is_shard, parse_notification
from wsk.state import DriverState

if TYPE_CHECKING:
    import argparse

    from dataset_packer.stores.base import Store

log = logging.getLogger(__name__)

# One MinIO event is a few KB; anything far larger is not a notification.
MAX_BODY_BYTES = 1024 * 1024
# (start_after) -> object keys in lexicographic order, as ListObjectsV2 returns them.
Lister = Callable[[str], Iterable[str]]


class ObjectSink(Protocol):
    """Another consumer of the same uploads (e.g. `serving.events`: predict each uploaded image).

    Keys it `wants` go to it instead of the driver: `add` records one durably and says whether it
    was new (the dedupe of at-least-once notifications), `step` does the queued work, paced by the
    same limiter as the driver's launches.
    """

    def wants(self, key: str) -> bool: ...

    def add(self, key: str) -> bool: ...

    def step(self) -> int: ...

    def counts(self) -> dict[str, int]:
        """Its inputs by state (e.g. pending, done, failed), for the bridge's `/status`."""
        ...


class SinkFactory(Protocol):
    """How a part above wsk (serving) feeds `owtrain bridge serve` without wsk importing it: the part
    registers one with `wsk.cli.add_bridge_sink` from its own CLI registration; its options join the
    command's, and when they are set `build` returns the sink the bridge then feeds."""

    def add_options(self, parser: argparse.ArgumentParser) -> None: ...

    def build(self, args: argparse.Namespace, store: Store, driver: Driver) -> ObjectSink | None:
        """The sink for these options (None when they leave it off); ConfigError for bad options."""
        ...


class Bridge:
    """Receives or polls upload events for one bucket and feeds the driver's state."""

    def __init__(self, config: BridgeConfig, bucket: str, state: DriverState, driver: Driver,
                 lister: Lister | None = None, sink: ObjectSink | None = None) -> None:
        self.config = config
        self.sink = sink
        self.bucket = bucket
        self.state = state
        self.driver = driver
        self.lister = lister
        self.pattern = re.compile(config.key_pattern)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.counts = {"accepted": 0, "duplicates": 0, "ignored": 0}
        self._polls = 0

    # -- events in ------------------------------------------------------------------------------

    def receive(self, authorization: str | None, body: Any) -> dict[str, Any]:
        """Handle one webhook delivery; raises Unauthorized or BadRequest (nothing stored then)."""
        check_authorization(authorization, self.config.token)
        created, other = parse_notification(body)
        accepted, duplicates, ignored = [], 0, other
        for event in created:
            if event.bucket != self.bucket or not self._wanted(event.key):
                ignored += 1
            elif self._add(event.key):
                accepted.append(event.key)
            else:
                duplicates += 1
        self._count(len(accepted), duplicates, ignored)
        if accepted:
            log.info("queued %d new shard(s): %s", len(accepted), ", ".join(accepted))
        return {"accepted": accepted, "duplicates": duplicates, "ignored": ignored}

    def poll_once(self) -> int:
        """One ListObjectsV2 pass after the persisted cursor (all keys every `rescan_every` passes)."""
        assert self.lister is not None
        self._polls += 1
        full = self._polls % self.config.rescan_every == 1 or self.config.rescan_every <= 1
        cursor = "" if full else self.state.get_meta("poll_cursor") or ""
        new = 0
        last = cursor
        for key in self.lister(cursor):
            last = max(last, key)
            if self._wanted(key) and self._add(key):
                new += 1
        self.state.set_meta("poll_cursor", last)
        if new:
            log.info("poller queued %d new shard(s)", new)
        self._count(new, 0, 0)
        return new

    def offer(self, keys: Iterable[str]) -> int:
        """Queue the wanted ones among `keys`, objects the caller has just put into the bucket, as a
        listing would find them (duplicates are skipped); returns how many were new."""
        new = sum(1 for key in keys if self._wanted(key) and self._add(key))
        self._count(new, 0, 0)
        return new

    def _wanted(self, key: str) -> bool:
        return (self.sink is not None and self.sink.wants(key)) or is_shard(key, self.pattern)

    def _add(self, key: str) -> bool:
        return self.sink.add(key) if self.sink is not None and self.sink.wants(key) else self.state.add(key)

    def _count(self, accepted: int, duplicates: int, ignored: int) -> None:
        self.counts["accepted"] += accepted
        self.counts["duplicates"] += duplicates
        self.counts["ignored"] += ignored

    # -- the HTTP face --------------------------------------------------------------------------

    def app(self) -> Flask:
        app = Flask("owtrain-bridge")
        app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # Flask answers 413 above it

        @app.post("/events")
        def events() -> tuple[Response, int]:
            try:
                return jsonify(self.receive(request.headers.get("Authorization"),
                                            json_object(request.get_data(cache=False)))), 200
            except (Unauthorized, BadRequest) as exc:
                status, reason = (401, "unauthorized") if isinstance(exc, Unauthorized) else (400, "bad_request")
                REJECTIONS.note(status, reason, request.method, request.path, str(exc))
                return jsonify(error=str(exc), reason=reason), status

        @app.get("/status")
        def status() -> Response:
            summary = self.driver.state.summary(self.driver.config.epochs)
            return jsonify(counts=self.counts, shards=summary.shards, done=summary.done, failed=summary.failed,
                           running=summary.running, samples=summary.samples, throttles=self.driver.throttles,
                           sink=self.sink.counts() if self.sink is not None else None)

        return app

    # -- background work ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher (and the poller when configured) as background threads."""
        self.threads.append(threading.Thread(target=self._dispatch, name="bridge-dispatch", daemon=True))
        if self.lister is not None and self.config.poll_interval_s > 0:
            self.threads.append(threading.Thread(target=self._poll, name="bridge-poll", daemon=True))
        for thread in self.threads:
            thread.start()

    def _dispatch(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.driver.step()
                if self.sink is not None:
                    self.sink.step()
            except OwtrainError as exc:  # keep serving; the state still holds every shard
                log.error("dispatch step failed: %s", exc)
            self.stop_event.wait(self.driver.config.poll_interval_s)

    def _poll(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll_once()
            except OwtrainError as exc:
                log.warning("bucket poll failed (will retry): %s", exc)
            self.stop_event.wait(self.config.poll_interval_s)

    def dead_threads(self) -> list[str]:
        """Names of the bridge's background threads that have stopped although the bridge was not."""
        return [t.name for t in self.threads if not t.is_alive() and not self.stop_event.is_set()]

    def dispatching(self) -> bool:
        """Whether the dispatcher still runs (it collects results and launches activations)."""
        return any(t.is_alive() for t in self.threads)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=30)
