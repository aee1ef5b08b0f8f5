"""How large the next batch may be: `Fixed(b)` or Clipper's AIMD under a latency objective.

Kept apart from the batcher (which needs NumPy and gevent) so that `owtrain serve` can check
`--batching` while it builds its configuration, before anything heavy is imported.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod

from owtrain.errors import ConfigError


class BatchPolicy(ABC):
    """Decides the largest batch (in instances) the next forward pass may take."""

    @abstractmethod
    def limit(self) -> int:
        """The current batch limit (at least 1)."""

    def observe(self, size: int, latency_s: float) -> None:  # noqa: B027 (optional, a no-op by default)
        """Feedback after each batch; a fixed policy ignores it."""

    @abstractmethod
    def describe(self) -> str:
        """The policy as `--batching` spells it."""


class Fixed(BatchPolicy):
    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigError("a fixed batch size must be at least 1")
        self.size = size

    def limit(self) -> int:
        return self.size

    def describe(self) -> str:
        return f"fixed:{self.size}"


class AIMD(BatchPolicy):
    """Additive increase while batches meet `slo_s`, multiplicative decrease (halving) on a miss."""

    def __init__(self, slo_s: float, max_batch: int, step: int = 1, start: int = 1) -> None:
        if slo_s <= 0 or max_batch < 1 or step < 1:
            raise ConfigError("AIMD needs a positive --slo-ms, --max-batch >= 1 and a step >= 1")
        self.slo_s, self.max_batch, self.step = slo_s, max_batch, step
        self._limit = max(1, min(start, max_batch))
        self._lock = threading.Lock()

    def limit(self) -> int:
        return self._limit

    def observe(self, size: int, latency_s: float) -> None:
        with self._lock:
            if latency_s > self.slo_s:
                self._limit = max(1, self._limit // 2)
            elif size >= self._limit:  # only a full batch says the limit could be larger
                self._limit = min(self.max_batch, self._limit + self.step)

    def describe(self) -> str:
        return f"aimd:slo={self.slo_s * 1000:g}ms"


def make_policy(text: str, slo_ms: float, max_batch: int) -> BatchPolicy:
    """`aimd` (under `slo_ms`) or `fixed:B`; anything else is a ConfigError naming the choices."""
    if text == "aimd":
        return AIMD(slo_ms / 1000.0, max_batch)
    kind, _, size = text.partition(":")
    if kind == "fixed" and size.isdigit():
        return Fixed(int(size))
    raise ConfigError(f"--batching {text!r}: use aimd or fixed:B (B = instances per forward pass)")
