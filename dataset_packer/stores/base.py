"""The one interface every object store backend implements (Lithops-like, without `hasattr` probes).

The packer needs only five things from a store: make sure the bucket exists, look at an object,
upload a file with its sha256 and split as metadata, list shard objects, and mint a presigned GET.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object; `sha256`/`split` are None when it was not uploaded by `owtrain upload`."""

    key: str
    size: int
    sha256: str | None = None
    split: str | None = None


class Store(ABC):
    """A bucket in an object store."""

    @abstractmethod
    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist yet."""

    @abstractmethod
    def stat(self, key: str) -> ObjectInfo | None:
        """The object's size and metadata, or None when there is no such object."""

    @abstractmethod
    def put_file(self, key: str, path: Path, sha256: str, split: str,
                 progress: Callable[[int], object] | None = None) -> None:
        """Upload `path` as `key`, recording `sha256` and `split`; `progress(n)` is called per chunk sent."""

    @abstractmethod
    def list(self, prefix: str = "", start_after: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order, after the key `start_after` (S3's
        ListObjectsV2 start-after: a poller with a cursor reads only new keys). Size only; use
        `stat` for metadata."""

    @abstractmethod
    def presign_get(self, key: str, expires: timedelta) -> str:
        """A presigned GET URL for `key`, valid for `expires`, signed for the workers' host name."""
