"""Splits and `pack`: every sample lands in exactly one shard, stratified shards see every class."""

from __future__ import annotations

import numpy as np
import pytest

from dataset_packer import split
from dataset_packer.pack import pack
from dataset_packer.shard import read_shard
from dataset_packer.sources.base import finish


def test_contiguous_partition():
    parts = split.contiguous(10, 3)
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError):
        split.contiguous(2, 3)


def test_stratified_partition_balances_classes():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    parts = split.stratified(y, 4)
    assert sorted(np.concatenate(parts).tolist()) == list(range(100))
    counts = np.array([np.bincount(y[p], minlength=3) for p in parts])  # (shard, class)
    assert (counts.max(axis=0) - counts.min(axis=0) <= 1).all()
    assert all(abs(len(p) - 25) <= 1 for p in parts)


def _toy():
    rng = np.random.default_rng(3)
    train = (rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8), np.repeat(np.arange(4), 10))
    test = (rng.integers(0, 256, (8, 1, 4, 4), dtype=np.uint8), np.arange(8) % 4)
    return finish("toy", train, test)


def test_pack_contiguous_with_test_shard_and_stale_cleanup(tmp_path):
    ds = _toy()
    pack(ds, 5, tmp_path)
    written = pack(ds, 4, tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["toy-test.tar.gz"] + [f"toy-train-0000{i}-of-00004.tar.gz" for i in range(4)]
    train = [read_shard(w.path) for w in written if w.manifest["split"] == "train"]
    assert [s.manifest["sample_range"] for s in train] == [[0, 10], [10, 20], [20, 30], [30, 40]]
    assert np.array_equal(np.concatenate([s.x for s in train]), ds.train_x)
    assert np.array_equal(np.concatenate([s.y for s in train]), ds.train_y)
    test = read_shard(tmp_path / "toy-test.tar.gz")
    assert test.manifest["split"] == "test" and np.array_equal(test.x, ds.test_x)
    assert train[0].manifest["num_shards"] == 4 and train[3].manifest["index"] == 3


def test_pack_stratified_every_shard_sees_every_class(tmp_path):
    written = pack(_toy(), 5, tmp_path, stratified=True, test_shard=False)
    assert len(written) == 5 and not (tmp_path / "toy-test.tar.gz").exists()
    for w in written:
        shard = read_shard(w.path)
        assert shard.manifest["sample_range"] is None
        assert np.bincount(shard.y, minlength=4).tolist() == [2, 2, 2, 2]
