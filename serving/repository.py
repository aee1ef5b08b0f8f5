"""The model repository: numbered version folders per model, labels, a version policy, publishing.

Layout (TensorFlow Serving's, with owtrain's files)::

    <root>/<model>/labels.json            {"stable": 2, "canary": 3, "canary_percent": 10, "history": [...]}
    <root>/<model>/<n>/model.safetensors  the weights (safetensors: nothing is unpickled)
    <root>/<model>/<n>/meta.json          architecture, input signature, validation/test scores, sha256

`meta.json` is written last and names the weights' sha256, so a version is complete exactly when
its meta.json exists and matches: a server scanning while a run publishes never loads half a
version. Dropping a new numbered folder in deploys it (the server rescans); labels move traffic
(`owtrain serve promote` / `rollback` rewrite labels.json, which the server re-reads).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from owtrain import codec
from owtrain.errors import BadRequest, ConfigError, ObjectMissing
from serving.signature import Signature
from serving.storage import LocalStorage, RepoStorage

FORMAT = "owtrain-model/1"
WEIGHTS, META, LABELS = "model.safetensors", "meta.json", "labels.json"
LABEL_NAMES = ("stable", "canary")


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


@dataclass(frozen=True)
class Labels:
    """Which version `stable` and `canary` name, and the share of traffic the canary gets (0..100).
    `history` lists earlier stable versions, newest last, for `rollback`."""

    stable: int | None = None
    canary: int | None = None
    canary_percent: float = 0.0
    history: tuple[int, ...] = ()

    def get(self, label: str) -> int | None:
        if label not in LABEL_NAMES:
            raise ObjectMissing(f"unknown label {label!r}; labels are {', '.join(LABEL_NAMES)}")
        return self.stable if label == "stable" else self.canary

    def to_json(self) -> dict[str, Any]:
        return {"stable": self.stable, "canary": self.canary, "canary_percent": self.canary_percent,
                "history": list(self.history)}

    @classmethod
    def from_json(cls, data: Any) -> Labels:
        if not isinstance(data, dict):
            return cls()
        def version(v: Any) -> int | None:
            return int(v) if isinstance(v, int) and not isinstance(v, bool) else None
        return cls(stable=version(data.get("stable")), canary=version(data.get("canary")),
                   canary_percent=float(data.get("canary_percent") or 0.0),
                   history=tuple(int(v) for v in data.get("history") or () if isinstance(v, int)))

    def with_canary(self, version: int, percent: float) -> Labels:
        if not 0.0 <= percent <= 100.0:
            raise ConfigError("--percent must be in [0, 100]")
        return replace(self, canary=version, canary_percent=percent)

    def promoted(self) -> Labels:
        """The canary becomes stable (the old stable goes to the history)."""
        if self.canary is None:
            raise ConfigError("there is no canary to promote; set one with `owtrain serve canary`")
        history = self.history + ((self.stable,) if self.stable is not None else ())
        return Labels(stable=self.canary, canary=None, canary_percent=0.0, history=history)

    def rolled_back(self) -> Labels:
        """Drop the canary if there is one; otherwise make the previous stable version stable again."""
        if self.canary is not None:
            return replace(self, canary=None, canary_percent=0.0)
        if not self.history:
            raise ConfigError("nothing to roll back to: no canary and no earlier stable version")
        return Labels(stable=self.history[-1], canary=None, canary_percent=0.0, history=self.history[:-1])


def parse_policy(text: str) -> tuple[str, tuple[int, ...]]:
    """`latest:N` (default `latest:1`), `all` or `specific:V1,V2` → (kind, numbers)."""
    kind, _, rest = text.partition(":")
    try:
        if kind == "latest":
            n = int(rest or 1)
            if n < 1:
                raise ValueError
            return "latest", (n,)
        if kind == "all" and not rest:
            return "all", ()
        if kind == "specific" and rest:
            return "specific", tuple(int(v) for v in rest.split(","))
    except ValueError:
        pass
    raise ConfigError(f"version policy {text!r}: use latest:N, all or specific:V1,V2")


def select_versions(policy: tuple[str, tuple[int, ...]], available: list[int], labels: Labels) -> list[int]:
    """The versions to serve: the policy's choice plus any labelled version that exists."""
    kind, numbers = policy
    if kind == "latest":
        chosen = set(sorted(available)[-numbers[0]:])
    elif kind == "all":
        chosen = set(available)
    else:
        chosen = set(numbers) & set(available)
    chosen |= {v for v in (labels.stable, labels.canary) if v is not None and v in available}
    return sorted(chosen)


