"""The shared retry helper: bounded, honours Retry-After, re-raises when out of attempts."""

import time

import pytest

from owtrain.errors import Throttled
from owtrain.retry import RetryPolicy, backoff_delay, retry_call


def test_succeeds_after_transient_failures() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("down")
        return "ok"

    assert retry_call(flaky, RetryPolicy(attempts=5, base=0.001)) == "ok"
    assert len(calls) == 3


def test_gives_up_after_the_attempt_cap() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        retry_call(down, RetryPolicy(attempts=3, base=0.001))
    assert len(calls) == 3


def test_retry_after_is_honoured() -> None:
    calls: list[float] = []

    def throttled() -> str:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise Throttled("slow down", retry_after=0.3)
        return "ok"

    assert retry_call(throttled, RetryPolicy(attempts=2, base=0.001)) == "ok"
    assert calls[1] - calls[0] >= 0.29


def test_other_errors_are_not_retried() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("bug")

    with pytest.raises(ValueError):
        retry_call(broken)
    assert len(calls) == 1


def test_backoff_is_capped() -> None:
    policy = RetryPolicy(base=1.0, cap=2.0)
    assert all(backoff_delay(i, policy) <= 2.0 for i in range(10))


def test_deadline_stops_retries_early() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        retry_call(down, RetryPolicy(attempts=100, base=0.05, deadline=time.monotonic() + 0.2))
    assert len(calls) < 10
