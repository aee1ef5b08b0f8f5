"""This server's part of a sharded job: the shard plan, its index, and the module holding its slice.

A shard server is a full parameter server whose model is a slice of the job's model: a module tree
with the same paths as the real model, holding only this shard's pieces (a cut tensor under the key
`weight[start:stop]`). The optimiser, checkpoints, journal replay and pulls all work on that module
unchanged, and because the initial weights are cut from the full model built with the job's seed,
the shards together start from exactly the weights one server would. With one shard the model is
the real model, untouched.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from owtrain.models import param_spec
from owtrain.shard_plan import ShardPlan, make_plan


class ShardSlice:
    """Shard `index` of `plan`; `module` is what the server's ModelState trains."""

    def __init__(self, full: nn.Module, index: int, shards: int) -> None:
        self.plan = make_plan(param_spec(full), shards)
        self.index = index
        self.module = full if shards == 1 else slice_module(full, self.plan, index)
        # every shard's version as shard 0's evaluator last saw them (param_server/assembler.py); None
        # before that, on other shards and unsharded. One reference assignment: read from any thread.
        self.versions: list[int] | None = None

    def describe(self) -> dict[str, Any]:
        """What `/status` says under `shard`: this shard, and the job's version when known (the minimum)."""
        return {"index": self.index, "shards": self.plan.shards, "digest": self.plan.digest,
                "versions": self.versions, "job_version": min(self.versions) if self.versions else None}

    def published(self) -> dict[str, Any]:
        """What `GET /shardPlan` answers: who this shard is and the plan every shard must share."""
        return {"index": self.index, "shards": self.plan.shards, "digest": self.plan.digest,
                "plan": self.plan.to_json()}


@torch.no_grad()
def slice_module(full: nn.Module, plan: ShardPlan, index: int) -> nn.Module:
    """A module with the paths of `full` holding only shard `index`'s pieces (copies of their rows)."""
    named = dict(full.named_parameters())
    root = nn.Module()
    for piece in plan.pieces_of(index):
        *path, leaf = piece.key.split(".")  # a cut's "[start:stop]" holds no dot
        owner = root
        for part in path:
            if part not in owner._modules:
                owner.add_module(part, nn.Module())
            owner = owner._modules[part]  # type: ignore[assignment]
        rows = named[piece.name] if piece.whole else named[piece.name][piece.start : piece.stop]
        owner.register_parameter(leaf, nn.Parameter(rows.detach().clone()))
    return root
