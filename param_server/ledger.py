"""Exactly-once bookkeeping: which (worker, seq) pushes were taken, and what they were told.

Workers number their pushes with increasing `seq`. A push whose seq is in the recent window is
answered again with its original outcome marked `duplicate`; one older than the window is a
duplicate too (the worker has long moved on). Rejected pushes are not recorded, so a worker may
retry the same seq after refreshing. The ledger is saved in every checkpoint.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class Ledger:
    """Per-worker recent seqs (at most `window` each) and the lowest seq still remembered."""

    def __init__(self, window: int = 1024) -> None:
        self.window = window
        self._seen: dict[str, OrderedDict[int, int]] = {}
        self._floor: dict[str, int] = {}

    def seen(self, worker: str, seq: int) -> int | None:
        """The version recorded for an already-taken push, or None if it is new."""
        recent = self._seen.get(worker)
        if recent is not None and seq in recent:
            return recent[seq]
        if seq < self._floor.get(worker, -1):
            return -1
        return None

    def record(self, worker: str, seq: int, version: int) -> None:
        """Remember that `worker`'s push `seq` was taken (applied or accepted) at `version`."""
        recent = self._seen.setdefault(worker, OrderedDict())
        recent[seq] = version
        while len(recent) > self.window:
            old, _ = recent.popitem(last=False)
            self._floor[worker] = max(self._floor.get(worker, -1), old + 1)

    def state(self) -> dict[str, Any]:
        return {"window": self.window, "floor": self._floor,
                "seen": {w: [[s, v] for s, v in r.items()] for w, r in self._seen.items()}}

    def load(self, state: dict[str, Any]) -> None:
        self._floor = {w: int(f) for w, f in state.get("floor", {}).items()}
        self._seen = {w: OrderedDict((int(s), int(v)) for s, v in pairs)
                      for w, pairs in state.get("seen", {}).items()}
