"""One loaded model version: the network built from its spec, its weights, and a batch forward pass.

The network is built by registry name (`owtrain.models`), never unpickled; its weights are the
version's safetensors, checked against the parameter layout before they are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from owtrain import codec
from owtrain.errors import BadRequest
from owtrain.model_repository_layout import VersionMeta
from owtrain.models import build_model, param_spec
from serving.inputs import normalise
from serving.repository import Repository


@dataclass
class ServedVersion:
    """A version ready to answer: `forward(raw)` maps raw pixels (N, C, H, W) to probabilities (N, K)."""

    name: str
    version: int
    meta: VersionMeta
    net: torch.nn.Module

    @torch.inference_mode()
    def forward(self, raw: np.ndarray) -> np.ndarray:
        logits = self.net(normalise(raw, self.meta.signature))
        return torch.softmax(logits.float(), dim=1).numpy()


def load_version(repo: Repository, name: str, version: int) -> ServedVersion:
    """Build, fill and freeze one version from the repository (BadRequest if its files disagree)."""
    meta = repo.meta(name, version)
    tensors = repo.weights(name, version, meta)
    try:
        net = build_model(meta.model, meta.num_classes, seed=None)
    except (ValueError, ImportError, AttributeError) as exc:
        raise BadRequest(f"model {name!r} version {version}: cannot build {meta.model!r}: {exc}") from exc
    spec = param_spec(net)
    try:
        codec.validate_tensors({k: v for k, v in tensors.items() if k in spec}, spec)
    except BadRequest as exc:
        raise BadRequest(f"model {name!r} version {version}: {exc}") from exc
    net.load_state_dict(tensors, strict=True)
    net.eval()
    return ServedVersion(name=name, version=version, meta=meta, net=net)
