"""Where a model repository's files live: a local folder or an S3 bucket prefix, behind one interface.

The repository needs four things: list keys under a prefix, read a small object, write one
atomically, and say where it is (for the messages). The S3 side goes through dataset_packer's
public `Store` (list, stat, put_file, presign_get), so it works with every S3 endpoint the rest
of owtrain works with (MinIO, Swift, moto, AWS).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from datetime import timedelta
from pathlib import Path

import requests
from minio.error import S3Error

from dataset_packer.stores.base import Store
from owtrain.errors import BadRequest, StoreUnreachable

MAX_OBJECT_BYTES = 256 * 1024 * 1024  # a model file far larger than this does not fit an action anyway


class RepoStorage(ABC):
    """Keys are '/'-separated paths relative to the repository root."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Every key under `prefix` (recursive), sorted; empty when there is none."""

    @abstractmethod
    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    @abstractmethod
    def write(self, key: str, data: bytes) -> None:
        """Store `data` under `key`; readers see the old or the new bytes, never a mix."""

    @abstractmethod
    def describe(self) -> str:
        """The repository's location as a user typed it."""


class LocalStorage(RepoStorage):
    """A folder on this machine (`RUN_DIR/models` by default)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(p.relative_to(self.root).as_posix() for p in base.rglob("*") if p.is_file()
                      and not p.name.startswith("."))

    def read(self, key: str) -> bytes | None:
        try:
            return (self.root / key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def write(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def describe(self) -> str:
        return str(self.root)


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
        return data

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
