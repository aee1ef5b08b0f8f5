"""Synchronous SGD: average the updates of K distinct workers computed on the current version,
then take one step.

Stragglers are handled two ways, both explicit: an update for an older version (a worker that
lost the race, i.e. a backup worker when more than K run) is rejected as stale so the worker
refreshes; and with `timeout=T`, a round that has waited T seconds since its first update is
applied with whatever arrived, provided at least `min` updates did. A worker contributes once
per round: a second update from it for the same version (it kept training while the round was
open) is rejected as stale, so it pulls the next version instead of counting twice in the mean.
"""

from __future__ import annotations

import time
from typing import Any

from owtrain.errors import BadRequest, StaleUpdate
from param_server.aggregate import mean
from param_server.model_state import ModelState
from param_server.strategies.base import Outcome, Strategy, Tensors, Update


class SyncStrategy(Strategy):
    """`sync:k=K,timeout=T,min=M` (timeout 0 = wait for all K forever)."""

    name = "sync"

    def __init__(self, k: int = 2, timeout: float = 0.0, min: int = 1) -> None:  # noqa: A002
        if k < 1 or min < 1 or min > k:
            raise ValueError(f"sync needs k >= 1 and 1 <= min <= k, got k={k} min={min}")
        self.k, self.timeout, self.min = k, timeout, min
        self.pending: list[Update] = []
        self.round_started = 0.0

    def submit(self, update: Update, model: ModelState) -> Outcome:
        if update.base_version != model.version:
            raise StaleUpdate(
                f"sync round for version {model.version} is open; this update is for "
                f"{update.base_version}: pull and recompute", model.version)
        if any(u.worker == update.worker for u in self.pending):
            raise StaleUpdate(
                f"worker {update.worker!r} already contributed to the sync round for version {model.version}; "
                "wait for the round to close (long-poll pull) and push an update computed on the next version",
                model.version)
        if self.pending and self.pending[0].kind != update.kind:
            raise BadRequest(f"this round aggregates {self.pending[0].kind!r} updates, got {update.kind!r}")
        if not self.pending:
            self.round_started = time.monotonic()
        self.pending.append(update)
        if len(self.pending) >= self.k:
            self._step(model)
            return Outcome("applied", 0, refresh=False)
        return Outcome("accepted", 0, refresh=False)

    def tick(self, model: ModelState, now: float) -> bool:
        late = self.timeout > 0 and self.pending and now - self.round_started >= self.timeout
        if late and len(self.pending) >= self.min:
            self._step(model)
            return True
        return False

    def _step(self, model: ModelState) -> None:
        kind = self.pending[0].kind
        model.apply(kind, mean([u.tensors for u in self.pending]))
        self.pending = []

    def state_dict(self) -> tuple[Tensors, dict[str, Any]]:
        tensors = {f"pending::{i}::{n}": t for i, u in enumerate(self.pending) for n, t in u.tensors.items()}
        meta = [{"worker": u.worker, "seq": u.seq, "base_version": u.base_version, "kind": u.kind,
                 "samples": u.samples, "loss": u.loss} for u in self.pending]
        return tensors, {"pending": meta}

    def load_state_dict(self, tensors: Tensors, meta: dict[str, Any]) -> None:
        self.pending = []
        for i, m in enumerate(meta.get("pending", [])):
            prefix = f"pending::{i}::"
            own = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
            self.pending.append(Update(tensors=own, **m))
        self.round_started = time.monotonic()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "timeout": self.timeout, "min": self.min}
