"""What a warm container keeps between activations: the loaded shard and the worker's model state.

OpenWhisk reuses a container for the next activation of the same action, so the module-level
slots below save the shard download and verification, the model build and an unchanged pull.
Each slot holds one entry (an action has 256–512 MB), replaced whenever its key changes: the
shard is keyed by its sha256, never its URL, so a new shard behind a recycled URL is never
served stale.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from torch import nn

from actions.updates import LocalOptimizer
from dataset_packer.shard import Shard
from owtrain.compression import Compressor

T = TypeVar("T")


class Slot(Generic[T]):
    """A one-entry cache: `get(key, build)` returns the held value if the key matches, else builds."""

    def __init__(self) -> None:
        self._key: Hashable | None = None
        self._value: T | None = None

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        if self._value is None or self._key != key:
            self._value = None  # drop the old entry before building the new one (peak memory)
            self._value, self._key = build(), key
        return self._value

    def clear(self) -> None:
        self._key, self._value = None, None


@dataclass
class WorkerState:
    """The model and what must survive with it: the shards' versions its parameters equal (None:
    never pulled), the local optimiser (delta mode) and the compressor (top-k residual)."""

    model: nn.Module
    optimizer: LocalOptimizer | None
    compressor: Compressor
    version: tuple[int, ...] | None = None  # one version per parameter-server shard


SHARD: Slot[Shard] = Slot()
WORKER: Slot[WorkerState] = Slot()
