"""One shared retry helper: bounded attempts, capped exponential back-off with jitter, and
respect for a server's `Retry-After` (carried by `Throttled`).

Every HTTP call in owtrain goes through `retry_call` so that a flaky network costs a few
seconds, a server that stays down ends the work with a clear error, and nothing hangs.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from owtrain.errors import Throttled

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: `attempts` calls in all, sleeping base*2**i (capped) between them.

    `deadline` is an absolute `time.monotonic()` value after which no new attempt starts.
    """

    attempts: int = 5
    base: float = 0.2
    cap: float = 5.0
    deadline: float | None = None


def backoff_delay(attempt: int, policy: RetryPolicy, retry_after: float | None = None) -> float:
    """Seconds to sleep before attempt number `attempt + 1` (0-based `attempt`)."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), policy.cap * 4)
    delay = float(min(policy.cap, policy.base * (2**attempt)))
    return delay * (0.5 + random.random() / 2)


def retry_call(
    fn: Callable[[], T],
    policy: RetryPolicy = RetryPolicy(),
    retry_on: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, Throttled),
    what: str = "call",
) -> T:
    """Call `fn` until it returns, retrying on `retry_on` exceptions within `policy`.

    Raises the last exception when attempts or the deadline run out.
    """
    attempt = 0
    while True:
        try:
            return fn()
        except retry_on as exc:
            attempt += 1
            retry_after = exc.retry_after if isinstance(exc, Throttled) else None
            delay = backoff_delay(attempt - 1, policy, retry_after)
            out_of_time = policy.deadline is not None and time.monotonic() + delay > policy.deadline
            if attempt >= policy.attempts or out_of_time:
                log.warning("%s failed after %d attempt(s): %s", what, attempt, exc)
                raise
            log.info("%s failed (%s); retry %d/%d in %.2fs", what, exc, attempt, policy.attempts - 1, delay)
            time.sleep(delay)
