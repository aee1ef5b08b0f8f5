"""The versioned model: parameters, server optimiser, version counter and recent snapshots.

Only the apply thread mutates a `ModelState`; everyone else reads immutable `Snapshot`s, so
pulls and evaluation never see a half-applied step and never take a lock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from owtrain.codec import encode_into, encode_tensors
from owtrain.models import param_spec
from param_server import aggregate
from param_server.optim import load_optimizer_state, optimizer_state, reset_optimizer_state, warmup_factor

Tensors = dict[str, torch.Tensor]


@dataclass
class Snapshot:
    """The parameters at one version (copied; never mutated). `body()` is the pull payload.

    `ModelState.snapshot` copies the parameters once, straight into the encoded pull payload, and
    `tensors` are views of it: a pull sends the cached bytes, and nothing is cloned or encoded
    twice. (A snapshot made from plain tensors encodes on first use.)"""

    version: int
    tensors: Tensors
    _body: bytes | bytearray | None = field(default=None, repr=False)

    def body(self) -> bytes | bytearray:
        """The safetensors payload (metadata `version`); never modified once made."""
        if self._body is None:
            self._body = encode_tensors(self.tensors, {"version": str(self.version)})
        return self._body

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


class ModelState:
    """One model and its optimiser; `apply` performs one step and bumps the version."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, warmup_steps: int = 0,
                 server_lr: float = 1.0) -> None:
        self.model = model
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.server_lr = server_lr
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.spec = param_spec(model)
        self.params = {n: p for n, p in model.named_parameters() if n in self.spec}
        self.version = 0
        self.steps = 0

    def apply(self, kind: str, tensors: Tensors, factor: float = 1.0) -> int:
        """Apply one update (`grad`: an optimiser step; `delta`: add server_lr * delta) and
        return the new version. `factor` is the strategy's weight (e.g. staleness damping)."""
        warm = warmup_factor(self.steps, self.warmup_steps)
        if kind == "grad":
            for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
                group["lr"] = base * warm
            aggregate.set_grads(self.params, tensors, factor)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        elif kind == "delta":
            aggregate.apply_delta(self.params, tensors, self.server_lr * warm * factor)
        else:
            raise ValueError(f"unknown update kind {kind!r}")
        self.steps += 1
        self.version += 1
        return self.version

    def snapshot(self) -> Snapshot:
        """A frozen copy of the current parameters, made as the encoded pull payload (one copy)."""
        body, tensors = encode_into(self.params, {"version": str(self.version)})
        return Snapshot(self.version, tensors, body)

    @torch.no_grad()
    def restore_params(self, tensors: Tensors) -> None:
        """Overwrite the parameters (rollback): the optimiser's moments are forgotten."""
        for name, p in self.params.items():
            if name in tensors:
                p.copy_(tensors[name])
        reset_optimizer_state(self.optimizer)

    def state_dict(self) -> tuple[Tensors, dict[str, Any]]:
        """Parameters (`model::<name>`), optimiser tensors and JSON state for a checkpoint."""
        tensors = {f"model::{n}": t for n, t in self.model.state_dict().items()}
        opt_tensors, opt_meta = optimizer_state(self.optimizer)
        tensors.update(opt_tensors)
        return tensors, {"version": self.version, "steps": self.steps, "optimizer": opt_meta,
                         "base_lrs": self.base_lrs}

    def load_state_dict(self, tensors: Tensors, meta: dict[str, Any]) -> None:
        """Restore what `state_dict` produced."""
        model_sd = {k.removeprefix("model::"): v for k, v in tensors.items() if k.startswith("model::")}
        self.model.load_state_dict(model_sd)
        opt = {k: v for k, v in tensors.items() if k.startswith("optim::")}
        load_optimizer_state(self.optimizer, opt, meta["optimizer"])
        self.base_lrs = [float(lr) for lr in meta["base_lrs"]]
        self.version = int(meta["version"])
        self.steps = int(meta["steps"])


class VersionStore:
    """The last `keep` snapshots (and at most `max_bytes` of them, but always the newest), newest
    last: what pulls serve and what rollback can restore without reading a checkpoint."""

    def __init__(self, keep: int, max_bytes: int) -> None:
        self._snaps: deque[Snapshot] = deque(maxlen=max(1, keep))
        self.max_bytes = max_bytes
        self._bytes = 0

    def add(self, snap: Snapshot) -> None:
        if len(self._snaps) == self._snaps.maxlen:
            self._bytes -= self._snaps[0].nbytes()
        self._snaps.append(snap)
        self._bytes += snap.nbytes()
        while len(self._snaps) > 1 and self._bytes > self.max_bytes:
            self._bytes -= self._snaps.popleft().nbytes()

    def latest(self) -> Snapshot:
        return self._snaps[-1]

    def get(self, version: int) -> Snapshot | None:
        """The snapshot of `version`, or None when it was never kept or has been evicted."""
        for snap in reversed(self._snaps):
            if snap.version == version:
                return snap
        return None

    def versions(self) -> list[int]:
        return [s.version for s in self._snaps]
