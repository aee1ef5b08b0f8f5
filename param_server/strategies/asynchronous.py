"""Asynchronous SGD: apply every update at once, damped by how stale it is."""

from __future__ import annotations

from typing import Any

from param_server.aggregate import staleness_scale
from param_server.model_state import ModelState
from param_server.strategies.base import Outcome, Strategy, Update


class AsyncStrategy(Strategy):
    """`async:damping=D`: weight (1 + staleness) ** -D; D = 0 is plain Hogwild-style async SGD."""

    name = "async"

    def __init__(self, damping: float = 0.5) -> None:
        if damping < 0:
            raise ValueError(f"async damping must be >= 0, got {damping}")
        self.damping = damping

    def submit(self, update: Update, model: ModelState) -> Outcome:
        staleness = model.version - update.base_version
        model.apply(update.kind, update.tensors, staleness_scale(staleness, self.damping))
        return Outcome("applied", staleness, refresh=staleness > 0)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "damping": self.damping}
