"""Shared pieces of the serving tests: a seeded LeNet5 published into a repository, MNIST test
images, and a prediction server as its own process over loopback HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from owtrain.model_signature import Signature
from owtrain.models import build_model
from serving.repository import publish

MNIST = Signature(shape=(1, 28, 28), classes=tuple(str(d) for d in range(10)), mean=(0.1307,), std=(0.3081,))


def seeded_state(seed: int) -> dict[str, torch.Tensor]:
    """A LeNet5's initial weights for `seed` (different seeds: models that disagree somewhere)."""
    return build_model("lenet5", seed=seed).state_dict()


def publish_seeded(root: Path, seed: int, name: str = "mnist", scores: dict | None = None) -> int:
    return publish(root, name, "lenet5", seeded_state(seed), MNIST,
                   scores or {"test": {"accuracy": None, "loss": None}}, {"seed": seed})


def reference_probs(state: dict[str, torch.Tensor], raw: np.ndarray) -> np.ndarray:
    """The model's own forward pass on raw pixels (N, 1, 28, 28), normalised as in training."""
    net = build_model("lenet5", seed=None)
    net.load_state_dict(state)
    net.eval()
    x = (torch.from_numpy(raw.astype(np.float32)) / 255.0 - 0.1307) / 0.3081
    with torch.inference_mode():
        return torch.softmax(net(x), dim=1).numpy()


def random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 28, 28)).astype(np.uint8)
