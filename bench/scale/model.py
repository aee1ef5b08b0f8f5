"""A discrete-event model (simpy) of owtrain at scale: activation chains on OpenWhisk, its quotas and
invoker pool, and S parameter-server shards. Pure: every cost comes in through `Costs` (measured by
calibrate.py) and `Platform`/`Run` (the deployment), so the tests can check it against closed forms.

What one activation chain does (the action, actions/main.py, at group granularity):
  invoke (per-minute quota, a free container slot under the concurrency quota) → cold start and shard
  download the first time, a warm overhead after → repeat while a batch still fits the time budget:
  K batches of compute (fewer at the end of the budget), compress, push 1/S of the update to every
  shard at once, then pull 1/S of
  the parameters from every shard (the server moved on) → return; the driver re-invokes at once.

A shard is two FIFO links (its NIC in and out) and one CPU (`owtrain ps` applies on one thread, and
its Python serialises the rest): a push of b bytes costs it `push_fixed_s + push_per_byte_s * b`
of CPU, a pull `pull_fixed_s + pull_per_byte_s * b`. The fixed part is paid by every shard for every
push, which is why sharding cannot help a small model (docs/scale.md). The plan is size-balanced and
every push and pull goes to all S shards at the same moment with the same slice size, so all S
queues evolve identically: the model simulates one of them, exactly, and reports its utilisation
for each shard (an unbalanced plan would need one queue per shard).

`owtrain ps --shard I/S` implements it (owtrain/shard_plan.py); `validate.py --shards 1,2` compares the two.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field, replace

import simpy


@dataclass(frozen=True)
class Costs:
    """Measured costs of one model with one compression (seconds, bytes; CPU at one core's speed)."""

    compute_per_batch_s: float
    push_bytes: float  # the compressed update, whole model
    pull_bytes: float  # the fp32 parameters, whole model
    push_fixed_s: float
    push_per_byte_s: float
    pull_fixed_s: float
    pull_per_byte_s: float
    client_push_s: float  # worker CPU: compress + encode
    client_pull_s: float  # worker CPU: decode + load

    def shard_push_s(self, shards: int) -> float:
        return self.push_fixed_s + self.push_per_byte_s * self.push_bytes / shards

    def shard_pull_s(self, shards: int) -> float:
        return self.pull_fixed_s + self.pull_per_byte_s * self.pull_bytes / shards

    def slowed(self, factor: float) -> Costs:
        """Every CPU cost × `factor`: a shared machine's contention (validation runs on this one)."""
        return replace(self, compute_per_batch_s=self.compute_per_batch_s * factor,
                       push_fixed_s=self.push_fixed_s * factor, push_per_byte_s=self.push_per_byte_s * factor,
                       pull_fixed_s=self.pull_fixed_s * factor, pull_per_byte_s=self.pull_per_byte_s * factor,
                       client_push_s=self.client_push_s * factor, client_pull_s=self.client_pull_s * factor)


@dataclass(frozen=True)
class Platform:
    """OpenWhisk's limits and pool, and the network. Defaults: deploy-kube's values.yaml."""

    concurrent: int = 30  # whisk.limits.actionsInvokesConcurrent
    per_minute: int = 60  # whisk.limits.actionsInvokesPerminute
    invokers: int = 1
    blackbox_fraction: float = 0.10  # whisk.loadbalancer.blackboxFraction
    user_memory_mb: int = 2048  # whisk.containerPool.userMemory
    action_memory_mb: int = 256
    cold_start_s: float = 1.5  # container start to answering (measured) + the platform's part
    warm_overhead_s: float = 0.05  # controller → invoker → container and back, per activation
    download_s: float = 0.1  # the shard, first activation of a chain only
    link_bytes_per_s: float = 1.25e9  # 10 Gbit/s per pod (each shard, each action)
    rtt_s: float = 0.0005

    def slots(self) -> int:
        """Containers the pool can run at once for a Docker action: blackbox invokers × containers each
        (OpenWhisk's balancer gives blackbox actions max(1, floor(invokers × fraction)) invokers)."""
        blackbox = max(1, math.floor(self.invokers * self.blackbox_fraction))
        return blackbox * (self.user_memory_mb // self.action_memory_mb)


@dataclass(frozen=True)
class Run:
    """One training job: how many chains, how the action trains, how many shards, for how long."""

    chains: int
    shards: int = 1
    update_interval: int = 16  # batches per push (update_intv)
    batch_size: int = 32
    time_budget_s: float = 50.0  # seconds each activation trains before returning its cursor
    dataset_samples: int = 60_000
    duration_s: float = 300.0  # simulated seconds
    warmup_s: float = 60.0  # not measured: the cold starts and the first ramp
    # each compute phase takes its nominal time × U(1 − jitter, 1 + jitter): real batch times vary,
    # and without it identical chains stay in lock-step and push in bursts (0: deterministic)
    jitter: float = 0.1
    seed: int = 0


@dataclass
class Result:
    """What a simulated run measured over [warmup, duration]."""

    updates_per_s: float
    samples_per_s: float
    push_p50_s: float
    push_p99_s: float
    shard_utilisation: list[float]
    concurrent_mean: float
    throttled_invokes: int
    epoch_s: float
    pushes: int
    push_latencies: list[float] = field(repr=False, default_factory=list)


class _Shard:
    def __init__(self, env: simpy.Environment) -> None:
        self.cpu = simpy.Resource(env, 1)
        self.nic_in = simpy.Resource(env, 1)
        self.nic_out = simpy.Resource(env, 1)
        self.busy_s = 0.0


class Simulation:
    """One simulated run; `run()` returns its `Result`."""

    def __init__(self, costs: Costs, platform: Platform, run: Run) -> None:
        self.costs, self.platform, self.cfg = costs, platform, run
        self.env = simpy.Environment()
        self.shard = _Shard(self.env)  # all S shards behave alike (see the module's docstring)
        self.slots = simpy.Resource(self.env, min(platform.concurrent, platform.slots()))
        self.invokes: deque[float] = deque()  # times of the invokes in the last minute
        self.latencies: list[float] = []
        self.pushes = self.samples = self.throttled = 0
        self.active = 0
        self.active_area = 0.0
        self._last_change = 0.0
        self.rng = random.Random(run.seed)
        # the action also pushes at the end of each epoch of its shard: with `update_interval` K and
        # b batches per epoch that is ceil(b / K) pushes of b / ceil(b / K) batches on average
        per_epoch = max(1.0, run.dataset_samples / run.chains / run.batch_size)
        self.group = per_epoch / math.ceil(per_epoch / run.update_interval)

    def _measuring(self) -> bool:
        return self.cfg.warmup_s <= self.env.now <= self.cfg.duration_s

    def _track(self, delta: int) -> None:
        """Time-weighted number of running activations (measured window only)."""
        now = self.env.now
        lo = max(self._last_change, self.cfg.warmup_s)
        if now > lo:
            self.active_area += self.active * (min(now, self.cfg.duration_s) - lo)
        self._last_change = now
        self.active += delta

    def _cpu(self, shard: _Shard, seconds: float):  # noqa: ANN202 (a simpy process)
        with shard.cpu.request() as req:
            yield req
            start = self.env.now
            yield self.env.timeout(seconds)
            if self._measuring():
                shard.busy_s += self.env.now - max(start, self.cfg.warmup_s)

    def _link(self, nic: simpy.Resource, nbytes: float):  # noqa: ANN202
        with nic.request() as req:
            yield req
            yield self.env.timeout(nbytes / self.platform.link_bytes_per_s)

    def _shard_push(self, shard: _Shard):  # noqa: ANN202
        yield self.env.process(self._link(shard.nic_in, self.costs.push_bytes / self.cfg.shards))
        yield self.env.process(self._cpu(shard, self.costs.shard_push_s(self.cfg.shards)))

    def _shard_pull(self, shard: _Shard):  # noqa: ANN202
        yield self.env.process(self._cpu(shard, self.costs.shard_pull_s(self.cfg.shards)))
        yield self.env.process(self._link(shard.nic_out, self.costs.pull_bytes / self.cfg.shards))

    def _fan_out(self, step, nbytes: float):  # noqa: ANN001, ANN202
        """`step` on every shard at once (they finish together); the worker's own link bounds the whole
        exchange."""
        start = self.env.now
        yield self.env.process(step(self.shard))
        floor = start + nbytes / self.platform.link_bytes_per_s
        yield self.env.timeout(max(0.0, floor - self.env.now) + self.platform.rtt_s)

    def _invoke(self):  # noqa: ANN202
        """Wait for the per-minute quota (the bridge paces itself to it rather than collect 429s)."""
        while len(self.invokes) >= self.platform.per_minute:
            while self.invokes and self.invokes[0] + 60.0 <= self.env.now:  # the same sum as the wait below
                self.invokes.popleft()
            if len(self.invokes) >= self.platform.per_minute:
                self.throttled += 1
                yield self.env.timeout(self.invokes[0] + 60.0 - self.env.now)
        self.invokes.append(self.env.now)

    def _chain(self, index: int):  # noqa: ANN202
        c, p, cfg = self.costs, self.platform, self.cfg
        warm = False
        # chains start spread over the first seconds, as the bridge launches them one by one
        yield self.env.timeout(index * 0.01)
        j = cfg.jitter
        while True:
            yield self.env.process(self._invoke())
            with self.slots.request() as slot:
                yield slot
                self._track(+1)
                started = self.env.now
                yield self.env.timeout(p.warm_overhead_s if warm else p.cold_start_s + p.download_s)
                warm = True
                if cfg.chains > 1:  # others pushed since this chain's last activation: catch up first
                    yield self.env.process(self._fan_out(self._shard_pull, c.pull_bytes))
                    yield self.env.timeout(c.client_pull_s)
                last_exchange = 0.0
                while True:
                    # K batches, or fewer when only those and the final push still fit the budget
                    # (the action keeps twice its slowest push in reserve, actions/deadline.py)
                    room = started + cfg.time_budget_s - self.env.now - 2 * last_exchange
                    batches = min(self.group, math.floor(room / c.compute_per_batch_s)
                                  if c.compute_per_batch_s > 0 else self.group)
                    if batches < min(1.0, self.group):
                        break
                    spread = self.rng.uniform(1 - j, 1 + j) if j else 1.0
                    yield self.env.timeout(batches * c.compute_per_batch_s * spread + c.client_push_s)
                    t0 = self.env.now
                    yield self.env.process(self._fan_out(self._shard_push, c.push_bytes))
                    if self._measuring():
                        self.latencies.append(self.env.now - t0)
                        self.pushes += 1
                        self.samples += round(batches * cfg.batch_size)
                    yield self.env.process(self._fan_out(self._shard_pull, c.pull_bytes))
                    yield self.env.timeout(c.client_pull_s)
                    last_exchange = self.env.now - t0
                self._track(-1)

    def run(self) -> Result:
        for i in range(self.cfg.chains):
            self.env.process(self._chain(i))
        self.env.run(until=self.cfg.duration_s)
        self._track(0)
        window = self.cfg.duration_s - self.cfg.warmup_s
        lat = sorted(self.latencies)
        samples_per_s = self.samples / window
        return Result(
            updates_per_s=self.pushes / window, samples_per_s=samples_per_s,
            push_p50_s=_quantile(lat, 0.50), push_p99_s=_quantile(lat, 0.99),
            shard_utilisation=[self.shard.busy_s / window] * self.cfg.shards,
            concurrent_mean=self.active_area / window, throttled_invokes=self.throttled,
            epoch_s=self.cfg.dataset_samples / samples_per_s if samples_per_s else math.inf,
            pushes=self.pushes, push_latencies=lat)


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(q * len(values)))]


def simulate(costs: Costs, platform: Platform, run: Run) -> Result:
    """Run the model once."""
    return Simulation(costs, platform, run).run()
