"""Which parameter rows live on which parameter-server shard: a deterministic, size-balanced plan.

Every process that knows the model's parameter spec and the shard count S computes the same plan
(workers, each shard server, tools), and every shard publishes its plan's digest at `GET /shardPlan`,
so a worker with another model, another S or another ordering of the shard URLs is refused before
it pushes anything (`ShardPlanMismatch`).

The plan: tensors larger than a piece limit (an eighth of one shard's fair share) are cut along
their first dimension into runs of whole rows, so one big layer never pins a shard; the pieces are
then dealt out largest first, each to the least-loaded shard (LPT), which leaves no shard more than
one piece above the mean. With S = 1 nothing is cut and the one shard holds every tensor under its
own name, so a plain server is the one-shard case. Because every server-side optimiser here works
element by element (SGD with momentum, weight decay, Adam), stepping each piece on its own shard
gives the same numbers as stepping the whole tensor on one server.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from owtrain.codec import Spec
from owtrain.errors import ConfigError

PLAN_FORMAT = 1  # bump when the algorithm changes: old and new processes then disagree loudly
PIECES_PER_SHARD = 8  # the piece limit is 1/8 of a shard's fair share: max load <= mean * 1.125 + rows

Tensors = dict[str, torch.Tensor]
DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}


class ShardPlanMismatch(ConfigError):
    """Two processes of one job hold different shard plans (other model, other S, URLs out of order)."""


@dataclass(frozen=True)
class Piece:
    """Rows `start:stop` (first dimension) of parameter `name`, held by shard `shard` under `key`.
    A 0-d tensor is one piece with start = stop = 0."""

    name: str
    start: int
    stop: int
    shard: int
    whole: bool

    @property
    def key(self) -> str:
        """The name the shard serves it under: the parameter's own name when it is not cut."""
        return self.name if self.whole else f"{self.name}[{self.start}:{self.stop}]"


