"""Atomic checkpoints: one safetensors file per version, JSON state in its metadata.

A checkpoint is written to a temp name in the same folder, fsynced, renamed over
`ckpt-<version>.safetensors` and the folder fsynced, so a crash leaves either the old file or the
new one, never a torn one. Reading uses safetensors (no pickle). Only the newest `keep` files stay
on disk; each may also be uploaded to an S3 bucket in the background.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from owtrain.errors import CheckpointCorrupt
from owtrain.s3 import S3Settings

log = logging.getLogger(__name__)
NAME = re.compile(r"^ckpt-(\d{10})\.safetensors$")
STATE_KEY = "owtrain_state"


def checkpoint_path(folder: Path, version: int) -> Path:
    return folder / f"ckpt-{version:010d}.safetensors"


def list_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """(version, path) of every complete checkpoint in `folder`, oldest first."""
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := NAME.match(p.name))]
    return sorted(found)


def write_checkpoint(folder: Path, version: int, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
    """Write one checkpoint atomically and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, version)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        flat = {k: v.detach().contiguous() for k, v in tensors.items()}
        save_file(flat, tmp, metadata={STATE_KEY: json.dumps(state)})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return final


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, state) of one checkpoint; CheckpointCorrupt if the file is not a valid checkpoint."""
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointCorrupt(f"checkpoint {path}: unreadable ({exc})") from exc
    return tensors, read_state(path)


def read_state(path: Path) -> dict[str, Any]:
    """Only the JSON state of a checkpoint (its safetensors header), without loading the tensors."""
    try:
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(min(header_len, 100 * 1024 * 1024)))
        state = json.loads(header["__metadata__"][STATE_KEY])
        if not isinstance(state, dict):
            raise TypeError(f"its state is a JSON {type(state).__name__}, not an object")
        return state
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointCorrupt(f"checkpoint {path}: unreadable ({exc})") from exc


def prune(folder: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints."""
    if keep <= 0:
        return
    for _, path in list_checkpoints(folder)[:-keep]:
        path.unlink(missing_ok=True)


class S3Uploader:
    """Uploads checkpoint files to S3 on one background thread (never on the request path)."""

    def __init__(self, target: S3Settings, prefix: str) -> None:
        from minio import Minio

        self.target, self.prefix = target, prefix
        self.client = Minio(target.host, access_key=target.access_key, secret_key=target.secret_key,
                            secure=target.secure, region=target.region)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ckpt-upload")

    def submit(self, path: Path) -> Future[Any]:
        return self.pool.submit(self._upload, path)

    def _upload(self, path: Path) -> None:
        key = f"{self.prefix}{path.name}"
        try:
            self.client.fput_object(self.target.bucket, key, str(path),
                                    content_type="application/vnd.owtrain.safetensors")
            log.info("uploaded %s to s3://%s/%s", path.name, self.target.bucket, key)
        except Exception as exc:  # an upload failure must not stop training; the disk copy stays
            log.warning("checkpoint upload of %s failed: %s", path.name, exc)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
