"""One prediction, start to end: pick the version, answer what the cache knows, batch the rest.

Shared by the HTTP server, the `predict` action and event-driven inference, so all three give
the same answer for the same input. The caller's request is already validated (`serving.inputs`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from owtrain.errors import Throttled
from serving.cache import PredictionCache, digest
from serving.live import LiveModels, Loaded
from serving.metrics import ServingMetrics
from serving.routing import route
from serving.selection import Exp3


class Predictor:
    def __init__(self, live: LiveModels, cache: PredictionCache, metrics: ServingMetrics,
                 timeout_s: float = 30.0, bandit: Exp3 | None = None) -> None:
        self.live, self.cache, self.metrics, self.timeout_s = live, cache, metrics, timeout_s
        self.bandit = bandit  # None: the labels' canary split routes

    def resolve(self, name: str, caller: str, version: int | None = None, label: str | None = None) -> Loaded:
        """The version that answers: the one named, the one a label names, or the routed one."""
        if version is not None:
            return self.live.get(name, version)
        if label is not None:
            return self.live.labelled(name, label)
        entry = self.live.entry(name)
        if self.bandit is not None:
            return self.live.get(name, self.bandit.select(name, sorted(entry.versions)))
        return self.live.get(name, route(name, caller, entry.labels, sorted(entry.versions)))

    def predict(self, loaded: Loaded, rows: np.ndarray) -> np.ndarray:
        """Probabilities (N, K) for raw rows (N, C, H, W); cached rows skip the batcher."""
        served = loaded.served
        keys = [(served.name, served.version, digest(row)) for row in rows]
        found = [self.cache.get(k) for k in keys]
        missing = [i for i, f in enumerate(found) if f is None]
        self.metrics.cache(len(rows) - len(missing), len(missing))
        if missing:
            result = loaded.batcher.submit(rows[missing] if len(missing) < len(rows) else rows)
            result.wait(self.timeout_s)
            if not result.ready():  # still queued: it will be computed, but this caller stops waiting
                raise Throttled(f"model {served.name!r} version {served.version} is overloaded; retry later",
                                self.timeout_s)
            out = result.get()
            for i, probs in zip(missing, out, strict=True):
                found[i] = probs
                self.cache.put(keys[i], probs)
        self.metrics.answered(served.name, served.version, len(rows))
        return np.stack(found)  # type: ignore[arg-type]

    @staticmethod
    def answer(loaded: Loaded, probs: np.ndarray) -> dict[str, Any]:
        """The JSON answer: per instance the class name, its index and the probabilities."""
        classes = loaded.served.meta.signature.classes
        best = probs.argmax(axis=1)
        return {"model": loaded.served.name, "version": loaded.served.version,
                "predictions": [{"class": classes[int(b)], "class_index": int(b),
                                 "probabilities": [float(p) for p in row]}
                                for b, row in zip(best, probs, strict=True)]}
