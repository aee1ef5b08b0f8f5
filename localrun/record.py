"""What a run report is made from: the evaluation and update points and the run's record.

Plain data without torch, so that the plots' child process (`localrun.plots`) reads it cheaply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Point:
    """One history point: an evaluation (`kind="eval"`, validation loss and accuracy) or an applied update
    (`kind="update"`, the worker's training loss). `time` is Unix seconds."""

    time: float
    version: int
    kind: str
    loss: float | None = None
    accuracy: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """Everything the report is made from; `activations` are the driver's records as dicts with at
    least `worker`, `status`, `start`, `end` (Unix seconds) and the action's result fields."""

    config: Mapping[str, Any]
    points: Sequence[Point]
    activations: Sequence[Mapping[str, Any]]
    updates_applied: int
    rejected: Mapping[str, int]
    started: float
    finished: float
    target_accuracy: float | None
    interrupted: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
