"""Source: a folder of images per class (`ROOT/<class>/*.png`), optionally split as `ROOT/train`, `ROOT/test`.

Classes are the sub-folder names in sorted order. All images must share one size; they are read
with Pillow as grayscale when every image is grayscale, else as RGB.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dataset_packer.sources.base import Dataset, finish

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and p.is_file())


def matches(path: Path) -> bool:
    """True when `path` (or its `train/`) holds class folders with images in them."""
    root = path / "train" if (path / "train").is_dir() else path
    return path.is_dir() and any(_images(d) for d in _class_dirs(root))


def _read(root: Path, classes: tuple[str, ...], mode: str) -> tuple[np.ndarray, np.ndarray]:
    xs, ys, size = [], [], None
    for label, cls in enumerate(classes):
        for path in _images(root / cls) if (root / cls).is_dir() else []:
            with Image.open(path) as img:
                if size is None:
                    size = img.size
                if img.size != size:
                    raise ValueError(f"{path}: image is {img.size}, others are {size}; resize them first")
                xs.append(np.asarray(img.convert(mode), dtype=np.uint8))
            ys.append(label)
    if not xs:
        raise ValueError(f"{root}: no images found")
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _mode(roots: list[Path]) -> str:
    for root in roots:
        for d in _class_dirs(root):
            for path in _images(d):
                with Image.open(path) as img:
                    if img.mode not in ("L", "1", "I;16", "I", "F"):
                        return "RGB"
    return "L"


def load(path: Path) -> Dataset:
    """Read every image; `test/` becomes the test split when present."""
    split = (path / "train").is_dir()
    train_root = path / "train" if split else path
    test_root = path / "test" if split and (path / "test").is_dir() else None
    classes = tuple(d.name for d in _class_dirs(train_root))
    mode = _mode([train_root] + ([test_root] if test_root else []))
    train = _read(train_root, classes, mode)
    test = _read(test_root, classes, mode) if test_root else None
    return finish(path.name, train, test, classes)
