"""Object store backends by name: the registry key is the module name (`s3` → `stores/s3.py`)."""

from __future__ import annotations

from dataset_packer.stores.base import ObjectInfo, Store
from dataset_packer.stores.s3 import S3Store
from owtrain.s3 import S3Settings

STORES: dict[str, type[S3Store]] = {"s3": S3Store}


def open_store(kind: str, config: S3Settings, public_endpoint: str | None = None) -> Store:
    """The store backend `kind` for `config`; an unknown kind raises a ValueError listing the known ones."""
    try:
        cls = STORES[kind]
    except KeyError:
        raise ValueError(f"unknown store {kind!r}; known: {', '.join(sorted(STORES))}") from None
    return cls(config, public_endpoint)


__all__ = ["STORES", "ObjectInfo", "Store", "open_store"]
