"""The server-side optimiser (SGD with momentum / Nesterov / weight decay, or Adam), its warm-up
schedule, and a pickle-free way to save and restore its state in a checkpoint.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from torch import nn

from owtrain.action_params import OPTIMIZERS  # the same optimisers as the workers' (delta mode)


def build_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float = 0.0, nesterov: bool = False,
    weight_decay: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """A torch optimiser over the model's parameters; raises ValueError for an unknown name."""
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=nesterov,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warm-up: step 0 runs at 1/warmup_steps of the learning rate, full rate from then on.

    Large stale-prone async jobs diverge when the first updates land at full rate.
    """
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, (step + 1) / warmup_steps)


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split `opt.state_dict()` into tensors (`optim::<param index>::<key>`) and JSON metadata."""
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim::{idx}::{key}"] = value.detach().clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer_state(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Restore what `optimizer_state` saved."""
    state: dict[int, dict[str, Any]] = defaultdict(dict)
    for name, value in tensors.items():
        _, idx, key = name.split("::", 2)
        state[int(idx)][key] = value
    for idx, entry in meta.get("scalars", {}).items():
        state[int(idx)].update(entry)
    opt.load_state_dict({"state": dict(state), "param_groups": meta["param_groups"]})


def reset_optimizer_state(opt: torch.optim.Optimizer) -> None:
    """Forget momentum / Adam moments (after a rollback they belong to a discarded trajectory)."""
    opt.state = defaultdict(dict)
