"""What the server tells Prometheus and the serving panel: requests, latency, batches, queues,
cache and per-version counts. One registry per server, so tests and several servers never mix.

The panel also plots a short history (`/api/history`): every `HISTORY_INTERVAL_S` the server's
sampler closes a window and appends one point — answered instances/s per version, p50/p99 of the
requests answered in the window, the mean batch, the queue depth, the cache hit rate — so a page
opened late still shows the last `HISTORY_POINTS` seconds. Percentiles come from the window's own
latencies (at most `WINDOW_CAP` kept; the histogram buckets are too coarse for a p99 line).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PCounter

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
HISTORY_INTERVAL_S = 1.0
HISTORY_POINTS = 600
WINDOW_CAP = 50_000
HISTORY_FIELDS = ("t", "answered_per_s", "p50_ms", "p99_ms", "batch_mean", "queue_depth", "cache_hit_rate")


class ServingMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self._requests = PCounter("owtrain_serve_requests", "Predict requests by model and HTTP status",
                                  ["model", "code"], registry=r)
        self._latency = Histogram("owtrain_serve_request_seconds", "Predict request latency (accepted requests)",
                                  ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self._instances = PCounter("owtrain_serve_instances", "Instances answered, by version",
                                   ["model", "version"], registry=r)
        self._batch = Histogram("owtrain_serve_batch_size", "Instances per forward pass", ["model", "version"],
                                buckets=BATCH_BUCKETS, registry=r)
        self._batch_s = Histogram("owtrain_serve_batch_seconds", "Forward-pass latency", ["model", "version"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self._queue = Gauge("owtrain_serve_queue_depth", "Instances waiting per version", ["model", "version"],
                            registry=r)
        self._limit = Gauge("owtrain_serve_batch_limit", "Current batch limit per version", ["model", "version"],
                            registry=r)
        self._cache = PCounter("owtrain_serve_cache", "Prediction cache lookups by outcome", ["outcome"],
                               registry=r)
        self._lock = threading.Lock()
        self.per_version: Counter[tuple[str, int]] = Counter()
        self.codes: Counter[int] = Counter()
        # the open history window, and the closed points: (t, fields…, {"model/version": instances/s})
        self._w_latency: list[float] = []
        self._w_requests = self._w_batches = self._w_batched = self._w_hits = self._w_misses = 0
        self._w_versions: Counter[str] = Counter()
        self._w_start = time.time()
        self._depth = 0
        self.history: deque[tuple[float, tuple[float | None, ...], dict[str, float]]] = deque(maxlen=HISTORY_POINTS)

    def request(self, model: str, code: int, seconds: float | None = None) -> None:
        self._requests.labels(model, str(code)).inc()
        with self._lock:
            self.codes[code] += 1
            if seconds is not None:
                self._w_requests += 1
                if len(self._w_latency) < WINDOW_CAP:
                    self._w_latency.append(seconds)
        if seconds is not None:
            self._latency.labels(model).observe(seconds)

    def answered(self, model: str, version: int, instances: int) -> None:
        self._instances.labels(model, str(version)).inc(instances)
        with self._lock:
            self.per_version[(model, version)] += instances
            self._w_versions[f"{model}/{version}"] += instances

    def batch(self, model: str, version: int, size: int, seconds: float) -> None:
        self._batch.labels(model, str(version)).observe(size)
        self._batch_s.labels(model, str(version)).observe(seconds)
        with self._lock:
            self._w_batches += 1
            self._w_batched += size

    def cache(self, hits: int, misses: int) -> None:
        if hits:
            self._cache.labels("hit").inc(hits)
        if misses:
            self._cache.labels("miss").inc(misses)
        with self._lock:
            self._w_hits += hits
            self._w_misses += misses

    def queues(self, depths: dict[tuple[str, int], tuple[int, int]]) -> None:
        """Set the queue-depth and batch-limit gauges: (model, version) → (depth, limit)."""
        for (model, version), (depth, limit) in depths.items():
            self._queue.labels(model, str(version)).set(depth)
            self._limit.labels(model, str(version)).set(limit)
        with self._lock:
            self._depth = sum(depth for depth, _ in depths.values())

    def sample(self, now: float | None = None) -> None:
        """Close the history window: append one point (rates over the window's length) and reset it."""
        now = time.time() if now is None else now
        with self._lock:
            span = max(now - self._w_start, 1e-3)
            lat = np.asarray(self._w_latency) * 1000.0
            looked = self._w_hits + self._w_misses
            point = (self._w_requests / span,
                     float(np.percentile(lat, 50)) if lat.size else None,
                     float(np.percentile(lat, 99)) if lat.size else None,
                     self._w_batched / self._w_batches if self._w_batches else None, float(self._depth),
                     self._w_hits / looked if looked else None)
            versions = {key: n / span for key, n in self._w_versions.items()}
            self.history.append((now, point, versions))
            self._w_latency, self._w_versions = [], Counter()
            self._w_requests = self._w_batches = self._w_batched = self._w_hits = self._w_misses = 0
            self._w_start = now

    def history_since(self, since: float) -> dict[str, Any]:
        """The points newer than `since`, one array per field; `versions` maps "model/version" to its
        answered instances/s per point (0 where it answered none)."""
        with self._lock:
            rows = [row for row in self.history if row[0] > since]
        keys = sorted({key for _, _, v in rows for key in v})
        out: dict[str, Any] = {"t": [t for t, _, _ in rows]}
        out.update({name: [p[i] for _, p, _ in rows] for i, name in enumerate(HISTORY_FIELDS[1:])})
        out["versions"] = {key: [v.get(key, 0.0) for _, _, v in rows] for key in keys}
        return out

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"codes": {str(k): v for k, v in sorted(self.codes.items())},
                    "instances": [{"model": m, "version": v, "count": n}
                                  for (m, v), n in sorted(self.per_version.items())]}

    def text(self) -> bytes:
        return generate_latest(self.registry)
