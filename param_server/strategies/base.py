"""The one aggregation interface: a strategy decides when and how much of an update to apply.

Routes authenticate and decode; the strategy sees only validated fp32 `Update`s and the
`ModelState`, and calls `ModelState.apply` when it decides to step. It runs on the single apply
thread, so it needs no locks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from param_server.model_state import ModelState

Tensors = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Update:
    """One validated push: fp32 tensors keyed by parameter name plus its tags."""

    worker: str
    seq: int
    base_version: int
    kind: str  # "grad" or "delta"
    tensors: Tensors
    samples: int = 0
    loss: float | None = None


@dataclass(frozen=True)
class Outcome:
    """What a strategy did with an update: `applied` now or `accepted` into a pending round."""

    status: str
    staleness: int
    refresh: bool


class Strategy(ABC):
    """Aggregation policy. Raise `StaleUpdate` from `submit` to make the worker refresh."""

    name = "base"

    @abstractmethod
    def submit(self, update: Update, model: ModelState) -> Outcome:
        """Take one update (whose staleness is `model.version - update.base_version`)."""

    def tick(self, model: ModelState, now: float) -> bool:
        """Periodic hook (sync time-outs); return True when it applied a step. Default: nothing."""
        return False

    def state_dict(self) -> tuple[Tensors, dict[str, Any]]:
        """Pending state to checkpoint (tensors, JSON). Default: stateless."""
        return {}, {}

    def load_state_dict(self, tensors: Tensors, meta: dict[str, Any]) -> None:
        """Restore what `state_dict` returned. Default: stateless, nothing to restore."""
        return None

    def describe(self) -> dict[str, Any]:
        """The strategy's name and parameters, for `/status` and `/registerWorker`."""
        return {"name": self.name}
