"""Adapters from an object store to what the bridge needs: a bucket lister and a shard resolver.

The lister is the store's `list` with `start_after` (ListObjectsV2 start-after), so a poller with
a persisted cursor reads only new keys; the resolver mints a fresh presigned URL at each launch (a
chain may outlive any one URL) and reads the sha256 that `owtrain upload` stored as metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

from minio.error import S3Error

from dataset_packer.stores.s3 import S3Store
from owtrain.errors import BadRequest, ObjectMissing, StoreUnreachable
from wsk.bridge import Lister
from wsk.driver import Resolver
from wsk.state import Shard


def bucket_lister(store: S3Store, prefix: str = "") -> Lister:
    """Keys under `prefix` after a given key, in key order; S3 errors become StoreUnreachable."""
    def keys(start_after: str) -> Iterator[str]:
        try:
            for obj in store.list(prefix, start_after):
                yield obj.key
        except S3Error as exc:
            raise StoreUnreachable(f"listing bucket {store.bucket}: {exc.code}: {exc.message}") from exc

    return keys


def store_resolver(store: S3Store, presign_seconds: int) -> Resolver:
    """(fresh presigned URL, sha256) of a shard's object; ObjectMissing or BadRequest when it is unusable."""
    def resolve(shard: Shard) -> tuple[str, str]:
        try:
            info = store.stat(shard.key)
        except S3Error as exc:
            raise StoreUnreachable(f"stat {shard.key}: {exc.code}: {exc.message}") from exc
        if info is None:
            raise ObjectMissing(f"shard {shard.key} is no longer in bucket {store.bucket}")
        if not info.sha256:
            raise BadRequest(f"object {shard.key} has no sha256 metadata; upload it with `owtrain upload`")
        if info.split in ("val", "test"):
            raise BadRequest(f"object {shard.key} is a {info.split} shard, not a train shard")
        return store.presign_get(shard.key, timedelta(seconds=presign_seconds)), info.sha256

    return resolve
