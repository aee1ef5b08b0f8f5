"""Source: a folder with the four standard IDX files (`train-images-idx3-ubyte[.gz]`, …)."""

from __future__ import annotations

from pathlib import Path

from dataset_packer.idx import IDX_FILES, read_idx
from dataset_packer.sources.base import Dataset, finish


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def matches(path: Path) -> bool:
    """True when `path` is a folder holding at least the IDX train images and labels."""
    return path.is_dir() and all(_find(path, stem) for stem in IDX_FILES[:2])


def load(path: Path, name: str | None = None, classes: tuple[str, ...] | None = None,
         stats: tuple[float, float] | None = None) -> Dataset:
    """Read the IDX folder; the test split is included when its two files are there."""
    files = [_find(path, stem) for stem in IDX_FILES]
    train = (read_idx(files[0]), read_idx(files[1]))  # type: ignore[arg-type]
    test = (read_idx(files[2]), read_idx(files[3])) if files[2] and files[3] else None
    return finish(name or path.name, train, test, classes, stats)
