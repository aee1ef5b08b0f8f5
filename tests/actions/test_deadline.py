"""Deadline arithmetic: the reserve follows the slowest push, the end is the earlier limit."""

from __future__ import annotations

import time

from actions.deadline import FIRST_PUSH_GUESS_S, RETURN_MARGIN_S, Deadline
from owtrain.retry import RetryPolicy


def test_end_is_the_earlier_of_deadline_and_budget():
    now = time.monotonic()
    far = int(time.time() * 1000) + 60_000
    assert abs(Deadline.from_limits(now, far, 5.0).end - (now + 5.0)) < 0.01
    near = int(time.time() * 1000) + 2_000
    assert abs(Deadline.from_limits(now, near, 50.0).end - (now + 2.0)) < 0.05
    assert Deadline.from_limits(now, None, None).end is None


def test_reserve_uses_twice_the_slowest_push():
    d = Deadline(time.monotonic() + 10)
    assert d.reserve() == 2 * FIRST_PUSH_GUESS_S + RETURN_MARGIN_S
    d.observe_push(0.1)
    d.observe_push(0.3)
    d.observe_push(0.2)
    assert abs(d.reserve() - (0.6 + RETURN_MARGIN_S)) < 1e-9


def test_room_for_batch_counts_the_slowest_batch():
    d = Deadline(time.monotonic() + 2.0)
    d.observe_push(0.1)
    assert d.room_for_batch()
    d.observe_batch(1.8)
    assert not d.room_for_batch()
    assert Deadline(None).room_for_batch()


def test_retry_policy_stops_before_the_end():
    d = Deadline(time.monotonic() + 3.0)
    policy = d.retry_policy(RetryPolicy(attempts=7))
    assert policy.attempts == 7 and policy.deadline == d.end - RETURN_MARGIN_S
    assert Deadline(None).retry_policy(RetryPolicy()).deadline is None
