"""The names shards are stored under (files and object keys), shared by every part that finds them.

`owtrain pack` writes `mnist-train-00002-of-00012.tar.gz`, `mnist-val.tar.gz` and `mnist-test.tar.gz`;
the event bridge starts a chain only for keys matching `TRAIN_KEY_PATTERN` (the validation and test
shards sit in the same bucket but are the server's); the run finds the held-out shards with
`held_out_shard`.
"""

from __future__ import annotations

from pathlib import Path

SUFFIX = ".tar.gz"
TRAIN_KEY_PATTERN = r"-train-\d+-of-\d+\.tar\.gz$"
HELD_OUT = ("val", "test")


def shard_name(dataset: str, split_name: str, index: int = 0, count: int = 1) -> str:
    """File (and object key) name of a shard: `mnist-train-00002-of-00012.tar.gz`, `mnist-val.tar.gz`,
    `mnist-test.tar.gz`."""
    if split_name in HELD_OUT:
        return f"{dataset}-{split_name}{SUFFIX}"
    return f"{dataset}-train-{index:05d}-of-{count:05d}{SUFFIX}"


def train_shards(folder: Path, dataset: str = "*") -> list[Path]:
    """The train shards in `folder` (of `dataset`, or of any), sorted by name."""
    return sorted(folder.glob(f"{dataset}-train-*-of-*{SUFFIX}"))


def held_out_shard(folder: Path, split_name: str, dataset: str = "*") -> Path | None:
    """The `val` or `test` shard in `folder` (of `dataset`, or of any), or None when there is none."""
    if split_name not in HELD_OUT:
        raise ValueError(f"held-out splits are {' and '.join(HELD_OUT)}, not {split_name!r}")
    return next(iter(sorted(folder.glob(f"{dataset}-{split_name}{SUFFIX}"))), None)
