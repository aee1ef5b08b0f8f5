"""Event-driven inference: images uploaded under a bucket prefix are predicted, and each result is
written back as a JSON object beside its input (`images/a.png` → `images/a.png.prediction.json`).

It plugs into the training event bridge as its `ObjectSink` (`wsk.bridge`): the same webhook and
bucket poller find the uploads, and the same rate limiter that paces training launches paces the
predictions. Deduplication is a SQLite row per input key, committed before the bridge answers the
notification: MinIO delivers at least once, so a repeated notification finds the row and adds
nothing. Exactly one result per input: the result's key is a function of the input's, a row is
marked done only after its result is written, and after a crash the pending row is predicted
again and the same object rewritten with the same answer. An undecodable image gets a result too
(`{"error": …}`), so every input has exactly one answer.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataset_packer.stores.repo_storage import S3Storage
from owtrain.errors import BadRequest, ConfigError, ObjectMissing, OwtrainError
from owtrain.model_repository_layout import RepoStorage
from serving.config import EventsConfig
from serving.inputs import binary_instance
from serving.predictor import Predictor
from wsk.ratelimit import RateLimiter
from wsk.sqlite import connect

if TYPE_CHECKING:
    from owtrain.s3 import S3Settings
    from wsk.bridge import Bridge

log = logging.getLogger(__name__)

RESULT_SUFFIX = ".prediction.json"
IMAGE_SUFFIXES = (".png", ".npy")
SCHEMA = """
CREATE TABLE IF NOT EXISTS inputs (
    key TEXT PRIMARY KEY, status TEXT NOT NULL DEFAULT 'pending', version INTEGER, error TEXT,
    added REAL NOT NULL, done REAL
);
"""
NO_SHARDS = r"(?!)"  # a pattern no key matches: the serving process's bridge starts no training
CALLER = "events"  # the canary split treats event-driven traffic as one caller


def start_bridge(events: EventsConfig, s3: S3Settings, predictor: Predictor) -> Bridge:
    """The training event bridge with this sink, for the serving process: its poller lists the
    prefix, its webhook is the server's POST /events, its limiter paces the predictions. Its driver
    trains nothing here (the shard pattern matches no key); `owtrain bridge serve` runs training."""
    from dataset_packer.stores.s3 import S3Store
    from wsk.bridge import Bridge
    from wsk.config import BridgeConfig, DriverConfig, LocalInvokerConfig
    from wsk.driver import Driver
    from wsk.invoker.local import LocalInvoker
    from wsk.sources import bucket_lister
    from wsk.state import DriverState

    if not events.token:
        raise ConfigError("event-driven inference needs the webhook token in $OWTRAIN_EVENTS_TOKEN")
    store = S3Store(replace(s3, bucket=events.bucket))
    base = state_base(events.state, events.bucket)
    model = model_to_answer(events.model, predictor, "--events-model")
    state = DriverState(base.with_suffix(".bridge.db"))
    invoker = LocalInvoker(LocalInvokerConfig(db_path=base.with_suffix(".activations.db")))
    driver = Driver(invoker, state, DriverConfig(job=f"serving-events-{events.bucket}", ps_url="-", secret="-",
                                                 per_minute=events.per_minute, rate_window_s=events.window_s))
    sink = EventPredictor(S3Storage(store, events.bucket), predictor, model, events.prefix, base, driver.limiter)
    return Bridge(BridgeConfig(token=events.token, key_pattern=NO_SHARDS, poll_interval_s=events.poll_s),
                  events.bucket, state, driver, bucket_lister(store, events.prefix), sink=sink)


def state_base(state: str, bucket: str) -> Path:
    """The SQLite file of seen inputs: `state`, or ~/.owtrain/serving-events-<bucket>.db."""
    from wsk.config import state_dir

    return Path(state) if state else state_dir() / f"serving-events-{bucket}.db"


def model_to_answer(model: str, predictor: Predictor, option: str) -> str:
    """`model`, or the first model the repository serves; ConfigError naming `option` when there is none."""
    chosen = model or next(iter(predictor.live.names()), "")
    if not chosen:
        raise ConfigError(f"{option}: the repository holds no model yet")
    return chosen


class EventPredictor:
    """Predicts uploaded images of one model under `prefix`, reading and writing through `bucket`."""

    def __init__(self, bucket: RepoStorage, predictor: Predictor, model: str, prefix: str, state_path: Path,
                 limiter: RateLimiter, per_step: int = 32) -> None:
        self.bucket, self.predictor, self.model, self.prefix = bucket, predictor, model, prefix
        self.conn = connect(state_path, SCHEMA)
        self.lock = threading.Lock()  # the webhook's `add` and the dispatcher's `step` share the file
        self.limiter, self.per_step = limiter, per_step
        self.written = 0

    def wants(self, key: str) -> bool:
        return key.startswith(self.prefix) and key.lower().endswith(IMAGE_SUFFIXES)

    def add(self, key: str) -> bool:
        """Record an upload (committed on return); False for one already recorded."""
        with self.lock:
            cur = self.conn.execute("INSERT OR IGNORE INTO inputs (key, added) VALUES (?, ?)", (key, time.time()))
        return cur.rowcount == 1

    def step(self) -> int:
        """Predict pending inputs while the limiter allows; returns how many results were written."""
        with self.lock:
            rows = self.conn.execute("SELECT key FROM inputs WHERE status='pending' ORDER BY added LIMIT ?",
                                     (self.per_step,)).fetchall()
        done = 0
        for row in rows:
            if not self.limiter.try_acquire():
                break
            try:
                done += self._one(row["key"])
            except OwtrainError as exc:  # the store or the model is away: the row stays pending
                log.warning("cannot predict %s yet: %s", row["key"], exc)
                break
        return done

    def _one(self, key: str) -> int:
        data = self.bucket.read(key)
        if data is None:
            self._finish(key, "gone", None, "the object was deleted before it was predicted")
            return 0
        result: dict[str, Any]
        try:
            loaded = self.predictor.resolve(self.model, CALLER)
            rows = binary_instance(data, loaded.served.meta.signature, key)[None]
            answer = self.predictor.answer(loaded, self.predictor.predict(loaded, rows))
            result = {"input": key, "model": answer["model"], "version": answer["version"],
                      **answer["predictions"][0]}
            status, version, error = "done", answer["version"], None
        except (BadRequest, ObjectMissing) as exc:
            result = {"input": key, "model": self.model, "error": str(exc)}
            status, version, error = "failed", None, str(exc)
        self.bucket.write(key + RESULT_SUFFIX, json.dumps(result).encode())
        self.written += 1
        self._finish(key, status, version, error)
        return 1

    def _finish(self, key: str, status: str, version: int | None, error: str | None) -> None:
        with self.lock:
            self.conn.execute("UPDATE inputs SET status=?, version=?, error=?, done=? WHERE key=?",
                              (status, version, error, time.time(), key))

    def counts(self) -> dict[str, int]:
        """Inputs by state: pending, done, failed (the bridge's `/status` shows them as `sink`)."""
        with self.lock:
            rows = self.conn.execute("SELECT status, COUNT(*) AS n FROM inputs GROUP BY status").fetchall()
        return {r["status"]: r["n"] for r in rows}
