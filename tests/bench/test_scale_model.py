"""The scale model (bench/scale) against closed forms: one chain's cycle, a saturated shard, sharding's
division of the per-byte cost, the client's request per shard, processor sharing of one machine's
cores (the validation's deployment), and the platform's quotas and invoker pool."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest
import simpy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "scale"))

import costs as calibration  # noqa: E402
from model import Costs, Platform, Process, Run, SharedCores, simulate  # noqa: E402

OPEN = Platform(concurrent=10**6, per_minute=10**7, invokers=1, blackbox_fraction=1.0, user_memory_mb=10**9,
                cold_start_s=0.0, warm_overhead_s=0.0, download_s=0.0, link_bytes_per_s=1e9, rtt_s=0.001)


def cycle_s(c: Costs, p: Platform, interval: int, shards: int = 1) -> float:
    """One chain alone: compute, compress, push (link + CPU + rtt), pull (CPU + link + rtt), load; the
    client pays one request per shard, each shard its slice, and the worker's own link carries all S."""
    link = p.link_bytes_per_s
    push = max(c.push_bytes / shards / link + c.shard_push_s(shards), c.push_bytes / link) + p.rtt_s
    pull = max(c.shard_pull_s(shards) + c.pull_bytes / shards / link, c.pull_bytes / link) + p.rtt_s
    return interval * c.compute_per_batch_s + c.client_push(shards) + push + pull + c.client_pull(shards)


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


def test_the_client_pays_one_request_per_shard() -> None:
    """With S shards the worker's CPU per exchange grows by S − 1 requests (measured: the action's
    ShardSet sends one per shard); the bytes are not paid again."""
    base = calibration.costs(calibration.load(), "lenet5")
    assert base.client_push_request_s > 0 and base.client_pull_request_s > 0  # calibrate.py measured them
    c = Costs(compute_per_batch_s=0.004, push_bytes=1e6, pull_bytes=1e6, push_fixed_s=0.002, push_per_byte_s=1e-9,
              pull_fixed_s=0.001, pull_per_byte_s=1e-9, client_push_s=0.003, client_pull_s=0.002,
              client_push_request_s=0.0015, client_pull_request_s=0.001)
    assert c.client_push(1) == pytest.approx(0.003) and c.client_push(4) == pytest.approx(0.003 + 3 * 0.0015)
    assert c.client_pull(2) == pytest.approx(0.003)
    for shards in (1, 2, 8):
        cycle = cycle_s(c, OPEN, 4, shards)
        run = Run(chains=1, shards=shards, update_interval=4, time_budget_s=10**9, dataset_samples=4 * 32 * 100,
                  duration_s=200 * cycle, warmup_s=20 * cycle, jitter=0.0)
        assert simulate(c, OPEN, run).updates_per_s == pytest.approx(1 / cycle, rel=0.02)


def test_shared_cores_are_processor_shared() -> None:
    env = simpy.Environment()
    cores = SharedCores(env, 2)
    ends: dict[str, float] = {}

    def job(name: str, start: float, work: float, weight: int = 1) -> Process:
        yield env.timeout(start)
        yield cores.work(work, weight)
        ends[name] = env.now

    # three jobs of 1 s on 2 cores: each runs at 2/3 of a core and all end at 1.5 s; a fourth of
    # weight 2 (two symmetric shards) arriving at 2 s, with one of 1 s: 3 jobs, 2/3 each again
    for name in "abc":
        env.process(job(name, 0.0, 1.0))
    env.process(job("shards", 2.0, 1.0, weight=2))
    env.process(job("d", 2.0, 1.0))
    # on 1 core: 1 s from 0, 1 s from 0.5: alone for 0.5 s, then halves: ends at 1.5 and 2.0
    single = SharedCores(env, 1)

    def on_single(name: str, start: float) -> Process:
        yield env.timeout(start)
        yield single.work(1.0)
        ends[name] = env.now

    env.process(on_single("first", 0.0))
    env.process(on_single("second", 0.5))
    env.run()
    assert ends["a"] == ends["b"] == ends["c"] == pytest.approx(1.5)
    assert ends["shards"] == ends["d"] == pytest.approx(3.5)
    assert ends["first"] == pytest.approx(1.5) and ends["second"] == pytest.approx(2.0)


def test_workers_on_a_shared_machine_share_its_cores() -> None:
    """4 chains computing 0.1 s per push on 2 shared cores: each compute phase takes twice as long
    (the stretch validate.py matches to the run's), so 20 updates/s instead of 40 on 4 cores of their own."""
    c = tiny(0.0, 0.0, compute=0.1)
    run = Run(chains=4, update_interval=1, time_budget_s=10**9, duration_s=60, warmup_s=10, jitter=0.0)
    instant = replace(OPEN, link_bytes_per_s=1e18, rtt_s=0.0)  # exchanges take no time: compute only
    own = simulate(c, instant, run)
    shared = simulate(c, replace(instant, host_cores=2), run)
    assert own.updates_per_s == pytest.approx(40, rel=0.02) and own.compute_stretch == pytest.approx(1.0)
    assert shared.updates_per_s == pytest.approx(20, rel=0.02) and shared.compute_stretch == pytest.approx(2.0)


def test_shards_on_the_workers_machine_compete_for_its_cores() -> None:
    """One chain, S shards each costing 10 ms per push: on machines of their own they serve at once
    (10 ms); on one core the S of them share it (S × 10 ms), and a second core halves that for S = 2."""
    c = tiny(0.010, 0.0, compute=0.05)
    run = Run(chains=1, shards=2, update_interval=1, time_budget_s=10**9, duration_s=30, warmup_s=5, jitter=0.0)
    link = c.push_bytes / 2 / OPEN.link_bytes_per_s
    floor = c.push_bytes / OPEN.link_bytes_per_s  # the worker's own link bounds the exchange
    for cores, service in ((None, 0.010), (1, 0.020), (2, 0.010)):
        r = simulate(c, replace(OPEN, host_cores=cores), run)
        assert r.push_p50_s == pytest.approx(max(link + service, floor) + OPEN.rtt_s), cores


def test_a_finite_run_is_measured_whole_start_up_and_epoch_ends_included() -> None:
    """validate.py simulates a real run's whole job: 10 batches an epoch with a push every 4 are pushes
    of 4, 4 and 2 batches (the action pushes at an epoch's end); 2 epochs are 6 pushes, after the
    first activation's start-up and its first pull, and the run ends with the last one."""
    c = Costs(compute_per_batch_s=0.01, push_bytes=1e6, pull_bytes=1e6, push_fixed_s=0.002, push_per_byte_s=0.0,
              pull_fixed_s=0.001, pull_per_byte_s=0.0, client_push_s=0.003, client_pull_s=0.002)
    p = replace(OPEN, download_s=0.5)
    exchange = cycle_s(c, p, 0)  # everything of a cycle but its compute
    pull = c.shard_pull_s(1) + c.pull_bytes / p.link_bytes_per_s + p.rtt_s + c.client_pull(1)
    span = 0.5 + pull + 2 * (10 * c.compute_per_batch_s + 3 * exchange)
    r = simulate(c, p, Run(chains=1, update_interval=4, time_budget_s=10**9, dataset_samples=10 * 32, epochs=2,
                           duration_s=100, jitter=0.0))
    assert r.pushes == 6 and r.samples_per_s * r.span_s == 2 * 10 * 32
    assert r.span_s == pytest.approx(span) and r.updates_per_s == pytest.approx(6 / span)
    assert r.epoch_s == pytest.approx(span / 2)


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
