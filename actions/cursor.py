"""The action's data order from a cursor (`owtrain.cursor.Cursor`): one seeded permutation per epoch."""

from __future__ import annotations

from dataclasses import replace

import torch

from owtrain.cursor import Cursor
from owtrain.errors import BadRequest


def permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """Epoch `epoch`'s sample order: the same on every machine and in every activation."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))


class BatchOrder:
    """Hands out the next batch of sample indices from a cursor; caches the current permutation."""

    def __init__(self, n: int, batch_size: int) -> None:
        self.n = n
        self.batch_size = batch_size
        self._perm_key: tuple[int, int] | None = None
        self._perm = torch.empty(0, dtype=torch.int64)

    def next_batch(self, cursor: Cursor) -> tuple[torch.Tensor, Cursor]:
        """(indices of the batch at `cursor`, the cursor just after it; a new epoch starts at 0)."""
        if cursor.offset >= self.n:
            raise BadRequest(f"cursor.offset {cursor.offset} is past the shard's {self.n} samples")
        key = (cursor.seed, cursor.epoch)
        if key != self._perm_key:
            self._perm, self._perm_key = permutation(self.n, cursor.seed, cursor.epoch), key
        stop = min(cursor.offset + self.batch_size, self.n)
        after = replace(cursor, offset=stop) if stop < self.n else replace(cursor, epoch=cursor.epoch + 1, offset=0)
        return self._perm[cursor.offset : stop], after
