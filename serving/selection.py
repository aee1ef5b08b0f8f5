"""Clipper's model selection for a single model: an Exp3 bandit over the loaded versions.

With `--selection exp3`, a request that names no version or label is answered by a version drawn
from p_v = (1 − γ)·w_v / Σw + γ / K over the K loaded versions, and the answer says which one.
Feedback (`POST /v1/models/{name}:observe {"version": v, "reward": r}`, r in [0, 1], e.g. 1 when
the prediction turned out right) updates that version's weight, w_v ← w_v · exp(γ · r / (p_v · K)),
so traffic drifts to the version that earns the most. Versions that appear start at the mean
weight; weights are renormalised to stay finite. Not sticky per caller: that is the canary's job.
"""

from __future__ import annotations

import math
import random
import threading

from owtrain.errors import BadRequest, ObjectMissing


class Exp3:
    """One bandit per model name; thread-safe."""

    def __init__(self, gamma: float = 0.1, rng: random.Random | None = None) -> None:
        if not 0.0 < gamma <= 1.0:
            raise ValueError("Exp3's gamma must be in (0, 1]")
        self.gamma = gamma
        self.rng = rng or random.Random()
        self._weights: dict[str, dict[int, float]] = {}
        self._lock = threading.Lock()

    def probabilities(self, model: str, versions: list[int]) -> dict[int, float]:
        """The current draw probabilities over `versions` (which become the arms)."""
        if not versions:
            raise ObjectMissing(f"model {model!r} has no version loaded")
        with self._lock:
            weights = self._weights.setdefault(model, {})
            mean = sum(weights.values()) / len(weights) if weights else 1.0
            for v in list(weights):
                if v not in versions:
                    del weights[v]
            for v in versions:
                weights.setdefault(v, mean)
            total, k = sum(weights.values()), len(versions)
            return {v: (1 - self.gamma) * weights[v] / total + self.gamma / k for v in versions}

    def select(self, model: str, versions: list[int]) -> int:
        probs = self.probabilities(model, versions)
        return self.rng.choices(list(probs), weights=list(probs.values()))[0]

    def observe(self, model: str, version: int, reward: object, versions: list[int]) -> dict[int, float]:
        """Feed back one reward (a number in [0, 1], checked here) for `version`; returns the new
        probabilities."""
        if not isinstance(reward, (int, float)) or isinstance(reward, bool) or not 0.0 <= reward <= 1.0:
            raise BadRequest(f"reward must be a number in [0, 1], got {reward!r}")
        if version not in versions:
            raise ObjectMissing(f"model {model!r} has no version {version} loaded; loaded: {versions}")
        p = self.probabilities(model, versions)[version]
        with self._lock:
            weights = self._weights[model]
            weights[version] *= math.exp(self.gamma * reward / (p * len(versions)))
            top = max(weights.values())
            for v in weights:  # renormalise: only ratios matter
                weights[v] /= top
        return self.probabilities(model, versions)
