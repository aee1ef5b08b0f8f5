"""What every source yields: a dataset in memory, as (N, C, H, W) arrays with class names."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset. `test_x`/`test_y` are None when the source has no test split.

    `x` arrays are uint8 (raw pixels, `scale` 255) or float32 (`scale` 1); `mean`/`std` are per
    channel, in units of x/scale, so a worker normalises as ((x / scale) - mean) / std.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float


def channel_stats(x: np.ndarray, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of x/scale, computed in float64 one channel at a time (bounded memory)."""
    means, stds = [], []
    for c in range(x.shape[1]):
        channel = x[:, c].astype(np.float64) / scale
        means.append(round(float(channel.mean()), 4))
        stds.append(round(max(float(channel.std()), 1e-6), 4))
    return tuple(means), tuple(stds)


def to_nchw(x: np.ndarray, what: str) -> np.ndarray:
    """(N, H, W) → (N, 1, H, W); (N, H, W, C) with C in 1/3/4 → (N, C, H, W); (N, C, H, W) kept."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[1] not in (1, 3, 4) and x.shape[3] in (1, 3, 4):
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    if x.ndim == 4:
        return x
    raise ValueError(f"{what}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W), got {x.shape}")


def finish(name: str, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray] | None,
           classes: tuple[str, ...] | None = None, stats: tuple[float, float] | None = None) -> Dataset:
    """Validate and normalise raw arrays into a `Dataset` (dtype, layout, labels, class names, stats)."""
    parts = [train] + ([test] if test is not None else [])
    fixed = []
    for x, y in parts:
        x = to_nchw(np.asarray(x), name)
        if x.dtype != np.uint8:
            x = x.astype(np.float32)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{name}: labels must be integers (N,) matching {len(x)} images, got {y.dtype} {y.shape}")
        fixed.append((x, y.astype(np.int64)))
    top = max(int(y.max()) for _, y in fixed if len(y)) if any(len(y) for _, y in fixed) else -1
    if min(int(y.min()) for _, y in fixed if len(y)) < 0:
        raise ValueError(f"{name}: negative labels")
    classes = classes or tuple(str(i) for i in range(top + 1))
    if top >= len(classes):
        raise ValueError(f"{name}: label {top} but only {len(classes)} class names")
    scale = 255.0 if fixed[0][0].dtype == np.uint8 else 1.0
    if stats is not None:
        mean, std = (stats[0],) * fixed[0][0].shape[1], (stats[1],) * fixed[0][0].shape[1]
    else:
        mean, std = channel_stats(fixed[0][0], scale)
    test_x, test_y = fixed[1] if len(fixed) > 1 else (None, None)
    return Dataset(name, fixed[0][0], fixed[0][1], test_x, test_y, tuple(classes), mean, std, scale)
