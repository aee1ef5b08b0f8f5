"""The model repository as the server reads it: versions, labels, a version policy, publishing.

The layout and the writing of one version are foundation (`owtrain.model_repository_layout`,
shared with the parameter server's `/admin/publish`); this module reads versions back (weights
checked against their sha256), keeps the labels and chooses what to serve. Dropping a new numbered folder in deploys it (the server rescans); labels move traffic
(`owtrain serve promote` / `rollback` rewrite labels.json, which the server re-reads).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from owtrain import codec
from owtrain.errors import BadRequest, ConfigError, ObjectMissing
from owtrain.model_repository_layout import (
    LABELS,
    META,
    WEIGHTS,
    LocalStorage,
    RepoStorage,
    VersionMeta,
    complete_versions,
    publish_tensors,
    write_version,
)
from owtrain.model_signature import Signature

LABEL_NAMES = ("stable", "canary")


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
        return complete_versions(self.storage, name)

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
        return publish_tensors(self.storage, name, arch, tensors, signature, scores, source)


def copy_version(source: Repository, name: str, version: int, target: Repository) -> int:
    """Publish `source`'s version of `name` as the next version in `target` (a run's local version
    into a shared S3 repository, say): the same bytes, checked against their sha256 on the way."""
    meta = source.meta(name, version)
    data = source.storage.read(f"{name}/{version}/{WEIGHTS}")
    if data is None or hashlib.sha256(data).hexdigest() != meta.sha256:
        raise BadRequest(f"{source.describe()}/{name}/{version}: {WEIGHTS} is missing or does not match its sha256")
    copied = replace(meta, source={**meta.source, "copied_from": f"{source.describe()}/{name}/{version}"})
    return write_version(target.storage, name, data, copied)


def publish(root: Path | RepoStorage, name: str, arch: str, tensors: Mapping[str, torch.Tensor],
            signature: Signature, scores: Mapping[str, Mapping[str, float | None]] | None = None,
            source: Mapping[str, Any] | None = None) -> int:
    """Publish `tensors` (a state dict of registered model `arch`) as the next version of `name`
    in the repository at `root` (a folder, or any `RepoStorage`); returns the version number."""
    storage = LocalStorage(root) if isinstance(root, Path) else root
    return Repository(storage).publish(name, arch, tensors, signature, scores, source)
