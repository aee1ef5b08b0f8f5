"""Source: a `.npz` archive with `x_train`, `y_train` [, `x_test`, `y_test`] [, `classes`] (Keras layout).

Loaded with `allow_pickle=False`: an archive holding object arrays is refused, never unpickled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dataset_packer.sources.base import Dataset, finish


def matches(path: Path) -> bool:
    return path.is_file() and path.suffix == ".npz"


def load(path: Path) -> Dataset:
    """Read the arrays; a missing train array or an object array raises ValueError."""
    with np.load(path, allow_pickle=False) as archive:
        keys = set(archive.files)
        if not {"x_train", "y_train"} <= keys:
            raise ValueError(f"{path}: a .npz source needs x_train and y_train (has {sorted(keys)})")
        train = (archive["x_train"], archive["y_train"])
        test = (archive["x_test"], archive["y_test"]) if {"x_test", "y_test"} <= keys else None
        classes = tuple(str(c) for c in archive["classes"]) if "classes" in keys else None
    return finish(path.stem, train, test, classes)
