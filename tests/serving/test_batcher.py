"""The batcher and its policies without a server: AIMD's arithmetic, whole requests per batch,
every accepted request answered with its own rows (from several threads at once), the bounded
queue refusing with Throttled before queueing, and close() draining the queue."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from owtrain.errors import ConfigError, Throttled
from serving.batch_policy import AIMD, Fixed, make_policy
from serving.batcher import Batcher


def test_aimd_adds_after_full_batches_under_the_slo_and_halves_on_a_miss():
    p = AIMD(slo_s=0.010, max_batch=8, step=2)
    assert p.limit() == 1
    p.observe(1, 0.001)
    assert p.limit() == 3
    p.observe(2, 0.001)  # not a full batch: no evidence the limit could grow
    assert p.limit() == 3
    for _ in range(5):
        p.observe(p.limit(), 0.001)
    assert p.limit() == 8  # capped at max_batch
    p.observe(8, 0.020)
    assert p.limit() == 4
    p.observe(4, 0.020)
    p.observe(2, 0.020)
    p.observe(1, 0.020)
    assert p.limit() == 1  # never below one


def test_policies_by_name():
    assert make_policy("aimd", 20, 64).describe() == "aimd:slo=20ms"
    assert make_policy("fixed:8", 20, 64).limit() == 8
    for bad in ("fixed", "fixed:x", "lifo", "fixed:0"):
        with pytest.raises(ConfigError):
            make_policy(bad, 20, 64)


def doubling(delay_s: float = 0.0, sizes: list[int] | None = None):
    def forward(rows: np.ndarray) -> np.ndarray:
        if sizes is not None:
            sizes.append(len(rows))
        time.sleep(delay_s)
        return rows * 2.0

    return forward


def test_many_threads_each_get_their_own_rows_and_batches_respect_the_limit():
    sizes: list[int] = []
    batcher = Batcher(doubling(0.002, sizes), Fixed(16), max_queue=10_000, max_wait_s=0.005)

    def client(i: int) -> bool:
        rows = np.full((1 + i % 3, 4), float(i))
        return bool(np.array_equal(batcher.submit(rows).get(timeout=30), rows * 2))

    with ThreadPoolExecutor(24) as pool:
        assert all(pool.map(client, range(600)))
    batcher.close()
    assert sum(sizes) == sum(1 + i % 3 for i in range(600))
    assert max(sizes) <= 16 and max(sizes) > 3  # requests were batched together, whole
    assert len(sizes) < 600


def test_aimd_grows_under_load_and_holds_the_slo():
    policy = AIMD(slo_s=0.020, max_batch=64)
    sizes: list[int] = []
    # A forward pass costs 1 ms + 0.5 ms per row: the SLO allows up to ~38 rows.
    batcher = Batcher(lambda r: (sizes.append(len(r)), time.sleep(0.001 + 0.0005 * len(r)), r)[2], policy,
                      max_queue=100_000, max_wait_s=0.002)
    with ThreadPoolExecutor(48) as pool:
        list(pool.map(lambda i: batcher.submit(np.zeros((1, 2))).get(timeout=30), range(3000)))
    batcher.close()
    assert max(sizes) > 8, sizes[-20:]
    assert policy.limit() <= 40


def test_a_full_queue_refuses_before_queueing_and_nothing_accepted_is_dropped():
    gate = threading.Event()
    batcher = Batcher(lambda r: (gate.wait(10), r)[1], Fixed(4), max_queue=8, max_wait_s=0.0)
    first = batcher.submit(np.ones((4, 1)))  # taken by the worker, which waits at the gate
    time.sleep(0.1)
    accepted = [batcher.submit(np.full((4, 1), float(i))) for i in range(2)]
    assert batcher.depth == 8
    with pytest.raises(Throttled) as refused:
        batcher.submit(np.ones((1, 1)))
    assert "queue of this model version is full (8 instances waiting, limit 8)" in str(refused.value)
    assert refused.value.retry_after > 0
    gate.set()
    batcher.close()  # drains what was accepted
    assert first.get(timeout=5).shape == (4, 1)
    for i, result in enumerate(accepted):
        assert np.array_equal(result.get(timeout=5), np.full((4, 1), float(i)))
    with pytest.raises(Throttled):
        batcher.submit(np.ones((1, 1)))


def test_an_oversized_request_runs_alone_and_a_failing_forward_fails_only_its_batch():
    sizes: list[int] = []
    batcher = Batcher(doubling(0, sizes), Fixed(2), max_queue=100, max_wait_s=0.0)
    assert batcher.submit(np.ones((5, 1))).get(timeout=5).shape == (5, 1)
    batcher.close()
    assert sizes == [5]
    calls = []

    def flaky(rows: np.ndarray) -> np.ndarray:
        calls.append(len(rows))
        if len(calls) == 1:
            raise RuntimeError("model fault")
        return rows

    batcher = Batcher(flaky, Fixed(1), max_queue=10, max_wait_s=0.0)
    with pytest.raises(RuntimeError):
        batcher.submit(np.ones((1, 1))).get(timeout=5)
    assert batcher.submit(np.ones((1, 1))).get(timeout=5).shape == (1, 1)
    batcher.close()
