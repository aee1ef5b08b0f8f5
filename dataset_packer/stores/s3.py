"""S3 store through the `minio` SDK: works with MinIO, OpenStack Swift's s3api, moto and AWS."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, TypeVar
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.error import S3Error

from dataset_packer.stores.base import ObjectInfo, Store
from owtrain.errors import BadRequest, StoreUnreachable
from owtrain.s3 import S3Settings

log = logging.getLogger(__name__)
META_SHA256 = "x-amz-meta-sha256"
META_SPLIT = "x-amz-meta-owtrain-split"
T = TypeVar("T")


class _ProgressReader:
    """Wraps a file so each `read` reports its size: minio's own hook wants a thread object."""

    def __init__(self, raw: BinaryIO, progress: Callable[[int], object]) -> None:
        self.raw, self.progress = raw, progress

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.progress(len(data))
        return data


def _client(endpoint: str, config: S3Settings) -> Minio:
    """A Minio client for `endpoint` (http or https URL). Region is fixed, so presigning is offline."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise BadRequest(f"endpoint must look like http(s)://host:port, got {endpoint!r}")
    http_client = None
    if parts.scheme == "https" and not config.verify_tls:
        log.warning("TLS certificate verification is OFF for %s", endpoint)
        http_client = urllib3.PoolManager(cert_reqs="CERT_NONE")
    return Minio(parts.netloc, access_key=config.access_key, secret_key=config.secret_key,
                 secure=parts.scheme == "https", region=config.region, http_client=http_client)


class S3Store(Store):
    """One bucket at an S3 endpoint; `public_endpoint` is the host presigned URLs are signed for."""

    def __init__(self, config: S3Settings, public_endpoint: str | None = None) -> None:
        self.config = config
        self.bucket = config.bucket
        self.client = _client(config.endpoint, config)
        self.signer = _client(public_endpoint, config) if public_endpoint else self.client

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run an SDK call, turning network failures into `StoreUnreachable` (S3 errors pass through)."""
        try:
            return fn()
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StoreUnreachable(f"{what}: cannot reach {self.config.endpoint} ({type(exc).__name__})") from exc

    def ensure_bucket(self) -> None:
        if not self._call("bucket_exists", lambda: self.client.bucket_exists(self.bucket)):
            log.info("creating bucket %s", self.bucket)
            self._call("make_bucket", lambda: self.client.make_bucket(self.bucket))

    def stat(self, key: str) -> ObjectInfo | None:
        try:
            st = self._call("stat_object", lambda: self.client.stat_object(self.bucket, key))
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                return None
            raise
        meta = {k.lower(): v for k, v in (st.metadata or {}).items()}
        return ObjectInfo(key=key, size=int(st.size or 0), sha256=meta.get(META_SHA256),
                          split=meta.get(META_SPLIT))

    def put_file(self, key: str, path: Path, sha256: str, split: str,
                 progress: Callable[[int], object] | None = None) -> None:
        size = path.stat().st_size
        with open(path, "rb") as raw:
            data = _ProgressReader(raw, progress) if progress else raw
            self._call("put_object", lambda: self.client.put_object(
                self.bucket, key, data, size, content_type="application/gzip",  # type: ignore[arg-type]
                metadata={META_SHA256: sha256, META_SPLIT: split}))

    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        objects = self._call("list_objects", lambda: list(self.client.list_objects(
            self.bucket, prefix=prefix, recursive=True, start_after=start_after or None)))
        for obj in objects:
            if not obj.is_dir:
                yield ObjectInfo(key=obj.object_name, size=int(obj.size or 0))

    def presign_get(self, key: str, expires: timedelta) -> str:
        return self.signer.presigned_get_object(self.bucket, key, expires=expires)
