"""The versions being served right now, kept in step with the repository while serving.

`refresh()` reads the repository (versions, labels), loads what the version policy selects and
is not loaded yet, and unloads what it no longer selects: a new numbered folder is served after
the next refresh, a removed one stops being served, and a label change (promote, rollback) takes
effect with no restart. A version that fails to load is reported in its status and skipped; the
others keep serving. An unloaded version's batcher first answers everything it had queued.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from owtrain.errors import ObjectMissing, OwtrainError
from serving.batch_policy import BatchPolicy
from serving.batcher import Batcher
from serving.metrics import ServingMetrics
from serving.model import ServedVersion, load_version
from serving.repository import Labels, Repository, select_versions

log = logging.getLogger(__name__)


@dataclass
class Loaded:
    served: ServedVersion
    batcher: Batcher


@dataclass
class ModelEntry:
    labels: Labels = field(default_factory=Labels)
    versions: dict[int, Loaded] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


class LiveModels:
    """Loaded versions per model, with their batchers; thread-safe reads, one refresher."""

    def __init__(self, repo: Repository, policy: tuple[str, tuple[int, ...]], batching: Callable[[], BatchPolicy],
                 max_queue: int, max_wait_s: float, metrics: ServingMetrics | None = None) -> None:
        self.repo, self.policy, self.batching = repo, policy, batching
        self.max_queue, self.max_wait_s = max_queue, max_wait_s
        self.metrics = metrics
        self._models: dict[str, ModelEntry] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- reading ----------------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def entry(self, name: str) -> ModelEntry:
        with self._lock:
            entry = self._models.get(name)
        if entry is None:
            raise ObjectMissing(f"model {name!r} is not served here; models: {self.names()}")
        return entry

    def get(self, name: str, version: int) -> Loaded:
        entry = self.entry(name)
        loaded = entry.versions.get(version)
        if loaded is None:
            raise ObjectMissing(f"model {name!r} has no version {version} loaded; loaded: {sorted(entry.versions)}")
        return loaded

    def labelled(self, name: str, label: str) -> Loaded:
        entry = self.entry(name)
        version = entry.labels.get(label)
        if version is None:
            raise ObjectMissing(f"model {name!r} has no {label!r} label set")
        return self.get(name, version)

    def status(self, name: str) -> dict[str, Any]:
        """TensorFlow Serving's version status, plus labels and each version's scores."""
        entry = self.entry(name)
        rows = [{"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
                 "scores": loaded.served.meta.scores, "queue_depth": loaded.batcher.depth,
                 "batch_limit": loaded.batcher.policy.limit()}
                for v, loaded in sorted(entry.versions.items())]
        rows += [{"version": str(v), "state": "END", "status": {"error_code": "FAILED_PRECONDITION",
                                                                   "error_message": msg}}
                 for v, msg in sorted(entry.errors.items())]
        return {"model_version_status": rows, "labels": entry.labels.to_json()}

    def queues(self) -> dict[tuple[str, int], tuple[int, int]]:
        with self._lock:
            entries = list(self._models.items())
        return {(n, v): (x.batcher.depth, x.batcher.policy.limit()) for n, e in entries for v, x in e.versions.items()}

    # -- keeping in step --------------------------------------------------------------------------

    def refresh(self) -> None:
        """One pass over the repository (see the module docstring)."""
        with self._refresh_lock:
            for name in self.repo.models():
                self._refresh_model(name)

    def _refresh_model(self, name: str) -> None:
        available = self.repo.versions(name)
        labels = self.repo.labels(name)
        want = select_versions(self.policy, available, labels)
        with self._lock:
            entry = self._models.get(name) or ModelEntry()
        versions, errors = dict(entry.versions), {v: e for v, e in entry.errors.items() if v in want}
        for v in want:
            if v in versions or v in errors:
                continue
            try:
                served = load_version(self.repo, name, v)
            except (OwtrainError, RuntimeError) as exc:  # a broken version: reported, the rest keep serving
                log.error("cannot load model %s version %d: %s", name, v, exc)
                errors[v] = str(exc)
                continue
            versions[v] = Loaded(served, self._batcher(served))
            log.info("serving model %s version %d (%s)", name, v, self.repo.describe())
        gone = [versions.pop(v) for v in list(versions) if v not in want]
        with self._lock:
            self._models[name] = ModelEntry(labels=labels, versions=versions, errors=errors)
        for loaded in gone:
            log.info("unloading model %s version %d", name, loaded.served.version)
            loaded.batcher.close()

    def _batcher(self, served: ServedVersion) -> Batcher:
        def observe(size: int, seconds: float) -> None:
            if self.metrics:
                self.metrics.batch(served.name, served.version, size, seconds)

        return Batcher(served.forward, self.batching(), self.max_queue, self.max_wait_s, observe,
                       name=f"batch-{served.name}-{served.version}")

    def start(self, poll_s: float) -> None:
        """Refresh now, then every `poll_s` seconds in a background thread (0: never again)."""
        self.refresh()
        if poll_s > 0:
            self._thread = threading.Thread(target=self._poll, args=(poll_s,), name="repo-poll", daemon=True)
            self._thread.start()

    def _poll(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            try:
                self.refresh()
            except Exception as exc:  # the store is away or answers oddly: keep serving what is loaded
                log.warning("repository refresh failed (serving what is loaded): %s", exc)

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        with self._lock:
            entries, self._models = list(self._models.values()), {}
        for entry in entries:
            for loaded in entry.versions.values():
                loaded.batcher.close()
