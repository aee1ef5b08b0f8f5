"""Pure aggregation math, kept apart from HTTP and policy so it can be tested on its own.

Every function takes and returns plain `dict[str, Tensor]` keyed by parameter name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

Tensors = dict[str, torch.Tensor]


def mean(updates: Sequence[Mapping[str, torch.Tensor]]) -> Tensors:
    """The element-wise mean of updates with the same keys (the sync strategy's average).

    Summed in float64 so that K slices of one batch average to the full-batch gradient to 1e-6.
    """
    if not updates:
        raise ValueError("cannot average zero updates")
    out: Tensors = {}
    for name, first in updates[0].items():
        acc = torch.zeros(first.shape, dtype=torch.float64)
        for upd in updates:
            acc += upd[name].to(torch.float64)
        out[name] = (acc / len(updates)).to(first.dtype)
    return out


def staleness_scale(staleness: int, damping: float) -> float:
    """Weight of an update computed `staleness` versions ago: (1 + staleness) ** -damping.

    damping 0 applies stale updates at full weight; 0.5 is the usual 1/sqrt(1 + s) rule.
    """
    if staleness < 0:
        raise ValueError(f"staleness must be >= 0, got {staleness}")
    return float((1.0 + staleness) ** -damping)


def scale(tensors: Mapping[str, torch.Tensor], factor: float) -> Tensors:
    """Every tensor multiplied by `factor` (a new dict; inputs are left alone)."""
    return {k: v * factor for k, v in tensors.items()}


@torch.no_grad()
def apply_delta(params: Mapping[str, nn.Parameter], delta: Mapping[str, torch.Tensor], alpha: float) -> None:
    """Model averaging: add `alpha * delta` to each named parameter in place."""
    for name, d in delta.items():
        params[name].add_(d.to(params[name].dtype), alpha=alpha)


def set_grads(params: Mapping[str, nn.Parameter], grads: Mapping[str, torch.Tensor], factor: float) -> None:
    """Load `factor * grads` into the parameters' `.grad` so a torch optimiser can step on them.

    With factor 1 the caller's tensors become the gradients as they are (no copy): the server
    owns every decoded update and never reuses it after the step.
    """
    for name, p in params.items():
        if name in grads:
            g = grads[name].to(p.dtype)
            p.grad = g if factor == 1.0 else g * factor
