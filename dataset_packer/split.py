"""How samples are divided: a held-out validation set first, then the rest among the train shards
(contiguous ranges, or stratified so every shard sees every class)."""

from __future__ import annotations

import numpy as np

# The validation set `owtrain pack` holds out by default: a twelfth of the training samples, at most
# 5,000 (MNIST and Fashion-MNIST: 60,000 → 5,000, the usual 55k/5k split), so a `--limit` trial
# keeps most of its few samples for training.
MAX_DEFAULT_VAL = 5000
DEFAULT_VAL_FRACTION = 12


def default_val_size(n: int) -> int:
    """The validation size used when none is given: min(5,000, n // 12)."""
    return min(MAX_DEFAULT_VAL, n // DEFAULT_VAL_FRACTION)


def holdout(y: np.ndarray, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices), both sorted, disjoint and covering 0..len(y).

    The validation set is stratified: each class contributes in proportion to its share of `y`
    (largest remainders round the counts so they add up to `size`), and which samples of a class
    are held out is drawn with `seed`, so the same seed and data give the same split.
    """
    n = len(y)
    if not 0 <= size < n:
        raise ValueError(f"cannot hold out {size} of {n} samples for validation (need 0 <= size < {n})")
    if size == 0:
        return np.arange(n), np.arange(0)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * size / n
    take = np.floor(exact).astype(int)
    # hand the rounding remainder to the classes with the largest fractional parts (ties: lower class)
    extra = np.argsort(-(exact - take), kind="stable")[: size - int(take.sum())]
    take[extra] += 1
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)]
    val = np.sort(np.concatenate(held))
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


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
