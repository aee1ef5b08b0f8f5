"""Learnable test shards on the real Swift S3 server, and the driver's re-invoke loop in small."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from dataset_packer.shard import ShardInfo, read_shard, write_shard
from dataset_packer.stores import open_store
from dataset_packer.stores.base import Store
from owtrain.s3 import S3Settings


def learnable_arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(x uint8 (n,1,28,28), y int64): each class is a fixed random template plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 1, 28, 28))
    y = np.arange(n) % 10
    rng.shuffle(y)
    noise = rng.integers(-60, 61, (n, 1, 28, 28))
    return np.clip(templates[y] + noise, 0, 255).astype(np.uint8), y.astype(np.int64)


@dataclass(frozen=True)
class UploadedShard:
    store: Store
    key: str
    sha256: str
    path: Path
    count: int

    def url(self, expires: timedelta = timedelta(minutes=30)) -> str:
        return self.store.presign_get(self.key, expires)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return read_shard(self.path).to_tensors()


def open_bucket(swift_s3, bucket: str) -> Store:
    store = open_store("s3", S3Settings(swift_s3.endpoint, bucket, swift_s3.access_key, swift_s3.secret_key))
    store.ensure_bucket()
    return store


def upload_shard(store: Store, folder: Path, key: str, n: int, seed: int = 0) -> UploadedShard:
    """Write a learnable shard of `n` samples and upload it as `key`."""
    info = ShardInfo(dataset="learnable", split="train", index=0, num_shards=1, sample_range=(0, n),
                     classes=tuple(str(i) for i in range(10)), mean=(0.5,), std=(0.25,), scale=255.0)
    path = folder / f"{key.replace('/', '_')}-{seed}.tar.gz"
    write_shard(path, *learnable_arrays(n, seed), info)
    return upload_file(store, key, path, n)


def upload_file(store: Store, key: str, path: Path, count: int = 0) -> UploadedShard:
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    store.put_file(key, path, sha, "train")
    return UploadedShard(store, key, sha, path, count)


def action_params(ps, shard: UploadedShard, worker: str = "w0", **extra) -> dict:
    """Contract 3 parameters for one worker of `ps`'s job on `shard`."""
    return {"dataset_url": shard.url(), "dataset_sha256": shard.sha256, "apihost": ps.url,
            "ps_token": ps.token(worker), "job": ps.job, "worker": worker, **extra}


def run_to_completion(server, params: dict, max_activations: int = 60) -> list[dict]:
    """Invoke, then re-invoke with `next` until `done`, as the driver does; return every result."""
    results: list[dict] = []
    cursor = None
    for _ in range(max_activations):
        status, result = server.run({**params, "cursor": cursor})
        assert status == 200 and "error" not in result, result
        results.append(result)
        if result["done"]:
            return results
        assert result["samples"] > 0, f"an activation made no progress: {result}"
        cursor = result["next"]
    raise AssertionError(f"not done after {max_activations} activations: {results[-1]}")


def mean_loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(model(x), y))