@dataclass(frozen=True)
class ShardPlan:
    """The pieces of one model over `shards` shards; `digest` identifies it (sha256 of its JSON)."""

    spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]]
    shards: int
    pieces: tuple[Piece, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    def to_json(self) -> dict[str, Any]:
        """The plan as JSON (what `GET /shardPlan` publishes beside the digest)."""
        return {"format": PLAN_FORMAT, "shards": self.shards,
                "spec": {n: [list(shape), str(dtype)] for n, (shape, dtype) in self.spec.items()},
                "pieces": [[p.name, p.start, p.stop, p.shard, p.whole] for p in self.pieces]}

    def pieces_of(self, shard: int) -> list[Piece]:
        return [p for p in self.pieces if p.shard == shard]

    def shard_spec(self, shard: int) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        """Key → (shape, dtype) of what shard `shard` holds: the spec its pushes and pulls match."""
        out = {}
        for p in self.pieces_of(shard):
            shape, dtype = self.spec[p.name]
            out[p.key] = (shape if p.whole else (p.stop - p.start, *shape[1:]), dtype)
        return out

    def shard_bytes(self) -> list[int]:
        """Bytes of parameters each shard holds (what the plan balances)."""
        loads = [0] * self.shards
        for p in self.pieces:
            loads[p.shard] += _piece_bytes(self.spec, p)
        return loads

    def split(self, tensors: Mapping[str, torch.Tensor]) -> list[Tensors]:
        """The whole-model `tensors` cut into one dict per shard (views, no copies)."""
        out: list[Tensors] = [{} for _ in range(self.shards)]
        for p in self.pieces:
            t = tensors[p.name]
            out[p.shard][p.key] = t if p.whole else t[p.start : p.stop]
        return out

    def join(self, slices: Sequence[Mapping[str, torch.Tensor]]) -> Tensors:
        """The whole model from one dict per shard (the inverse of `split`)."""
        parts: dict[str, list[torch.Tensor]] = {}
        for p in sorted(self.pieces, key=lambda q: (q.name, q.start)):
            parts.setdefault(p.name, []).append(slices[p.shard][p.key])
        return {name: (ts[0] if len(ts) == 1 else torch.cat(ts, 0)) for name, ts in parts.items()}

    @torch.no_grad()
    def write_into(self, params: Mapping[str, torch.Tensor], shard: int, values: Mapping[str, torch.Tensor]) -> None:
        """Copy one shard's (validated) slice into the rows of the whole-model `params`, in place."""
        for p in self.pieces_of(shard):
            target = params[p.name]
            (target if p.whole else target[p.start : p.stop]).copy_(values[p.key])


def make_plan(spec: Spec, shards: int) -> ShardPlan:
    """The plan for a model `spec` (name → (shape, dtype), in the model's order) over `shards` shards."""
    if shards < 1:
        raise ConfigError(f"a job needs at least one parameter-server shard, got {shards}")
    spec = dict(spec)
    total = sum(_nbytes(shape, dtype) for shape, dtype in spec.values())
    limit = math.inf if shards == 1 else max(1, total // (shards * PIECES_PER_SHARD))
    cuts: list[tuple[str, int, int, bool]] = []
    for name, (shape, dtype) in spec.items():
        size = _nbytes(shape, dtype)
        if not shape or size <= limit or shape[0] < 2:
            cuts.append((name, 0, shape[0] if shape else 0, True))
            continue
        row = size // shape[0]
        rows = max(1, int(limit // row))
        count = math.ceil(shape[0] / rows)
        bounds = [shape[0] * i // count for i in range(count + 1)]  # near-equal runs of whole rows
        cuts += [(name, a, b, False) for a, b in zip(bounds, bounds[1:], strict=False)]
    # largest first; ties by name and row so the order never depends on anything but the spec
    order = sorted(cuts, key=lambda c: (-_cut_bytes(spec, c), c[0], c[1]))
    loads = [0] * shards
    pieces = []
    for name, start, stop, whole in order:
        shard = min(range(shards), key=lambda s: (loads[s], s))
        piece = Piece(name, start, stop, shard, whole)
        loads[shard] += _piece_bytes(spec, piece)
        pieces.append(piece)
    return ShardPlan(spec, shards, tuple(sorted(pieces, key=lambda p: (p.shard, p.name, p.start))))


def published_spec(published: Mapping[str, Any], url: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The model spec inside a shard's published plan (for tools that do not build the model);
    ShardPlanMismatch if it is not a well-formed spec of float tensors."""
    try:
        spec = {}
        for name, (shape, dtype) in published["plan"]["spec"].items():
            kind = DTYPES[dtype]
            if not isinstance(name, str) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(name)
            spec[name] = (tuple(shape), kind)
        return spec
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ShardPlanMismatch(f"parameter-server shard {url} publishes a malformed shard plan ({exc!r})") from None


def check_published(plan: ShardPlan, index: int, published: Mapping[str, Any], url: str) -> None:
    """ShardPlanMismatch unless the shard at `url` (position `index` in the list) publishes `plan`."""
    theirs = (published.get("index"), published.get("shards"), published.get("digest"))
    if theirs != (index, plan.shards, plan.digest):
        raise ShardPlanMismatch(
            f"parameter-server shard {url} serves shard {theirs[0]} of {theirs[1]} with plan {str(theirs[2])[:12]}, "
            f"but this process expects shard {index} of {plan.shards} with plan {plan.digest[:12]}: pass the "
            "shard URLs in shard order (0 first), and the same model and shard count to every shard and worker")


def _nbytes(shape: Sequence[int], dtype: torch.dtype) -> int:
    return math.prod(shape) * torch.empty((), dtype=dtype).element_size()


def _piece_bytes(spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]], p: Piece) -> int:
    return _cut_bytes(spec, (p.name, p.start, p.stop, p.whole))


def _cut_bytes(spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]], cut: tuple[str, int, int, bool]) -> int:
    name, start, stop, whole = cut
    shape, dtype = spec[name]
    if whole:
        return _nbytes(shape, dtype)
    return _nbytes((stop - start, *shape[1:]), dtype)
