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
        out: torch.Tensor = self.classifier(self.features(x))
        return out


class MLP(nn.Module):
    """A two-hidden-layer perceptron for 1×28×28 inputs (flattened to 784)."""

    def __init__(self, num_classes: int = 10, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, hidden // 2), nn.ReLU(),
            nn.Linear(hidden // 2, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


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
        out: torch.Tensor = self.classifier(self.features(x))
        return out


def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm, not BatchNorm: the parameter server versions, averages, checkpoints and serves
    parameters only (`param_spec`), so BatchNorm's running statistics (buffers) would stay at their
    initial values on the server and its evaluation/export in eval mode would be wrong. GroupNorm
    normalises each sample by itself: it has no buffers, behaves the same in train and eval mode and
    for a batch of one, and does not care how the workers' batches are split (Wu & He, 2018)."""
    return nn.GroupNorm(32, channels)  # every stage has at least 64 channels


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection (a 1×1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(cout)
        # zero-γ (Goyal et al., 2017): each block starts as its shortcut, so the sum of eight residual
        # branches does not blow up the first steps at the learning rates LeNet5 uses
        nn.init.zeros_(self.norm2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(out)) + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 (He et al., 2016: four stages of two basic blocks, 64→128→256→512 channels) for
    small images: 11.17 M parameters, 44.7 MB of fp32, the size at which the parameter server's
    per-push cost and the network matter. The ImageNet stem (7×7 stride 2 + max-pool) would shrink
    a 28×28 image to 7×7 before the first block; the stem here is one 3×3 convolution with stride 2,
    so the stages see 14→7→4→2 (28×28) or 16→8→4→2 (32×32) pixels: a quarter of the compute of the
    CIFAR variant (stride 1), which matters on CPU invokers, with the same parameters."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, 64, 3, stride=2, padding=1, bias=False), _norm(64),
                                  nn.ReLU())
        stages: list[nn.Module] = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            stages += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.stages(self.stem(x)))
        return out


class ResNet18RGB(ResNet18):
    """ResNet18 for 3×32×32 inputs (CIFAR-10-like images)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__(num_classes, in_channels=3)


@dataclass(frozen=True)
class ModelInfo:
    """A registered model: how to build it and the input shape (C, H, W) it expects."""

    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]


MODELS: dict[str, ModelInfo] = {
    "lenet5": ModelInfo(LeNet5, (1, 28, 28)),
    "mlp": ModelInfo(MLP, (1, 28, 28)),
    "cnn32": ModelInfo(CNN32, (3, 32, 32)),
    "resnet18": ModelInfo(ResNet18, (1, 28, 28)),
    "resnet18-32": ModelInfo(ResNet18RGB, (3, 32, 32)),
}


def build_model(name: str, num_classes: int = 10, seed: int | None = 0) -> nn.Module:
    """Build a registered model (or `package.module:Class`) with deterministic initial weights.

    `seed` fixes the initial weights so every process that builds the model agrees; `None`
    leaves torch's global RNG as it is.
    """
    factory = model_factory(name)
    if seed is not None:
        torch.manual_seed(seed)
    return factory(num_classes=num_classes)


def model_factory(name: str) -> Callable[..., nn.Module]:
    """The class (factory) of a registered model or of an importable `package.module:Class` that
    is a `torch.nn.Module`; ValueError naming what is wrong and the valid choices. Commands call it
    while checking their options, before any work starts."""
    if name in MODELS:
        return MODELS[name].factory
    choices = f"choose one of {', '.join(sorted(MODELS))} or give package.module:Class"
    module_name, sep, cls_name = name.partition(":")
    if not sep or not module_name or not cls_name:
        raise ValueError(f"unknown model {name!r}; {choices}")
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except ImportError as exc:
        raise ValueError(f"model {name!r}: cannot import {module_name!r} ({exc}); {choices}") from None
    except AttributeError:
        raise ValueError(f"model {name!r}: module {module_name!r} has no {cls_name!r}; {choices}") from None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"model {name!r} is not a torch.nn.Module subclass; {choices}")
    return cls


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
