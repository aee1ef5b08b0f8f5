"""Admission control: token buckets per worker and for the whole server.

A push that finds either bucket empty is refused with `Throttled(retry_after)` (HTTP 429 +
Retry-After) before its body is decoded, so nothing it carried was taken; every push that passes
is applied or buffered. A rate of 0 disables that limit.
"""

from __future__ import annotations

import threading
import time

from owtrain.errors import Throttled
from owtrain.token_bucket import TokenBucket


class Admission:
    """Checks both limits atomically: a refused push consumes no token of either bucket."""

    def __init__(self, worker_rate: float, worker_burst: float, global_rate: float, global_burst: float) -> None:
        self.worker_rate, self.worker_burst = worker_rate, worker_burst
        self.global_bucket = TokenBucket(global_rate, global_burst) if global_rate > 0 else None
        self.buckets: dict[str, TokenBucket] = {}
        self.lock = threading.Lock()

    def admit(self, worker: str) -> None:
        """Take a token for `worker` or raise Throttled saying how long to wait."""
        now = time.monotonic()
        with self.lock:
            wait = self.global_bucket.take(now) if self.global_bucket else 0.0
            if wait:
                raise Throttled(f"server-wide push rate limit reached; retry in {wait:.2f}s", wait)
            if self.worker_rate <= 0:
                return
            bucket = self.buckets.get(worker)
            if bucket is None:
                bucket = self.buckets[worker] = TokenBucket(self.worker_rate, self.worker_burst)
            wait = bucket.take(now)
            if wait:
                if self.global_bucket:
                    self.global_bucket.give_back()
                raise Throttled(f"push rate limit for worker {worker!r} reached; retry in {wait:.2f}s", wait)
