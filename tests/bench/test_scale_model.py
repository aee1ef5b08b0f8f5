"""The scale model (bench/scale) against closed forms: one chain's cycle, a saturated shard, sharding's
division of the per-byte cost, and the platform's quotas and invoker pool."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "scale"))

import costs as calibration  # noqa: E402
from model import Costs, Platform, Run, simulate  # noqa: E402

OPEN = Platform(concurrent=10**6, per_minute=10**7, invokers=1, blackbox_fraction=1.0, user_memory_mb=10**9,
                cold_start_s=0.0, warm_overhead_s=0.0, download_s=0.0, link_bytes_per_s=1e9, rtt_s=0.001)


def cycle_s(c: Costs, p: Platform, interval: int) -> float:
    """One chain alone: compute, compress, push (link + CPU + rtt), pull (CPU + link + rtt), load."""
    push = c.push_bytes / p.link_bytes_per_s + c.shard_push_s(1) + p.rtt_s
    pull = c.shard_pull_s(1) + c.pull_bytes / p.link_bytes_per_s + p.rtt_s
    return interval * c.compute_per_batch_s + c.client_push_s + push + pull + c.client_pull_s


@pytest.mark.parametrize("model", ["lenet5", "resnet18"])
def test_calibrated_single_chain_single_shard_matches_the_closed_form(model: str) -> None:
    c = calibration.costs(calibration.load(), model)
    cycle = cycle_s(c, OPEN, 16)
    run = Run(chains=1, update_interval=16, time_budget_s=10**9, dataset_samples=16 * 32 * 100,
              duration_s=60 * cycle, warmup_s=10 * cycle, jitter=0.0)
    r = simulate(c, OPEN, run)
    assert r.updates_per_s == pytest.approx(1 / cycle, rel=0.03)
    push = c.push_bytes / OPEN.link_bytes_per_s + c.shard_push_s(1) + OPEN.rtt_s
    assert r.push_p50_s == pytest.approx(push) and r.push_p99_s == pytest.approx(push)  # nobody to queue behind
    assert r.shard_utilisation[0] == pytest.approx((c.shard_push_s(1) + c.shard_pull_s(1)) / cycle, rel=0.05)


def tiny(fixed: float, per_byte: float, compute: float = 0.0) -> Costs:
    return Costs(compute_per_batch_s=compute, push_bytes=1e6, pull_bytes=1e6, push_fixed_s=fixed, push_per_byte_s=per_byte,
                 pull_fixed_s=0.0, pull_per_byte_s=0.0, client_push_s=0.0, client_pull_s=0.0)


def test_a_saturated_shard_serves_one_push_per_service_time() -> None:
    c = tiny(0.010, 0.0)
    r = simulate(c, OPEN, Run(chains=50, time_budget_s=10**9, duration_s=12, warmup_s=2))
    assert r.updates_per_s == pytest.approx(100, rel=0.02)
    assert r.shard_utilisation[0] == pytest.approx(1.0, abs=0.01)
    # Little's law: a chain's cycle is 50 × 10 ms; its pull queues for the same CPU as the pushes
    # (behind about half of them), so the push's share of the cycle is about half
    assert r.push_p50_s == pytest.approx(0.5 * 50 * 0.010, rel=0.15)


def test_sharding_divides_the_per_byte_cost_but_not_the_fixed_one() -> None:
    run = Run(chains=50, time_budget_s=10**9, duration_s=6, warmup_s=1)
    per_byte = tiny(0.0, 1e-8)  # 10 ms per push of 1 MB
    assert simulate(per_byte, OPEN, Run(**{**run.__dict__, "shards": 4})).updates_per_s == pytest.approx(400, rel=0.05)
    fixed = tiny(0.010, 0.0)
    assert simulate(fixed, OPEN, Run(**{**run.__dict__, "shards": 4})).updates_per_s == pytest.approx(100, rel=0.05)


def test_the_default_pool_runs_eight_docker_actions_at_once() -> None:
    # deploy-kube's defaults: 2048m per invoker, 256 MB actions, blackbox on 10 % (one invoker below ten)
    assert Platform(invokers=5).slots() == 8
    assert Platform(invokers=20).slots() == 16
    r = simulate(tiny(0.001, 0.0, compute=0.1), Platform(invokers=5, per_minute=10**6, cold_start_s=0.0, download_s=0.0),
                 Run(chains=100, update_interval=1, time_budget_s=5, duration_s=40, warmup_s=10))
    assert r.concurrent_mean == pytest.approx(8, abs=0.5)


def test_the_per_minute_quota_paces_the_invokes() -> None:
    # 30 chains of 1 s activations want 1,800 invokes a minute; the quota lets 60 through
    p = Platform(concurrent=100, per_minute=60, invokers=1, blackbox_fraction=1.0, user_memory_mb=10**6,
                 cold_start_s=0.0, download_s=0.0)
    r = simulate(tiny(0.001, 0.0, compute=0.1), p,
                 Run(chains=30, update_interval=1, time_budget_s=1.0, duration_s=180, warmup_s=60))
    assert r.throttled_invokes > 0
    assert r.concurrent_mean == pytest.approx(60 / 60 * 1.0, rel=0.3)  # ~1 activation of ~1 s per second
