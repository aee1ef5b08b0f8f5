"""The continuation cursor: where in the shuffled shard the next activation starts (Contract 3's `next`,
written by the action, kept and handed back by the driver).

The permutation of epoch `e` is `torch.randperm(N, generator=seed + e)`, so `(epoch, offset, seed)`
is the whole RNG state of the data order and a cursor fits in a JSON result. `seq` is the next
push sequence number: a push retried by the next activation reuses its number, and the server
applies a (worker, seq) once. Batches never cross an epoch boundary, so every epoch visits every
sample exactly once however the activations split it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from owtrain.errors import BadRequest


@dataclass(frozen=True)
class Cursor:
    """Position `offset` in epoch `epoch`'s permutation (seeded by `seed`); `seq` = next push number."""

    epoch: int = 0
    offset: int = 0
    seed: int = 0
    seq: int = 0

    @classmethod
    def from_json(cls, data: Any) -> Cursor:
        """Parse a previous activation's `next`; raise BadRequest naming the bad field."""
        if not isinstance(data, Mapping):
            raise BadRequest(f"cursor must be an object {{epoch, offset, seed, seq}}, got {type(data).__name__}")
        values = {}
        for name in ("epoch", "offset", "seed", "seq"):
            value = data.get(name, 0)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise BadRequest(f"cursor.{name} must be a non-negative integer, got {value!r}")
            values[name] = value
        return cls(**values)

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    def pushed(self) -> Cursor:
        """The same position with the next sequence number (after a push was acknowledged)."""
        return replace(self, seq=self.seq + 1)
