"""Publishing a finished training run into its model repository (`RUN_DIR/models/<dataset>/<n>/`).

The input signature comes from the run's test shard manifest (classes, per-channel mean/std,
pixel scale, shape), so the served model normalises exactly as its workers did; the scores are
whatever the run measured (test, and validation when the run held one out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from owtrain.errors import ConfigError
from owtrain.model_repository_layout import default_model_name
from owtrain.model_signature import signature_from_manifest
from owtrain.naming import held_out_shard
from serving.repository import publish

MODELS_DIR = "models"


@dataclass(frozen=True)
class Published:
    name: str
    version: int
    path: Path

    def command(self, run_dir: Path) -> str:
        return f"owtrain serve --run-dir {run_dir}"


def publish_run(run_dir: Path, arch: str, model: nn.Module, shards_dir: Path,
                scores: Mapping[str, Mapping[str, float | None]], source: Mapping[str, Any] | None = None) -> Published:
    """Publish `model` as the next version of the run's dataset model in RUN_DIR/models."""
    from dataset_packer.shard import read_shard

    test = held_out_shard(shards_dir, "test")
    if test is None:
        raise ConfigError(f"no test shard in {shards_dir}: cannot tell the model's input signature")
    manifest = read_shard(test).manifest
    name = default_model_name(manifest, arch)
    root = run_dir / MODELS_DIR
    version = publish(root, name, arch, model.state_dict(), signature_from_manifest(manifest),
                      {k: dict(v) for k, v in scores.items() if v}, source)
    return Published(name, version, root / name / str(version))
