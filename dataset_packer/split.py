"""How samples are divided among shards: contiguous ranges, or stratified so every shard sees every class."""

from __future__ import annotations

import numpy as np


def contiguous(n: int, shards: int) -> list[np.ndarray]:
    """Indices of `shards` consecutive ranges covering 0..n, sizes differing by at most one."""
    if not 1 <= shards <= n:
        raise ValueError(f"cannot split {n} samples into {shards} shards")
    bounds = np.linspace(0, n, shards + 1).round().astype(int)
    return [np.arange(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def stratified(y: np.ndarray, shards: int) -> list[np.ndarray]:
    """Indices per shard such that each class is spread evenly over the shards.

    Samples are dealt round-robin in class order (each class's samples keep their original
    order), so shard sizes differ by at most one and each class's count by at most one.
    """
    if not 1 <= shards <= len(y):
        raise ValueError(f"cannot split {len(y)} samples into {shards} shards")
    order = np.argsort(y, kind="stable")
    return [np.sort(order[i::shards]) for i in range(shards)]
