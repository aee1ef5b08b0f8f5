"""The whole model of a sharded job, for the evaluator on shard 0: its own newest slice joined with
the other shards' newest slices, pulled over HTTP with an admin token minted from the job secret.

This is the one place a shard looks at the others, and only for evaluation (and so the dashboard's
accuracy, and `owtrain local`'s stop rule) and for publishing the whole model into a model
repository (`POST /admin/publish`): training never waits for it. The version it reports is
the job's version, the minimum over the shards (owtrain.ps_shards.job_version). A peer's slice is
pulled only when that peer's version moved (`have=` answers 304 otherwise), and the evaluator asks
for the parameters only when an evaluation is due, so an idle job costs one `/getVersion` per peer
per evaluator poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import torch

from owtrain.codec import validate_tensors
from owtrain.ps_client import PSClient
from owtrain.ps_shards import job_version
from owtrain.ps_urls import parse_urls
from owtrain.retry import RetryPolicy
from owtrain.shard_plan import check_published
from owtrain.tokens import ADMIN, mint_token
from param_server.config import PSConfig
from param_server.model_state import Snapshot
from param_server.shard_slice import ShardSlice

TOKEN_TTL_S = 3600.0
PEER_POLICY = RetryPolicy(attempts=2, base=0.2, cap=1.0)


class Assembler:
    """`latest()` = the whole model at the job's version; `version()` = that version, cheaply."""

    def __init__(self, cfg: PSConfig, shard: ShardSlice, own: Callable[[], Snapshot]) -> None:
        self.cfg, self.shard, self.own = cfg, shard, own
        urls = parse_urls(list(cfg.shard_urls))
        self.peers = {i: PSClient(u, "", timeout=30, policy=PEER_POLICY) for i, u in enumerate(urls) if i != shard.index}
        self._slices: dict[int, tuple[int, dict[str, torch.Tensor]]] = {}
        self._token_time = -TOKEN_TTL_S
        self._checked = False
        # the evaluator's thread and a publish on a pool thread may both ask; one at a time shares
        # the cached slices and the peers' sessions
        self._lock = threading.Lock()

    def version(self) -> int:
        with self._lock:
            self._prepare()
            versions = {self.shard.index: self.own().version, **{i: c.version() for i, c in self.peers.items()}}
            self.shard.versions = [versions[i] for i in range(len(versions))]  # for /status and the dashboard
            return job_version(self.shard.versions)

    def latest(self) -> Snapshot:
        with self._lock:
            return self._latest()

    def _latest(self) -> Snapshot:
        self._prepare()
        mine = self.own()
        slices = {self.shard.index: mine.tensors}
        versions = [mine.version]
        for index, client in self.peers.items():
            cached = self._slices.get(index)
            pulled = client.pull(cached[0] if cached else None)
            if pulled is not None:
                validate_tensors(pulled[1], self.shard.plan.shard_spec(index))
                cached = self._slices[index] = pulled
            assert cached is not None  # a pull without `have` never answers 304
            slices[index] = cached[1]
            versions.append(cached[0])
        return Snapshot(job_version(versions), self.shard.plan.join([slices[i] for i in range(len(slices))]))

    def _prepare(self) -> None:
        """A fresh token now and then; the peers' plans checked once (ShardPlanMismatch if one differs)."""
        if time.monotonic() - self._token_time > TOKEN_TTL_S / 2:
            token = mint_token(self.cfg.secret, self.cfg.job, ADMIN, TOKEN_TTL_S)
            for client in self.peers.values():
                client.session.headers["Authorization"] = f"Bearer {token}"
            self._token_time = time.monotonic()
        if not self._checked:
            for index, client in self.peers.items():
                check_published(self.shard.plan, index, client.shard_plan(), client.base_url)
            self._checked = True


def evaluation_source(cfg: PSConfig, shard: ShardSlice,
                      own: Callable[[], Snapshot]) -> tuple[Callable[[], Snapshot], Callable[[], int]]:
    """(latest, version) for the evaluator: this server's own model, or with shards the assembled one."""
    if shard.plan.shards == 1:
        return own, lambda: own().version
    assembler = Assembler(cfg, shard, own)
    return assembler.latest, assembler.version

