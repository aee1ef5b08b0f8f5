"""The client of a sharded parameter server: one `PSClient` per shard, called concurrently.

A job's parameters are split over S shard servers by `owtrain.shard_plan`; every shard is a full
parameter server for its slice (its own strategy, ledger, journal, checkpoints). This type is what
the action, the driver and the tools use for one server and for many alike (S = 1 is one URL).

Pushes: every shard gets its slice with the same (worker, seq), at once. Each shard's push retries
on its own (`PSClient`'s retry policy), so a shard that failed is retried alone while the answers of
the others stand; the push counts as acknowledged only when every shard answered. A push repeated
after a failure is recognised by the shards that already took it (their ledger answers `duplicate`).

Versions: each shard counts its own versions; the job's version is the vector of them, and the one
number shown for it (`job_version`) is the minimum: every shard has applied at least that many
steps, it equals the plain server's version when S = 1, and it never moves back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from owtrain.codec import Spec, validate_tensors
from owtrain.errors import JobClosed, OwtrainError, StaleUpdate
from owtrain.ps_client import DEFAULT_POLICY, PSClient
from owtrain.ps_urls import parse_urls
from owtrain.retry import RetryPolicy
from owtrain.shard_plan import ShardPlan, check_published, make_plan, published_spec

log = logging.getLogger(__name__)
T = TypeVar("T")
Tensors = dict[str, torch.Tensor]
Versions = tuple[int, ...]


def job_version(versions: Sequence[int]) -> int:
    """The single number for a job's version vector: its minimum (see the module docstring)."""
    return min(versions)


@dataclass(frozen=True)
class ShardedPush:
    """The shards' answers to one push, combined: `stale` if any shard rejected it as stale,
    `duplicate` if every shard had it already, `accepted` if any shard buffered it for a sync round,
    else `applied`; `staleness` is the largest, `refresh` is set if any shard asks for a pull."""

    status: str
    versions: Versions
    staleness: int
    refresh: bool

    @property
    def version(self) -> int:
        return job_version(self.versions)


