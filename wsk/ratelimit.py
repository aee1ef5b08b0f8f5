"""A sliding-window rate limit: at most `limit` starts in any `window_s` seconds.

OpenWhisk counts invocations per namespace per minute; the local invoker enforces the same rule,
and the driver and the bridge pace themselves with it so that they never provoke a 429.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class RateLimiter:
    """Thread-safe; `clock` is injectable so the window logic is testable without sleeping."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._starts and now - self._starts[0] >= self.window_s:
            self._starts.popleft()

    def try_acquire(self) -> bool:
        """Take a slot now if one is free; False means "over the rate, nothing taken"."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            if len(self._starts) >= self.limit:
                return False
            self._starts.append(now)
            return True

    def wait_time(self) -> float:
        """Seconds until a slot frees (0 when one is free now)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            if len(self._starts) < self.limit:
                return 0.0
            return self._starts[0] + self.window_s - now
