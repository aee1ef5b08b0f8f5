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


def test_holdout_is_stratified_seeded_and_disjoint():
    y = np.array([0] * 500 + [1] * 300 + [2] * 200)
    train, val = split.holdout(y, 100, seed=7)
    assert len(val) == 100 and len(train) == 900
    assert np.bincount(y[val]).tolist() == [50, 30, 20]  # each class in proportion
    assert not set(train.tolist()) & set(val.tolist())
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(1000))
    assert np.array_equal(split.holdout(y, 100, seed=7)[1], val)  # same seed, same split
    assert not np.array_equal(split.holdout(y, 100, seed=8)[1], val)
    odd = split.holdout(np.array([0] * 5 + [1] * 5 + [2] * 5), 4, seed=0)[1]
    assert len(odd) == 4  # rounding remainders still add up to the size asked for
    with pytest.raises(ValueError, match="cannot hold out"):
        split.holdout(y, 1000, seed=0)


def test_default_val_size_is_5000_for_mnist_and_a_twelfth_of_small_sets():
    assert split.default_val_size(60_000) == 5000
    assert split.default_val_size(120_000) == 5000
    assert split.default_val_size(2400) == 200


def _numbered(n: int):
    """A dataset whose every training image carries its own index in its first two pixels."""
    x = np.zeros((n, 1, 4, 4), dtype=np.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    y = np.arange(n) % 4
    return finish("num", (x, y), (x[:8].copy(), y[:8].copy()))


def _ids(shard) -> list[int]:
    return (shard.x[:, 0, 0, 0].astype(int) * 256 + shard.x[:, 0, 0, 1]).tolist()


@pytest.mark.parametrize("stratified", [False, True])
def test_pack_holds_out_a_validation_shard_no_train_shard_contains(tmp_path, stratified):
    """No leakage: the validation samples are in no train shard, so no worker's epoch sees them."""
    ds = _numbered(1200)
    written = pack(ds, 3, tmp_path, stratified=stratified, val_size=100, val_seed=5)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["num-test.tar.gz", "num-train-00000-of-00003.tar.gz", "num-train-00001-of-00003.tar.gz",
                     "num-train-00002-of-00003.tar.gz", "num-val.tar.gz"]
    val = read_shard(tmp_path / "num-val.tar.gz")
    assert val.manifest["split"] == "val" and val.manifest["count"] == 100
    assert np.bincount(val.y, minlength=4).tolist() == [25, 25, 25, 25]
    train = [read_shard(w.path) for w in written if w.manifest["split"] == "train"]
    train_ids = [i for s in train for i in _ids(s)]
    assert sum(s.manifest["count"] for s in train) == 1100 == len(set(train_ids))
    assert not set(train_ids) & set(_ids(val))
    assert sorted(train_ids + _ids(val)) == list(range(1200))
    assert all(s.manifest["sample_range"] is None for s in train)  # not one range of the source any more
    for s in train:  # labels travel with their images
        assert (s.y == np.array(_ids(s)) % 4).all()
    # the same seed picks the same samples; a pack without validation removes the old val shard
    assert _ids(read_shard(pack(ds, 3, tmp_path, stratified=stratified, val_size=100, val_seed=5)[-2].path)) \
        == _ids(val)
    pack(ds, 3, tmp_path, stratified=stratified)
    assert not (tmp_path / "num-val.tar.gz").exists()
