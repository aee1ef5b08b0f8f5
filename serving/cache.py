"""Clipper's prediction cache: an LRU of outputs keyed by (model, version, input digest).

The key is the sha256 of one instance's raw float32 pixels, so an identical image sent as JSON,
PNG or .npy hits the same entry, and a new version never answers from an older one's entries.
Bounded by entry count; thread-safe; counts hits and misses for /metrics.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numpy as np

Key = tuple[str, int, bytes]


def digest(row: np.ndarray) -> bytes:
    """The cache digest of one instance (raw pixels, float32, C-contiguous)."""
    return hashlib.sha256(np.ascontiguousarray(row, dtype=np.float32).tobytes()).digest()


class PredictionCache:
    """`capacity` entries at most (0 disables the cache: every lookup misses, nothing is kept)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Key) -> np.ndarray | None:
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: Key, value: np.ndarray) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
