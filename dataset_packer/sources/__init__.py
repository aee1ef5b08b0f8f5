"""Dataset sources by kind, and `load_source` that picks one from what the user typed.

A SOURCE is a fetched dataset's name (`mnist`, `fashion-mnist`: fetched on demand), a path (an
IDX folder, a `.npz` file, a folder of images per class) or `torchvision:NAME`.
"""

from __future__ import annotations

from pathlib import Path

from dataset_packer.fetch import DATASETS, fetch_dataset
from dataset_packer.sources import idx, imagefolder, npz, torchvision_source
from dataset_packer.sources.base import Dataset


def check_source(source: str) -> None:
    """Raise ValueError naming what was not understood if SOURCE cannot be loaded; reads no data
    (so a command can refuse a bad SOURCE before it starts any work)."""
    if source in DATASETS or source.startswith(torchvision_source.PREFIX):
        return
    path = Path(source)
    if not path.exists():
        raise ValueError(f"{source!r} is neither a dataset name ({', '.join(DATASETS)}), torchvision:NAME, "
                         "nor an existing path")
    if not any(module.matches(path) for module in (npz, idx, imagefolder)):
        raise ValueError(f"{source}: not an IDX folder, a .npz file or a folder of images per class")


def load_source(source: str, data_dir: Path, offline: bool = False) -> Dataset:
    """Load SOURCE (see the module docstring); raises ValueError naming what was not understood."""
    check_source(source)
    if source in DATASETS:
        spec = DATASETS[source]
        folder = fetch_dataset(source, data_dir, offline=offline)
        return idx.load(folder, spec.name, spec.classes, (spec.mean, spec.std))
    if source.startswith(torchvision_source.PREFIX):
        return torchvision_source.load(source, data_dir)
    path = Path(source)
    module = next(m for m in (npz, idx, imagefolder) if m.matches(path))
    dataset: Dataset = module.load(path)
    return dataset


__all__ = ["Dataset", "check_source", "load_source"]
