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

The worker's side of an exchange: its client (owtrain.ps_shards.ShardSet) sends one request per
shard, so a push costs the worker `client_push_s` (compress, encode and one request: all of it with
one shard) plus `client_push_request_s` for each further shard, a pull likewise; the per-request
part is measured by calibrate.py against one and two real shards.

Where the CPUs are: with `Platform.host_cores = None` (the predictions) every action and every
shard has a core of its own, so the only CPU queue is each shard's. With `host_cores = c` (the
validation on this machine) the workers and the shards run on one machine of c cores, shared the
way Linux's fair scheduler shares them, idealised as egalitarian processor sharing: while n of
them have CPU work each progresses at min(1, c / n) of a core (a shard's own queue still serves one
request at a time, so a shard is one of the n; the S symmetric shards count S). The run's measured
compute per batch then already holds the contention that the model now simulates (workers and
shards slowing each other), so validate.py does not multiply it in again: it scales the CPU costs
only by what the model leaves out (other processes on the machine, the cores' speed in that run),
the factor for which the model reproduces the run's compute per batch (`Result.compute_stretch`).

`owtrain ps --shard I/S` implements it (owtrain/shard_plan.py); `validate.py --shards 1,2` compares the two.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace

import simpy

Process = Generator[simpy.Event, object, None]  # a simpy process: yields events until it ends


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
    client_push_s: float  # worker CPU: compress + encode + one request (the whole push with one shard)
    client_pull_s: float  # worker CPU: one request + decode + load
    client_push_request_s: float = 0.0  # worker CPU of each further shard's push request (HTTP, framing)
    client_pull_request_s: float = 0.0  # likewise per further shard's pull request

    def client_push(self, shards: int) -> float:
        """The worker's CPU per push to `shards` shards: the per-byte work once, a request per shard."""
        return self.client_push_s + (shards - 1) * self.client_push_request_s

    def client_pull(self, shards: int) -> float:
        return self.client_pull_s + (shards - 1) * self.client_pull_request_s

    def shard_push_s(self, shards: int) -> float:
        return self.push_fixed_s + self.push_per_byte_s * self.push_bytes / shards

    def shard_pull_s(self, shards: int) -> float:
        return self.pull_fixed_s + self.pull_per_byte_s * self.pull_bytes / shards

    def slowed(self, factor: float) -> Costs:
        """Every CPU cost × `factor`: a shared machine's contention (validation runs on this one)."""
        return replace(self, compute_per_batch_s=self.compute_per_batch_s * factor,
                       push_fixed_s=self.push_fixed_s * factor, push_per_byte_s=self.push_per_byte_s * factor,
                       pull_fixed_s=self.pull_fixed_s * factor, pull_per_byte_s=self.pull_per_byte_s * factor,
                       client_push_s=self.client_push_s * factor, client_pull_s=self.client_pull_s * factor,
                       client_push_request_s=self.client_push_request_s * factor,
                       client_pull_request_s=self.client_pull_request_s * factor)


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
    # None: every action and every shard has a core of its own (a cluster); c: they all share one
    # machine of c cores (this machine's validation; see the module's docstring)
    host_cores: int | None = None

    def slots(self) -> int:
        """Containers the pool can run at once for a Docker action: blackbox invokers × containers each
        (OpenWhisk's balancer gives blackbox actions max(1, floor(invokers × fraction)) invokers)."""
        blackbox = max(1, math.floor(self.invokers * self.blackbox_fraction))
        return blackbox * (self.user_memory_mb // self.action_memory_mb)


@dataclass(frozen=True)
class Run:
    """One training job: how many chains, how the action trains, how many shards, for how long.

    `epochs` None: the chains train until `duration_s`, measured over [warmup_s, duration_s] (a
    steady state: the predictions). `epochs` n: each chain trains n epochs of its part of
    `dataset_samples` and stops, and the whole run is measured, from the first invoke to the last
    chain's end, start-up and tail included (what validate.py measures of a real run); `duration_s`
    then only bounds it."""

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
    epochs: int | None = None


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
    span_s: float = math.nan  # the measured window: duration − warm-up, or a finite run's whole span
    # the compute phases' time ÷ their CPU work: how much the shared cores (host_cores) slowed them
    compute_stretch: float = 1.0
    push_latencies: list[float] = field(repr=False, default_factory=list)


class _Job:
    __slots__ = ("done", "left", "weight")

    def __init__(self, left: float, weight: int, done: simpy.Event) -> None:
        self.left, self.weight, self.done = left, weight, done


class SharedCores:
    """`cores` CPUs shared by egalitarian processor sharing: while jobs of total weight n are
    running, each progresses at min(1, cores / n) seconds of CPU work per second. A job of weight w
    stands for w identical jobs started together (the S symmetric shards), which finish together."""

    def __init__(self, env: simpy.Environment, cores: int) -> None:
        self.env, self.cores = env, cores
        self.jobs: list[_Job] = []
        self._since = 0.0
        self._generation = 0

    def work(self, seconds: float, weight: int = 1) -> simpy.Event:
        """An event that fires when `seconds` of CPU work have been done at the shared rate."""
        done = self.env.event()
        if seconds <= 0:
            return done.succeed()
        self._advance()
        self.jobs.append(_Job(seconds, weight, done))
        self._schedule()
        return done

    def _rate(self) -> float:
        return min(1.0, self.cores / sum(j.weight for j in self.jobs))

    def _advance(self) -> None:
        now = self.env.now
        if self.jobs and now > self._since:
            step = (now - self._since) * self._rate()
            for job in self.jobs:
                job.left -= step
        self._since = now

    def _schedule(self) -> None:
        """One timer for the job that ends first; a later change makes it stale (its generation)."""
        self._generation += 1
        if not self.jobs:
            return
        generation = self._generation
        first = min(j.left for j in self.jobs)
        timer = self.env.timeout(max(0.0, first) / self._rate())
        timer.callbacks.append(lambda _: self._finish(generation))

    def _finish(self, generation: int) -> None:
        if generation != self._generation:
            return
        self._advance()
        # the timer was set for the job(s) with the least work left: what remains of it is rounding
        # (and a remainder below the clock's resolution would otherwise never pass)
        last = min(j.left for j in self.jobs) + 1e-12
        ended = [j for j in self.jobs if j.left <= last]
        self.jobs = [j for j in self.jobs if j.left > last]
        for job in ended:
            job.done.succeed()
        self._schedule()


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
        self.host = SharedCores(self.env, platform.host_cores) if platform.host_cores else None
        self.compute_work = self.compute_wall = 0.0
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
        # a finite run (epochs set) follows each chain's epochs batch by batch instead, and is
        # measured whole
        self.epoch_batches = math.ceil(per_epoch)
        self.window = ((run.warmup_s, run.duration_s) if run.epochs is None else (0.0, run.duration_s))
        self.finished = 0
        self.last_end = 0.0

    def _measuring(self) -> bool:
        return self.window[0] <= self.env.now <= self.window[1]

    def _track(self, delta: int) -> None:
        """Time-weighted number of running activations (measured window only)."""
        now = self.env.now
        lo = max(self._last_change, self.window[0])
        if now > lo:
            self.active_area += self.active * (min(now, self.window[1]) - lo)
        self._last_change = now
        self.active += delta

    def _work(self, seconds: float, weight: int = 1) -> simpy.Event:
        """`seconds` of CPU work: on a core of its own, or on the shared host's cores."""
        return self.host.work(seconds, weight) if self.host else self.env.timeout(seconds)

    def _cpu(self, shard: _Shard, seconds: float) -> Process:
        with shard.cpu.request() as req:
            yield req
            start = self.env.now
            yield self._work(seconds, self.cfg.shards)  # the S symmetric shards, each one request
            if self._measuring():
                shard.busy_s += self.env.now - max(start, self.window[0])

    def _link(self, nic: simpy.Resource, nbytes: float) -> Process:
        with nic.request() as req:
            yield req
            yield self.env.timeout(nbytes / self.platform.link_bytes_per_s)

    def _shard_push(self, shard: _Shard) -> Process:
        yield self.env.process(self._link(shard.nic_in, self.costs.push_bytes / self.cfg.shards))
        yield self.env.process(self._cpu(shard, self.costs.shard_push_s(self.cfg.shards)))

    def _shard_pull(self, shard: _Shard) -> Process:
        yield self.env.process(self._cpu(shard, self.costs.shard_pull_s(self.cfg.shards)))
        yield self.env.process(self._link(shard.nic_out, self.costs.pull_bytes / self.cfg.shards))

    def _fan_out(self, step: Callable[[_Shard], Process], nbytes: float) -> Process:
        """`step` on every shard at once (they finish together); the worker's own link bounds the whole
        exchange."""
        start = self.env.now
        yield self.env.process(step(self.shard))
        floor = start + nbytes / self.platform.link_bytes_per_s
        yield self.env.timeout(max(0.0, floor - self.env.now) + self.platform.rtt_s)

    def _invoke(self) -> Process:
        """Wait for the per-minute quota (the bridge paces itself to it rather than collect 429s)."""
        while len(self.invokes) >= self.platform.per_minute:
            while self.invokes and self.invokes[0] + 60.0 <= self.env.now:  # the same sum as the wait below
                self.invokes.popleft()
            if len(self.invokes) >= self.platform.per_minute:
                self.throttled += 1
                yield self.env.timeout(self.invokes[0] + 60.0 - self.env.now)
        self.invokes.append(self.env.now)

    def _chain(self, index: int) -> Process:
        c, p, cfg = self.costs, self.platform, self.cfg
        warm = False
        # chains start spread over the first seconds, as the bridge launches them one by one
        yield self.env.timeout(index * 0.01)
        j = cfg.jitter
        epochs_left, epoch_left = cfg.epochs, self.epoch_batches  # finite runs only
        while epochs_left != 0:
            yield self.env.process(self._invoke())
            with self.slots.request() as slot:
                yield slot
                self._track(+1)
                started = self.env.now
                yield self.env.timeout(p.warm_overhead_s if warm else p.cold_start_s + p.download_s)
                # the first activation has no model yet; a later one catches up with others' pushes
                if not warm or cfg.chains > 1:
                    yield self.env.process(self._fan_out(self._shard_pull, c.pull_bytes))
                    yield self._work(c.client_pull(cfg.shards))
                warm = True
                last_exchange = 0.0
                while epochs_left != 0:
                    # K batches (fewer at an epoch's end), or fewer when only those and the final push
                    # still fit the budget (the action keeps twice its slowest push in reserve,
                    # actions/deadline.py)
                    room = started + cfg.time_budget_s - self.env.now - 2 * last_exchange
                    want = self.group if epochs_left is None else min(cfg.update_interval, epoch_left)
                    batches = min(want, math.floor(room / c.compute_per_batch_s)
                                  if c.compute_per_batch_s > 0 else want)
                    if batches < min(1.0, want):
                        break
                    spread = self.rng.uniform(1 - j, 1 + j) if j else 1.0
                    work, began = batches * c.compute_per_batch_s * spread, self.env.now
                    yield self._work(work)
                    if self._measuring():
                        self.compute_work += work
                        self.compute_wall += self.env.now - began
                    yield self._work(c.client_push(cfg.shards))
                    t0 = self.env.now
                    yield self.env.process(self._fan_out(self._shard_push, c.push_bytes))
                    if self._measuring():
                        self.latencies.append(self.env.now - t0)
                        self.pushes += 1
                        self.samples += round(batches * cfg.batch_size)
                    yield self.env.process(self._fan_out(self._shard_pull, c.pull_bytes))
                    yield self._work(c.client_pull(cfg.shards))
                    last_exchange = self.env.now - t0
                    if epochs_left is not None:
                        epoch_left -= int(batches)
                        if epoch_left <= 0:
                            epochs_left, epoch_left = epochs_left - 1, self.epoch_batches
                self._track(-1)
        self.finished += 1
        self.last_end = self.env.now

    def run(self) -> Result:
        for i in range(self.cfg.chains):
            self.env.process(self._chain(i))
        self.env.run(until=self.cfg.duration_s)
        if self.cfg.epochs is not None:  # measured up to the last chain's end (inf: it did not end)
            self.window = (0.0, self.last_end if self.finished == self.cfg.chains else math.inf)
        self._track(0)
        window = self.window[1] - self.window[0]
        lat = sorted(self.latencies)
        samples_per_s = self.samples / window
        return Result(
            updates_per_s=self.pushes / window, samples_per_s=samples_per_s,
            push_p50_s=_quantile(lat, 0.50), push_p99_s=_quantile(lat, 0.99),
            shard_utilisation=[self.shard.busy_s / window] * self.cfg.shards,
            concurrent_mean=self.active_area / window, throttled_invokes=self.throttled,
            epoch_s=self.cfg.dataset_samples / samples_per_s if samples_per_s else math.inf,
            span_s=window,
            pushes=self.pushes, compute_stretch=self.compute_wall / self.compute_work if self.compute_work else 1.0,
            push_latencies=lat)


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile of sorted `values` (nearest rank); NaN when empty."""
    if not values:
        return math.nan
    return values[min(len(values) - 1, int(q * len(values)))]


def simulate(costs: Costs, platform: Platform, run: Run) -> Result:
    """Run the model once."""
    return Simulation(costs, platform, run).run()
