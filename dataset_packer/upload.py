"""`owtrain upload`: verified shards → a bucket, idempotent by sha256, with a progress bar.

Every shard is read and verified before it is sent (a corrupt file never reaches workers), and an
object whose stored sha256 and size already match is skipped, so re-running an upload is cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from dataset_packer.download import file_sha256
from dataset_packer.shard import read_shard
from dataset_packer.stores import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Uploaded:
    """The outcome for one shard: `sent` is False when an identical object was already there."""

    key: str
    size: int
    sha256: str
    split: str
    sent: bool


def upload_dir(store: Store, folder: Path, prefix: str = "", progress: bool = True) -> list[Uploaded]:
    """Upload every `*.tar.gz` shard in `folder` as `prefix + file name`; returns one entry per shard."""
    paths = sorted(folder.glob("*.tar.gz"))
    if not paths:
        raise FileNotFoundError(f"no *.tar.gz shards in {folder}; run `owtrain pack` first")
    store.ensure_bucket()
    results = []
    total = sum(p.stat().st_size for p in paths)
    with tqdm(total=total, unit="B", unit_scale=True, desc="upload", disable=not progress) as bar:
        for path in paths:
            split = read_shard(path).manifest["split"]
            sha, size, key = file_sha256(path), path.stat().st_size, prefix + path.name
            existing = store.stat(key)
            if existing is not None and existing.sha256 == sha and existing.size == size:
                log.info("%s already in the bucket with the same sha256; skipped", key)
                bar.update(size)
                results.append(Uploaded(key, size, sha, split, sent=False))
                continue
            store.put_file(key, path, sha, split, progress=bar.update)
            results.append(Uploaded(key, size, sha, split, sent=True))
    return results
