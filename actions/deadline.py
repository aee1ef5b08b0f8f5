"""When to stop training so the final push and the result make it out before the platform's deadline.

The end is the earlier of the platform's deadline (`__OW_DEADLINE`, epoch ms) and the time budget.
Before each batch the loop asks `room_for_batch()`: is there time for one more batch (the slowest
seen so far) plus the reserve for the final push — twice the slowest push measured in this
activation, plus a constant for returning the result. Until a push has been timed, a pessimistic
guess stands in for it.
"""

from __future__ import annotations

import time
from dataclasses import replace

from owtrain.retry import RetryPolicy

RETURN_MARGIN_S = 0.25  # serialising the result and the HTTP reply to the invoker
FIRST_PUSH_GUESS_S = 0.5  # reserve for the final push before any push was timed


class Deadline:
    """Tracks the end instant (monotonic seconds) and the slowest batch and push observed."""

    def __init__(self, end: float | None) -> None:
        self.end = end
        self.slowest_batch = 0.0
        self.slowest_push: float | None = None

    @classmethod
    def from_limits(cls, started: float, deadline_ms: int | None, budget_s: float | None) -> Deadline:
        """`started` is `time.monotonic()` at activation start; the wall-clock deadline is converted."""
        ends = []
        if deadline_ms is not None:
            ends.append(time.monotonic() + (deadline_ms / 1000.0 - time.time()))
        if budget_s is not None:
            ends.append(started + budget_s)
        return cls(min(ends) if ends else None)

    def reserve(self) -> float:
        """Seconds kept back for the final push and the reply."""
        push = self.slowest_push if self.slowest_push is not None else FIRST_PUSH_GUESS_S
        return 2 * push + RETURN_MARGIN_S

    def room_for_batch(self) -> bool:
        """True if one more batch and the final push still fit before the end."""
        return self.end is None or time.monotonic() + self.slowest_batch + self.reserve() < self.end

    def observe_batch(self, seconds: float) -> None:
        self.slowest_batch = max(self.slowest_batch, seconds)

    def observe_push(self, seconds: float) -> None:
        self.slowest_push = max(self.slowest_push or 0.0, seconds)

    def retry_policy(self, base: RetryPolicy) -> RetryPolicy:
        """`base` with no retry starting after the end minus the return margin, so nothing hangs."""
        return base if self.end is None else replace(base, deadline=self.end - RETURN_MARGIN_S)

    def remaining(self) -> float | None:
        """Seconds left until the end (may be negative); None without an end."""
        return None if self.end is None else self.end - time.monotonic()
