"""`owtrain pack`: a loaded dataset → train shards, a validation shard held out of the training
samples (what the parameter server evaluates while training runs and what every stop and model
choice is made on) and the test shard (scored once, on the final model)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_packer import split
from dataset_packer.shard import ShardInfo, write_shard
from dataset_packer.sources.base import Dataset
from owtrain.naming import held_out_shard, shard_name, train_shards

log = logging.getLogger(__name__)
DEFAULT_VAL_SEED = 0


@dataclass(frozen=True)
class PackedShard:
    """One shard written by `pack`."""

    path: Path
    manifest: dict[str, Any]


def _info(ds: Dataset, split_name: str, index: int, count: int, rng: tuple[int, int] | None) -> ShardInfo:
    return ShardInfo(dataset=ds.name, split=split_name, index=index, num_shards=count, sample_range=rng,
                     classes=ds.classes, mean=ds.mean, std=ds.std, scale=ds.scale)


def _remove_stale(out: Path, ds: Dataset, keep: set[str]) -> None:
    """Delete this dataset's shards from an earlier pack with another shard count or without a
    validation shard (upload would send them)."""
    val = held_out_shard(out, "val", ds.name)
    for old in [*train_shards(out, ds.name), *([val] if val else [])]:
        if old.name not in keep:
            log.info("removing stale shard %s from an earlier pack", old.name)
            old.unlink()


def pack(ds: Dataset, shards: int, out: Path, stratified: bool = False, test_shard: bool = True,
         val_size: int = 0, val_seed: int = DEFAULT_VAL_SEED) -> list[PackedShard]:
    """Write `shards` train shards (contiguous or stratified), a stratified validation shard of
    `val_size` samples drawn (with `val_seed`) out of the training samples when `val_size` > 0,
    and, if asked and available, the test shard.

    The validation samples are in no train shard, so no epoch of any worker trains on them.
    `sample_range` (indices of the source's training samples) is recorded only for contiguous
    shards of an unsplit training set; after a hold-out the remaining indices are not one range.
    """
    train_idx, val_idx = split.holdout(ds.train_y, val_size, val_seed)
    y = ds.train_y[train_idx]
    parts = split.stratified(y, shards) if stratified else split.contiguous(len(y), shards)
    written = []
    for i, local in enumerate(parts):
        idx = train_idx[local]
        contiguous_range = None if stratified or len(val_idx) else (int(idx[0]), int(idx[-1]) + 1)
        path = out / shard_name(ds.name, "train", i, shards)
        manifest = write_shard(path, ds.train_x[idx], ds.train_y[idx], _info(ds, "train", i, shards, contiguous_range))
        written.append(PackedShard(path, manifest))
    if len(val_idx):
        path = out / shard_name(ds.name, "val", 0, 1)
        manifest = write_shard(path, ds.train_x[val_idx], ds.train_y[val_idx], _info(ds, "val", 0, 1, None))
        written.append(PackedShard(path, manifest))
    _remove_stale(out, ds, {p.path.name for p in written})
    if test_shard:
        if ds.test_x is None or ds.test_y is None:
            log.warning("%s has no test split: no test shard written", ds.name)
        else:
            path = out / shard_name(ds.name, "test", 0, 1)
            manifest = write_shard(path, ds.test_x, ds.test_y, _info(ds, "test", 0, 1, (0, len(ds.test_y))))
            written.append(PackedShard(path, manifest))
    log.info("packed %s into %d shard(s) in %s (%d validation samples held out)", ds.name, len(written), out,
             len(val_idx))
    return written
