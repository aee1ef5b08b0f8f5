"""Bounded staleness (stale-synchronous parallel): updates at most S versions old are applied in
full; older ones are rejected (the worker must refresh) or applied damped, by choice.
"""

from __future__ import annotations

from typing import Any

from owtrain.errors import StaleUpdate
from param_server.aggregate import staleness_scale
from param_server.model_state import ModelState
from param_server.strategies.base import Outcome, Strategy, Update

MODES = ("reject", "damp")


class BoundedStrategy(Strategy):
    """`bounded:s=S,mode=reject|damp,damping=D` (damp weight: (1 + staleness - S) ** -D)."""

    name = "bounded"

    def __init__(self, s: int = 4, mode: str = "reject", damping: float = 1.0) -> None:
        if s < 0:
            raise ValueError(f"bounded staleness s must be >= 0, got {s}")
        if mode not in MODES:
            raise ValueError(f"bounded mode must be one of {MODES}, got {mode!r}")
        self.s, self.mode, self.damping = s, mode, damping

    def submit(self, update: Update, model: ModelState) -> Outcome:
        staleness = model.version - update.base_version
        if staleness <= self.s:
            model.apply(update.kind, update.tensors)
            return Outcome("applied", staleness, refresh=staleness > 0)
        if self.mode == "reject":
            raise StaleUpdate(
                f"update is {staleness} versions old, more than the bound {self.s}: pull and recompute",
                model.version,
            )
        model.apply(update.kind, update.tensors, staleness_scale(staleness - self.s, self.damping))
        return Outcome("applied", staleness, refresh=True)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "s": self.s, "mode": self.mode, "damping": self.damping}
