"""A token bucket: the rate limit of the parameter server's admission and of serving's callers."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` returns 0 or the seconds until one is free."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, max(burst, 1.0)
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def take(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def give_back(self) -> None:
        self.tokens = min(self.burst, self.tokens + 1.0)
