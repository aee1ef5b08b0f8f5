"""Builders for test shards, including deliberately malformed ones."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np

from dataset_packer.shard import ShardInfo, build_manifest

INFO = ShardInfo(dataset="tiny", split="train", index=0, num_shards=1, sample_range=(0, 12),
                 classes=tuple(str(i) for i in range(10)), mean=(0.1307,), std=(0.3081,), scale=255.0)


def tiny_arrays(n: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def members_for(x: np.ndarray, y: np.ndarray, changes: dict | None = None) -> dict[str, bytes]:
    """Valid member bytes for (x, y), with top-level manifest keys overridden by `changes`."""
    members = {"x.npy": npy(x), "y.npy": npy(y)}
    manifest = {**build_manifest(x, y, INFO, members), **(changes or {})}
    return {"manifest.json": json.dumps(manifest).encode(), **members}


def write_tar(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None,
              pax: dict[str, str] | None = None) -> Path:
    """A .tar.gz holding `members` as regular files plus `extra` raw entries (links, devices…)."""
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT, pax_headers=pax or {}) as tar:
        for info in extra or []:
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path
