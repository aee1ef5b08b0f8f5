"""Small builders shared by the parameter-server tests: models, batches, gradients, push metadata."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from owtrain.models import build_model


def batch(n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic LeNet5-shaped batch (n, 1, 28, 28) with labels in 0..9."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)


def grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of the mean cross-entropy of `model` on (x, y), keyed by parameter name."""
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def lenet(params: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """The server's initial LeNet5 (seed 0), or one loaded with `params`."""
    model = build_model("lenet5")
    if params is not None:
        model.load_state_dict(dict(params), strict=False)
    return model


def meta(worker: str, seq: int, base: int, kind: str = "grad", samples: int = 8, loss: float = 1.0) -> dict:
    return {"worker": worker, "seq": seq, "base_version": base, "kind": kind, "samples": samples, "loss": loss}


def max_diff(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> float:
    """Largest absolute element difference over tensors with the same names."""
    assert a.keys() == b.keys()
    return max(float((a[k].detach() - b[k].detach()).abs().max()) for k in a)
