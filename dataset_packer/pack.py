"""`owtrain pack`: a loaded dataset → train shards (+ one held-out test shard for the server's evaluation)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataset_packer import split
from dataset_packer.shard import ShardInfo, write_shard
from dataset_packer.sources.base import Dataset

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackedShard:
    """One shard written by `pack`."""

    path: Path
    manifest: dict[str, Any]


def shard_name(dataset: str, split_name: str, index: int, count: int) -> str:
    """File (and object key) name of a shard: `mnist-train-00002-of-00012.tar.gz`, `mnist-test.tar.gz`."""
    if split_name == "test":
        return f"{dataset}-test.tar.gz"
    return f"{dataset}-train-{index:05d}-of-{count:05d}.tar.gz"


def _info(ds: Dataset, split_name: str, index: int, count: int, rng: tuple[int, int] | None) -> ShardInfo:
    return ShardInfo(dataset=ds.name, split=split_name, index=index, num_shards=count, sample_range=rng,
                     classes=ds.classes, mean=ds.mean, std=ds.std, scale=ds.scale)


def _remove_stale(out: Path, ds: Dataset, keep: set[str]) -> None:
    """Delete this dataset's shards from an earlier pack with another shard count (upload would send them)."""
    for old in out.glob(f"{ds.name}-train-*-of-*.tar.gz"):
        if old.name not in keep:
            log.info("removing stale shard %s from an earlier pack", old.name)
            old.unlink()


def pack(ds: Dataset, shards: int, out: Path, stratified: bool = False, test_shard: bool = True) -> list[PackedShard]:
    """Write `shards` train shards (contiguous or stratified) and, if asked and available, the test shard."""
    parts = split.stratified(ds.train_y, shards) if stratified else split.contiguous(len(ds.train_y), shards)
    written = []
    for i, idx in enumerate(parts):
        contiguous_range = None if stratified else (int(idx[0]), int(idx[-1]) + 1)
        path = out / shard_name(ds.name, "train", i, shards)
        manifest = write_shard(path, ds.train_x[idx], ds.train_y[idx], _info(ds, "train", i, shards, contiguous_range))
        written.append(PackedShard(path, manifest))
    _remove_stale(out, ds, {p.path.name for p in written})
    if test_shard:
        if ds.test_x is None or ds.test_y is None:
            log.warning("%s has no test split: no test shard written", ds.name)
        else:
            path = out / shard_name(ds.name, "test", 0, 1)
            manifest = write_shard(path, ds.test_x, ds.test_y, _info(ds, "test", 0, 1, (0, len(ds.test_y))))
            written.append(PackedShard(path, manifest))
    log.info("packed %s into %d shard(s) in %s", ds.name, len(written), out)
    return written

