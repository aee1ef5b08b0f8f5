"""Which version answers a request that names none: stable, or the canary for a sticky share.

A caller's share is fixed by a hash of (model, caller id) into [0, 100): with `canary_percent` P
the callers below P get the canary, the same callers every time, so one caller never flips
between versions while the split holds. Promote and rollback only rewrite the labels; the next
request follows them.
"""

from __future__ import annotations

import hashlib

from owtrain.errors import ObjectMissing
from serving.repository import Labels


def bucket(model: str, caller: str) -> float:
    """The caller's stable position in [0, 100) for this model."""
    h = hashlib.sha256(f"{model}\0{caller}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64 * 100.0


def route(model: str, caller: str, labels: Labels, loaded: list[int]) -> int:
    """The version for a caller: canary for its share, else stable, else the newest loaded one."""
    if labels.canary in loaded and bucket(model, caller) < labels.canary_percent:
        return labels.canary
    if labels.stable in loaded:
        return labels.stable
    if not loaded:
        raise ObjectMissing(f"model {model!r} has no version loaded")
    return max(loaded)