class ShardSet:
    """A session with every shard of one job as one worker (or admin), identified by `token`."""

    def __init__(self, urls: str | Sequence[str], token: str, timeout: float = 10,
                 policy: RetryPolicy = DEFAULT_POLICY, verify: bool | str = True) -> None:
        self.urls = parse_urls(urls)
        self.clients = [PSClient(u, token, timeout=timeout, policy=policy, verify=verify) for u in self.urls]
        self._pool = ThreadPoolExecutor(len(self.urls), thread_name_prefix="ps-shard") if len(self.urls) > 1 else None
        self.plan: ShardPlan | None = None

    @property
    def shards(self) -> int:
        return len(self.clients)

    def check_plan(self, spec: Spec | None = None) -> ShardPlan:
        """The plan every shard publishes, checked against the one `spec` (this process's model)
        gives, or without a spec against shard 0's; ShardPlanMismatch naming the shard that differs."""
        published = self._each(lambda c: c.shard_plan())
        expected = make_plan(spec if spec is not None else published_spec(published[0], self.urls[0]), self.shards)
        for index, (url, answer) in enumerate(zip(self.urls, published, strict=True)):
            check_published(expected, index, answer, url)
        self.plan = expected
        return expected

    def register(self, worker: str) -> dict[str, Any]:
        """Register with every shard; shard 0's answer plus `versions` (one per shard), `version`
        (their minimum) and `closed` (why any shard is closed, or None)."""
        answers = self._each(lambda c: c.register(worker))
        info = dict(answers[0])
        info["versions"] = [int(a["version"]) for a in answers]
        info["version"] = job_version(info["versions"])
        info["closed"] = next((a["closed"] for a in answers if a.get("closed")), None)
        return info

    def versions(self) -> Versions:
        return tuple(self._each(lambda c: c.version()))

    def pull_into(self, params: Mapping[str, torch.Tensor], have: Versions | None, wait: float = 0) -> Versions | None:
        """Pull every shard that is newer than `have` (long-polling each up to `wait` s) and write its
        slice into the whole-model `params` in place; the new version vector, or None if no shard moved."""
        plan = self._plan()
        pulled = self._each_indexed(lambda i, c: c.pull(None if have is None else have[i], wait))
        if all(p is None for p in pulled):
            return None
        versions = list(have) if have is not None else [-1] * self.shards
        for index, answer in enumerate(pulled):  # every slice checked before any is written
            if answer is not None:
                validate_tensors(answer[1], plan.shard_spec(index))
        for index, answer in enumerate(pulled):
            if answer is not None:
                versions[index] = answer[0]
                plan.write_into(params, index, answer[1])
        return tuple(versions)

    def pull_whole(self) -> tuple[Versions, Tensors]:
        """(version vector, the whole model's parameters) from every shard's newest version."""
        plan = self._plan()
        pulled = self._each(lambda c: c.pull(None))
        slices: list[Tensors] = []
        for index, answer in enumerate(pulled):
            if answer is None:  # cannot happen for have=None
                raise OwtrainError(f"shard {self.urls[index]} answered 'not modified' to a pull without a version")
            validate_tensors(answer[1], plan.shard_spec(index))
            slices.append(answer[1])
        return tuple(a[0] for a in pulled if a is not None), plan.join(slices)

    def push(self, slices: Sequence[Mapping[str, torch.Tensor]], meta: Mapping[str, Any],
             base_versions: Versions) -> ShardedPush:
        """Send slice i (already cut by the plan, maybe compressed) to shard i with `meta` and its own
        base version. Errors other than a stale answer are raised once every shard has answered
        (JobClosed first: the job is over either way)."""

        def one(index: int, client: PSClient) -> tuple[str, int, int, bool] | OwtrainError:
            try:
                reply = client.push(slices[index], {**meta, "base_version": base_versions[index]})
                return reply.status, reply.version, reply.staleness, reply.refresh
            except StaleUpdate as exc:
                return "stale", exc.current_version, 0, True
            except OwtrainError as exc:
                return exc

        answers = self._each_indexed(one)
        errors = [a for a in answers if isinstance(a, OwtrainError)]
        if errors:
            raise next((e for e in errors if isinstance(e, JobClosed)), errors[0])
        done = [a for a in answers if not isinstance(a, OwtrainError)]
        statuses = {a[0] for a in done}
        status = next((s for s in ("stale", "accepted", "applied") if s in statuses), "duplicate")
        return ShardedPush(status, tuple(a[1] for a in done), max(a[2] for a in done), any(a[3] for a in done))

    def report_phases(self, worker: str, phases: Mapping[str, Mapping[str, float]], wall_s: float) -> None:
        """Telemetry about one activation, to shard 0 (whose dashboard shows the job)."""
        self.clients[0].report_phases(worker, phases, wall_s)

    def accuracy(self) -> dict[str, Any]:
        """Shard 0's evaluation of the whole model (it evaluates the assembled parameters), with
        `version` the job's version (so `evaluated_version == version` means the newest was scored)."""
        answer = self.clients[0].accuracy()
        if self.shards > 1:
            answer["version"] = job_version(self.versions())
        return answer

    def status(self) -> dict[str, Any]:
        """Shard 0's `/status` (workers, samples and updates are counted alike by every shard, since
        every push goes to every shard), with `version` the job's, `versions` the vector and `shards`
        every shard's own `/status` in shard order."""
        every = self._each(lambda c: c.status())
        versions = [int(s["version"]) for s in every]
        return {**every[0], "version": job_version(versions), "versions": versions, "shards": every}

    def history(self, since: float = 0) -> dict[str, list[Any]]:
        """Shard 0's `/api/history` (every shard counts the same pushes; shard 0 has the accuracy)."""
        return self.clients[0].history(since)

    def admin(self, action: str, body: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """`POST /admin/<action>` on every shard (close, stop, checkpoint); their answers in shard order."""
        return self._each(lambda c: c.admin(action, body))

    def close(self) -> None:
        for client in self.clients:
            client.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _plan(self) -> ShardPlan:
        return self.plan if self.plan is not None else self.check_plan()

    def _each(self, fn: Callable[[PSClient], T]) -> list[T]:
        return self._each_indexed(lambda _, c: fn(c))

    def _each_indexed(self, fn: Callable[[int, PSClient], T]) -> list[T]:
        """`fn(i, client_i)` for every shard at once; the results in shard order (the first error is
        raised only after every call has ended, so no request is left running behind the caller)."""
        if self._pool is None:
            return [fn(0, self.clients[0])]
        futures = [self._pool.submit(fn, i, c) for i, c in enumerate(self.clients)]
        for future in futures:
            future.exception()  # wait for all
        return [f.result() for f in futures]