class Repository:
    """A model repository on some `RepoStorage`; every call reads the storage afresh."""

    def __init__(self, storage: RepoStorage) -> None:
        self.storage = storage

    def describe(self) -> str:
        return self.storage.describe()

    def models(self) -> list[str]:
        return sorted({key.split("/", 1)[0] for key in self.storage.list("") if "/" in key})

    def versions(self, name: str) -> list[int]:
        """Complete versions (their meta.json exists), ascending."""
        found = set()
        for key in self.storage.list(f"{name}/"):
            parts = key.split("/")
            if len(parts) == 3 and parts[1].isdigit() and parts[2] == META:
                found.add(int(parts[1]))
        return sorted(found)

    def meta(self, name: str, version: int) -> VersionMeta:
        where = f"{self.describe()}/{name}/{version}/{META}"
        data = self.storage.read(f"{name}/{version}/{META}")
        if data is None:
            raise ObjectMissing(f"model {name!r} has no version {version}")
        try:
            return VersionMeta.from_json(json.loads(data), where)
        except ValueError as exc:
            raise BadRequest(f"{where}: not JSON: {exc}") from exc

    def weights(self, name: str, version: int, meta: VersionMeta) -> dict[str, torch.Tensor]:
        """The version's tensors, checked against the sha256 its meta.json names."""
        data = self.storage.read(f"{name}/{version}/{WEIGHTS}")
        if data is None:
            raise ObjectMissing(f"model {name!r} version {version} has no {WEIGHTS}")
        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise BadRequest(f"model {name!r} version {version}: {WEIGHTS} does not match its sha256")
        return codec.decode_tensors(data)[0]

    def labels(self, name: str) -> Labels:
        data = self.storage.read(f"{name}/{LABELS}")
        try:
            return Labels.from_json(json.loads(data)) if data else Labels()
        except ValueError:
            return Labels()

    def set_labels(self, name: str, labels: Labels) -> None:
        for label in LABEL_NAMES:
            v = labels.get(label)
            if v is not None and v not in self.versions(name):
                raise ConfigError(f"model {name!r} has no version {v} to label {label!r} "
                                  f"(versions: {self.versions(name)})")
        self.storage.write(f"{name}/{LABELS}", json.dumps(labels.to_json(), indent=2).encode())

    def publish(self, name: str, arch: str, tensors: Mapping[str, torch.Tensor], signature: Signature,
                scores: Mapping[str, Mapping[str, float | None]] | None = None,
                source: Mapping[str, Any] | None = None) -> int:
        """Write a new version (the next number) and return it: the weights first, meta.json last."""
        if not name or "/" in name or name.startswith("."):
            raise ConfigError(f"model name {name!r} must be one path segment")
        data = codec.encode_tensors(tensors)
        version = max(self.versions(name), default=0) + 1
        meta = VersionMeta(model=arch, num_classes=len(signature.classes), signature=signature,
                           sha256=hashlib.sha256(data).hexdigest(), scores={k: dict(v) for k, v in (scores or {}).items()},
                           created=time.time(), source=dict(source or {}))
        self.storage.write(f"{name}/{version}/{WEIGHTS}", data)
        self.storage.write(f"{name}/{version}/{META}", json.dumps(meta.to_json(), indent=2).encode())
        return version


def copy_version(source: Repository, name: str, version: int, target: Repository) -> int:
    """Publish `source`'s version of `name` as the next version in `target` (a run's local version
    into a shared S3 repository, say): the same bytes, checked against their sha256 on the way."""
    meta = source.meta(name, version)
    data = source.storage.read(f"{name}/{version}/{WEIGHTS}")
    if data is None or hashlib.sha256(data).hexdigest() != meta.sha256:
        raise BadRequest(f"{source.describe()}/{name}/{version}: {WEIGHTS} is missing or does not match its sha256")
    new = max(target.versions(name), default=0) + 1
    target.storage.write(f"{name}/{new}/{WEIGHTS}", data)
    copied = replace(meta, source={**meta.source, "copied_from": f"{source.describe()}/{name}/{version}"})
    target.storage.write(f"{name}/{new}/{META}", json.dumps(copied.to_json(), indent=2).encode())
    return new


def publish(root: Path | RepoStorage, name: str, arch: str, tensors: Mapping[str, torch.Tensor],
            signature: Signature, scores: Mapping[str, Mapping[str, float | None]] | None = None,
            source: Mapping[str, Any] | None = None) -> int:
    """Publish `tensors` (a state dict of registered model `arch`) as the next version of `name`
    in the repository at `root` (a folder, or any `RepoStorage`); returns the version number."""
    storage = LocalStorage(root) if isinstance(root, Path) else root
    return Repository(storage).publish(name, arch, tensors, signature, scores, source)
