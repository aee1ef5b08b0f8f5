"""The run's shards are packed once per content and reused (localrun/shards.py)."""

from __future__ import annotations

import numpy as np

from dataset_packer.shard import read_shard
from dataset_packer.sources.base import finish
from localrun.shards import _link_all, content_key, packed
from owtrain.naming import held_out_shard, train_shards


def toy(seed: int = 3):
    rng = np.random.default_rng(seed)
    train = (rng.integers(0, 256, (40, 1, 4, 4), dtype=np.uint8), np.repeat(np.arange(4), 10))
    test = (rng.integers(0, 256, (8, 1, 4, 4), dtype=np.uint8), np.arange(8) % 4)
    return finish("toy", train, test)


def test_the_same_content_is_packed_once_and_linked_into_each_run(tmp_path):
    cache = tmp_path / "cache"
    first = packed(toy(), 2, 8, 0, cache)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    again = packed(toy(), 2, 8, 0, cache)  # the same samples and settings: the same folder, not re-packed
    assert again == first and {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == stamps
    for run in ("run1", "run2"):
        _link_all(first, tmp_path / run / "shards")
    names = [p.name for p in train_shards(tmp_path / "run1" / "shards")]
    assert names == ["toy-train-00000-of-00002.tar.gz", "toy-train-00001-of-00002.tar.gz"]
    val = held_out_shard(tmp_path / "run2" / "shards", "val")
    assert val is not None and read_shard(val).manifest["count"] == 8
    assert [p.name for p in cache.iterdir()] == [first.name]  # no half-packed folder left behind


def test_anything_that_changes_the_bytes_changes_the_key():
    base = content_key(toy(), 2, 8, 0)
    assert base == content_key(toy(), 2, 8, 0)
    assert len({base, content_key(toy(seed=4), 2, 8, 0), content_key(toy(), 3, 8, 0),
                content_key(toy(), 2, 9, 0), content_key(toy(), 2, 8, 1)}) == 5
