"""Model registry: the networks owtrain trains, built by name on the server and in every worker.

The server and the workers must build byte-identical parameter layouts, so models are chosen by
a registry name (or an importable `module:Class` for user models) and never shipped as code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class LeNet5(nn.Module):
    """The course lab's LeNet5 for 1×28×28 inputs: 61,706 parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),  # 6×14×14
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # 16×5×5
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class MLP(nn.Module):
    """A two-hidden-layer perceptron for 1×28×28 inputs (flattened to 784)."""

    def __init__(self, num_classes: int = 10, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CNN32(nn.Module):
    """A small CNN for 3×32×32 inputs (CIFAR-10-like images)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 32×16×16
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64×8×8
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 64×4×4
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(1024, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: how to build it and the input shape (C, H, W) it expects."""

    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]


MODELS: dict[str, ModelInfo] = {
    "lenet5": ModelInfo(LeNet5, (1, 28, 28)),
    "mlp": ModelInfo(MLP, (1, 28, 28)),
    "cnn32": ModelInfo(CNN32, (3, 32, 32)),
}


def build_model(name: str, num_classes: int = 10, seed: int | None = 0) -> nn.Module:
    """Build a registered model (or `package.module:Class`) with deterministic initial weights.

    `seed` fixes the initial weights so every process that builds the model agrees; `None`
    leaves torch's global RNG as it is.
    """
    if seed is not None:
        torch.manual_seed(seed)
    if name in MODELS:
        return MODELS[name].factory(num_classes=num_classes)
    if ":" in name:
        module_name, _, cls_name = name.partition(":")
        cls = getattr(importlib.import_module(module_name), cls_name)
        return cls(num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)} or give package.module:Class")


def input_shape(name: str) -> tuple[int, ...] | None:
    """The (C, H, W) input a registered model expects; None for `module:Class` models."""
    info = MODELS.get(name)
    return info.input_shape if info else None


def param_spec(model: nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Name → (shape, dtype) of every trainable parameter: what a valid update must match."""
    return {n: (tuple(p.shape), p.dtype) for n, p in model.named_parameters() if p.requires_grad}


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalar parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
