"""Turning local batches into one update to push: a mean gradient or a model delta.

`grad` mode: gradients accumulate over the group's batches and the push is their mean (each
batch's loss is already a per-sample mean, so dividing by the number of batches gives the mean
over the group); the gradients are zeroed after every push, so nothing leaks into the next one.
`delta` mode (local SGD): the local optimiser steps after every batch and the push is the
parameters' change since the group began (`local - base`); the server adds it to its model.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.adam import adam
from torch.optim.sgd import sgd

from owtrain.action_params import OPTIMIZERS
from owtrain.codec import validate_tensors
from owtrain.models import param_spec

Tensors = dict[str, torch.Tensor]


class LocalOptimizer:
    """The local optimiser of delta mode: `sgd` (with optional momentum) or `adam`.

    It runs torch's functional `sgd`/`adam` (the math of `torch.optim.SGD`/`Adam`) on its own
    state, because the first `torch.optim.Optimizer` built in a process imports `torch._dynamo`:
    about 70 MB of resident memory and a second of cold start, in an action limited to 256 MB.
    """

    def __init__(self, name: str, params: list[torch.Tensor], lr: float, momentum: float = 0.0) -> None:
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; choose {' or '.join(OPTIMIZERS)}")
        self.name, self.params, self.lr, self.momentum = name, params, lr, momentum
        self.momentum_buffers: list[torch.Tensor | None] = [None] * len(params)
        self.exp_avgs = [torch.zeros_like(p) for p in params] if name == "adam" else []
        self.exp_avg_sqs = [torch.zeros_like(p) for p in params] if name == "adam" else []
        self.steps = [torch.tensor(0.0) for _ in params] if name == "adam" else []

    @torch.no_grad()
    def step(self) -> None:
        """One step from the parameters' current `.grad` (missing gradients count as zero)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        if self.name == "sgd":
            sgd(self.params, grads, self.momentum_buffers, weight_decay=0.0, momentum=self.momentum, lr=self.lr,
                dampening=0.0, nesterov=False, maximize=False, foreach=False)
        else:
            adam(self.params, grads, self.exp_avgs, self.exp_avg_sqs, [], self.steps, foreach=False,
                 amsgrad=False, beta1=0.9, beta2=0.999, lr=self.lr, weight_decay=0.0, eps=1e-8, maximize=False)


def decayed_lr(lr: float, decay: float, epochs: float) -> float:
    """Inverse-time decay, lr / (1 + decay * epochs): `epochs` is how far this worker is through its
    shard (the cursor's epoch plus the fraction done), so a resumed or re-invoked chain continues
    the schedule exactly where it was."""
    return lr / (1.0 + decay * epochs)


class UpdateGroup:
    """Accumulates batches into the next update of `model` (see the module doc for the two modes)."""

    def __init__(self, model: nn.Module, mode: str, optimizer: LocalOptimizer | None) -> None:
        if mode == "delta" and optimizer is None:
            raise ValueError("delta mode needs a local optimizer")
        self.model = model
        self.mode = mode
        self.optimizer = optimizer
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.batches = 0
        self.base: Tensors = {}

    def train_batch(self, x: torch.Tensor, y: torch.Tensor) -> float:
        """Forward and backward one batch (and a local step in delta mode); returns its mean loss."""
        if self.batches == 0:
            self._begin()
        loss = F.cross_entropy(self.model(x), y)
        if self.optimizer is not None:  # delta: a local step from this batch's gradient alone
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        else:
            loss.backward()  # grad: accumulates into .grad until take()
        self.batches += 1
        return float(loss.detach())

    def take(self) -> Tensors:
        """The update for the batches since the last take (fp32, on CPU); resets the group."""
        if self.batches == 0:
            raise ValueError("no batches trained since the last update")
        with torch.no_grad():
            if self.mode == "grad":
                update = {n: _grad(p) / self.batches for n, p in self.params.items()}
            else:
                update = {n: p.detach() - self.base[n] for n, p in self.params.items()}
        self.model.zero_grad(set_to_none=True)
        self.batches = 0
        return {n: t.to("cpu", torch.float32) for n, t in update.items()}

    def _begin(self) -> None:
        self.model.zero_grad(set_to_none=True)
        if self.mode == "delta":
            self.base = {n: p.detach().clone() for n, p in self.params.items()}


def _grad(p: torch.Tensor) -> torch.Tensor:
    return p.grad if p.grad is not None else torch.zeros_like(p)


def load_params(model: nn.Module, tensors: Tensors) -> None:
    """Copy server parameters into `model` after checking every name, shape, dtype and value."""
    validate_tensors(tensors, param_spec(model))
    named = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in tensors.items():
            named[name].copy_(value)
