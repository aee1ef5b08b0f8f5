"""A model repository in an S3 bucket prefix: the `RepoStorage` (owtrain.model_repository_layout) on S3.

The folder implementation, `LocalStorage`, is foundation beside the interface; this one lives
with the stores because it is built on the public `Store` (list, put_file, presign_get), so it
works with every S3 endpoint the rest of owtrain works with (MinIO, Swift, moto, AWS). Both
repository writers use it: serving (the top floor) and the parameter server's `/admin/publish`.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import requests
from minio.error import S3Error

from dataset_packer.stores import open_store
from dataset_packer.stores.base import Store
from owtrain.errors import BadRequest, ConfigError, StoreUnreachable
from owtrain.model_repository_layout import LocalStorage, RepoStorage
from owtrain.s3 import S3Settings

MAX_OBJECT_BYTES = 256 * 1024 * 1024  # a model file far larger than this does not fit an action anyway


class S3Storage(RepoStorage):
    """A prefix in a bucket (`s3://bucket/prefix`); reads go through short-lived presigned GETs."""

    def __init__(self, store: Store, bucket: str, prefix: str = "", verify: bool = True) -> None:
        self.store, self.bucket, self.verify = store, bucket, verify
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def list(self, prefix: str) -> list[str]:
        full = self.prefix + prefix
        try:
            return sorted(o.key[len(self.prefix):] for o in self.store.list(full))
        except S3Error as exc:
            raise StoreUnreachable(f"listing s3://{self.bucket}/{full}: {exc.code}: {exc.message}") from exc

    def read(self, key: str) -> bytes | None:
        url = self.store.presign_get(self.prefix + key, timedelta(minutes=5))
        try:
            reply = requests.get(url, timeout=30, verify=self.verify, stream=True)
            if reply.status_code == 404:
                return None
            reply.raise_for_status()
            data = reply.raw.read(MAX_OBJECT_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise StoreUnreachable(f"reading s3://{self.bucket}/{self.prefix}{key}: {exc}") from exc
        if len(data) > MAX_OBJECT_BYTES:
            raise BadRequest(f"s3://{self.bucket}/{self.prefix}{key} is larger than {MAX_OBJECT_BYTES} bytes")
        return bytes(data)

    def write(self, key: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile() as tmp:
            tmp.write(data)
            tmp.flush()
            try:
                self.store.put_file(self.prefix + key, Path(tmp.name), hashlib.sha256(data).hexdigest(), "model")
            except S3Error as exc:
                raise StoreUnreachable(f"writing s3://{self.bucket}/{self.prefix}{key}: {exc.code}: {exc.message}") from exc

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def open_repo_storage(location: str, s3: S3Settings | None = None) -> RepoStorage:
    """A folder path, or `s3://bucket/prefix` reached through `s3`'s endpoint and credentials (the
    bucket is the location's); ConfigError says what is missing."""
    if not location.startswith("s3://"):
        return LocalStorage(Path(location))
    parts = urlsplit(location)
    if not parts.netloc:
        raise ConfigError(f"{location!r}: an S3 repository looks like s3://bucket/prefix")
    if s3 is None:
        raise ConfigError("an s3:// repository needs --s3-endpoint and OWTRAIN_S3_ACCESS_KEY / OWTRAIN_S3_SECRET_KEY")
    return S3Storage(open_store("s3", replace(s3, bucket=parts.netloc)), parts.netloc, parts.path,
                     verify=s3.verify_tls)
