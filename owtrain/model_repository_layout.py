"""How a model repository is laid out and how one version is written into it.

Layout (TensorFlow Serving's numbered folders, with owtrain's files)::

    <root>/<model>/labels.json            {"stable": 2, "canary": 3, "canary_percent": 10, "history": [...]}
    <root>/<model>/<n>/model.safetensors  the weights (safetensors: nothing is unpickled)
    <root>/<model>/<n>/meta.json          architecture, input signature, validation/test scores, sha256

It is foundation because two publishers on different floors write versions: `owtrain local`
(through serving/, the top floor) and the parameter server's `/admin/publish` (param_server/, a
part, which must not import serving). Reading, labels and the version policy stay in
`serving.repository`. `meta.json` is written last and names the weights' sha256, so a version is
complete exactly when its meta.json exists and matches: a reader scanning during a publish never
loads half a version.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from owtrain import codec
from owtrain.errors import BadRequest, ConfigError
from owtrain.model_signature import Signature

FORMAT = "owtrain-model/1"
WEIGHTS, META, LABELS = "model.safetensors", "meta.json", "labels.json"


class RepoStorage(ABC):
    """Where a repository's files live; keys are '/'-separated paths relative to its root."""

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
    """A folder on this machine (`RUN_DIR/models` by default); writes are a temp file + rename."""

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
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def describe(self) -> str:
        return str(self.root)


@dataclass(frozen=True)
class VersionMeta:
    """What `meta.json` says about one version. `scores` maps a split (`validation`, `test`) to
    `{"accuracy", "loss"}`; a split the run did not measure is absent."""

    model: str
    num_classes: int
    signature: Signature
    sha256: str
    scores: dict[str, dict[str, float | None]] = field(default_factory=dict)
    created: float = 0.0
    source: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "model": self.model, "num_classes": self.num_classes,
                "signature": self.signature.to_json(), "sha256": self.sha256, "scores": self.scores,
                "created": self.created, "source": self.source}

    @classmethod
    def from_json(cls, data: Any, where: str) -> VersionMeta:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BadRequest(f"{where}: not an {FORMAT} meta.json")
        try:
            return cls(model=str(data["model"]), num_classes=int(data["num_classes"]),
                       signature=Signature.from_json(data["signature"]), sha256=str(data["sha256"]),
                       scores=dict(data.get("scores") or {}), created=float(data.get("created") or 0.0),
                       source=dict(data.get("source") or {}))
        except (KeyError, TypeError, ValueError, BadRequest) as exc:
            raise BadRequest(f"{where}: {exc}") from exc


def check_model_name(name: str) -> None:
    """A model name is one path segment (it becomes a folder or a key prefix)."""
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ConfigError(f"model name {name!r} must be one path segment")


def default_model_name(manifest: Mapping[str, Any], arch: str) -> str:
    """The name a version is published under by default: the shard manifest's dataset (`mnist`),
    made one safe path segment, else the architecture's name."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "-", str(manifest.get("dataset") or arch)).strip(".-") or arch


def complete_versions(storage: RepoStorage, name: str) -> list[int]:
    """The versions of `name` whose meta.json exists, ascending."""
    found = set()
    for key in storage.list(f"{name}/"):
        parts = key.split("/")
        if len(parts) == 3 and parts[1].isdigit() and parts[2] == META:
            found.add(int(parts[1]))
    return sorted(found)


def write_version(storage: RepoStorage, name: str, weights: bytes, meta: VersionMeta) -> int:
    """Write `weights` and `meta` as the next version of `name` (the highest plus one) and return
    its number: the weights first, meta.json last."""
    check_model_name(name)
    if hashlib.sha256(weights).hexdigest() != meta.sha256:
        raise BadRequest(f"the weights of {name!r} do not match the sha256 their meta.json names")
    version = max(complete_versions(storage, name), default=0) + 1
    storage.write(f"{name}/{version}/{WEIGHTS}", weights)
    storage.write(f"{name}/{version}/{META}", json.dumps(meta.to_json(), indent=2).encode())
    return version


def publish_tensors(storage: RepoStorage, name: str, arch: str, tensors: Mapping[str, torch.Tensor],
                    signature: Signature, scores: Mapping[str, Mapping[str, float | None]] | None = None,
                    source: Mapping[str, Any] | None = None) -> int:
    """Publish `tensors` (a state dict of registered model `arch`) as the next version of `name`;
    returns the version number."""
    data = codec.encode_tensors(tensors)
    meta = VersionMeta(model=arch, num_classes=len(signature.classes), signature=signature,
                       sha256=hashlib.sha256(data).hexdigest(),
                       scores={k: dict(v) for k, v in (scores or {}).items()},
                       created=time.time(), source=dict(source or {}))
    return write_version(storage, name, data, meta)
