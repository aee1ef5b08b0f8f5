"""Source: a torchvision dataset (`torchvision:CIFAR10`), only when torchvision is installed (optional extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from dataset_packer.sources.base import Dataset, finish

PREFIX = "torchvision:"


def available() -> bool:
    return importlib.util.find_spec("torchvision") is not None


def load(spec: str, data_dir: Path) -> Dataset:
    """Load `torchvision:NAME` (train and test) into `data_dir/torchvision`; needs torchvision."""
    if not available():
        raise ValueError(f"{spec}: torchvision is not installed (pip install 'owtrain[torchvision]')")
    import torchvision.datasets as tvd

    name = spec.removeprefix(PREFIX)
    cls = getattr(tvd, name, None)
    if cls is None:
        raise ValueError(f"{spec}: torchvision.datasets has no {name}")
    root = data_dir / "torchvision"
    parts = [cls(root=str(root), train=flag, download=True) for flag in (True, False)]
    arrays = [(np.asarray(ds.data), np.asarray(ds.targets)) for ds in parts]
    classes = tuple(str(c) for c in getattr(parts[0], "classes", ())) or None
    return finish(name.lower(), arrays[0], arrays[1], classes)
