"""The run's shards: fetched, packed once per content and reused.

Packing is reproducible (fixed tar and gzip headers, `dataset_packer.shard`), so shards packed from
the same samples with the same settings are the same bytes. They are kept in a cache keyed by a
digest of exactly what decides them (the samples, classes and normalisation, the number of train
shards, the validation size and seed, the format), and a run links (or copies) them into its own
folder instead of packing again: a second run on the same data starts seconds sooner.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from dataset_packer.sources.base import Dataset
from localrun.config import LocalConfig
from owtrain.errors import ConfigError
from owtrain.naming import SUFFIX, train_shards

log = logging.getLogger(__name__)

SHARDS_DIR = "shards"
CACHE_DIR = ".packed"  # under the dataset cache (`dataset_packer.config.default_data_dir`)
PACK_FORMAT = "owtrain-shard/1 stratified test-shard"  # change it when packing changes what it writes


def prepare_shards(cfg: LocalConfig) -> tuple[Path, int]:
    """Fetch the dataset and give the run one train shard per worker, the validation shard held
    out of the training samples and the test shard (kept on resume); returns the folder and the
    training samples per epoch (the validation samples are in no train shard)."""
    from dataset_packer.config import default_data_dir
    from dataset_packer.sources import load_source
    from dataset_packer.split import default_val_size

    out = cfg.run_dir / SHARDS_DIR
    data_dir = default_data_dir()
    dataset = load_source(cfg.dataset, data_dir)
    if cfg.limit is not None:
        # a quick trial: the first N train and N test samples (MNIST's order is already mixed)
        dataset = replace(dataset, train_x=dataset.train_x[: cfg.limit], train_y=dataset.train_y[: cfg.limit],
                          test_x=None if dataset.test_x is None else dataset.test_x[: cfg.limit],
                          test_y=None if dataset.test_y is None else dataset.test_y[: cfg.limit])
    if dataset.test_x is None:
        raise ConfigError(f"{cfg.dataset} has no test split to evaluate on; give a source with one")
    val_size = default_val_size(len(dataset.train_y)) if cfg.val_size is None else cfg.val_size
    if not val_size < len(dataset.train_y) - cfg.workers:
        raise ConfigError(f"--val-size {val_size} leaves too few of the {len(dataset.train_y)} training samples "
                          f"for {cfg.workers} worker(s)")
    if not train_shards(out):
        cached = packed(dataset, cfg.workers, val_size, cfg.seed, data_dir / CACHE_DIR)
        _link_all(cached, out)
    return out, len(dataset.train_y) - val_size


def packed(dataset: Dataset, workers: int, val_size: int, seed: int, cache: Path) -> Path:
    """The folder of shards packed from `dataset` with these settings: from the cache, or packed now
    (into a temporary folder renamed into place, so a concurrent run never sees half a pack)."""
    from dataset_packer.pack import pack

    folder = cache / content_key(dataset, workers, val_size, seed)
    if train_shards(folder):
        log.info("reusing the shards packed earlier from the same samples (%s)", folder)
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".packing-", dir=cache))
    try:
        pack(dataset, workers, tmp, stratified=True, test_shard=True, val_size=val_size, val_seed=seed)
        try:
            os.rename(tmp, folder)
        except OSError:  # another run packed the same content meanwhile: keep theirs
            if not train_shards(folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def content_key(dataset: Dataset, workers: int, val_size: int, seed: int) -> str:
    """A digest of everything that decides the packed bytes."""
    h = hashlib.sha256()
    h.update(repr((PACK_FORMAT, dataset.name, dataset.classes, dataset.mean, dataset.std, dataset.scale, workers,
                   val_size, seed)).encode())
    for array in (dataset.train_x, dataset.train_y, dataset.test_x, dataset.test_y):
        if array is None:
            h.update(b"none")
            continue
        h.update(repr((array.shape, array.dtype.str)).encode())
        h.update(np.ascontiguousarray(array).data.cast("B"))
    return h.hexdigest()[:32]


def _link_all(cached: Path, out: Path) -> None:
    """Hard-link the cached shards into the run's folder (copy where links cannot be made)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(cached.glob(f"*{SUFFIX}")):
        target = out / path.name
        if target.exists():
            continue
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
