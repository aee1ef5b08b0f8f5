"""What the server tells Prometheus and the serving panel: requests, latency, batches, queues,
cache and per-version counts. One registry per server, so tests and several servers never mix."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PCounter

LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


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

    def request(self, model: str, code: int, seconds: float | None = None) -> None:
        self._requests.labels(model, str(code)).inc()
        with self._lock:
            self.codes[code] += 1
        if seconds is not None:
            self._latency.labels(model).observe(seconds)

    def answered(self, model: str, version: int, instances: int) -> None:
        self._instances.labels(model, str(version)).inc(instances)
        with self._lock:
            self.per_version[(model, version)] += instances

    def batch(self, model: str, version: int, size: int, seconds: float) -> None:
        self._batch.labels(model, str(version)).observe(size)
        self._batch_s.labels(model, str(version)).observe(seconds)

    def cache(self, hits: int, misses: int) -> None:
        if hits:
            self._cache.labels("hit").inc(hits)
        if misses:
            self._cache.labels("miss").inc(misses)

    def queues(self, depths: dict[tuple[str, int], tuple[int, int]]) -> None:
        """Set the queue-depth and batch-limit gauges: (model, version) → (depth, limit)."""
        for (model, version), (depth, limit) in depths.items():
            self._queue.labels(model, str(version)).set(depth)
            self._limit.labels(model, str(version)).set(limit)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"codes": {str(k): v for k, v in sorted(self.codes.items())},
                    "instances": [{"model": m, "version": v, "count": n}
                                  for (m, v), n in sorted(self.per_version.items())]}

    def text(self) -> bytes:
        return generate_latest(self.registry)
