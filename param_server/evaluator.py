"""Background evaluation on a held-out shard, on its own thread and its own copy of the model, so
the request path never waits for it. It evaluates the newest snapshot every N versions or T
seconds (whichever comes first) and reports to `Telemetry`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from owtrain.errors import OwtrainError
from param_server.model_state import Snapshot
from param_server.telemetry import Telemetry

log = logging.getLogger(__name__)


def load_eval_shard(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(x float32 normalised, y int64) of a shard (Contract 1), via the packer's verified reader."""
    from dataset_packer.shard import read_shard

    return read_shard(path).to_tensors()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> tuple[float, float]:
    """(mean cross-entropy loss, accuracy) of `model` on (x, y)."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for i in range(0, len(y), batch):
        logits = model(x[i : i + batch])
        loss_sum += float(nn.functional.cross_entropy(logits, y[i : i + batch], reduction="sum"))
        correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    n = max(len(y), 1)
    return loss_sum / n, correct / n


class Evaluator:
    """A daemon thread that evaluates `latest()` when it is due; `stop()` ends it."""

    def __init__(self, model: nn.Module, data: tuple[torch.Tensor, torch.Tensor], latest: Callable[[], Snapshot],
                 telemetry: Telemetry, every: int, interval_s: float, batch: int,
                 version: Callable[[], int] | None = None) -> None:
        # channels-last convolutions run a LeNet5 pass over 10,000 images in ~0.6 s instead of ~1.0 s
        # on one CPU thread (no effect on models without 4-D weights); loading a snapshot with
        # `load_state_dict` copies into these tensors and keeps their layout.
        # (torch's type stubs omit Module.to's documented memory_format keyword)
        self.model = model.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.data, self.latest, self.telemetry = data, latest, telemetry
        # the version `latest()` would have, asked first so that a sharded job's evaluator pulls the
        # other shards (param_server/assembler.py) only when an evaluation is due
        self.version = version or (lambda: latest().version)
        self.every, self.interval_s, self.batch = every, interval_s, batch
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evaluator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _due(self, version: int, done: int | None, last_time: float) -> bool:
        if done is None:
            return True
        if version == done:
            return False
        return version - done >= self.every or time.monotonic() - last_time >= self.interval_s

    def _run(self) -> None:
        torch.set_num_threads(1)
        done: int | None = None
        last_time = time.monotonic()
        while not self._stop.wait(0.2):
            try:
                if not self._due(self.version(), done, last_time):
                    continue
                started = time.monotonic()  # the interval runs start to start, not from the end of a pass
                snap = self.latest()
            except OwtrainError as exc:  # another shard is down or disagrees: try again at the next poll
                log.warning("cannot assemble the model to evaluate: %s", exc)
                self._stop.wait(2.0)
                continue
            self.model.load_state_dict(snap.tensors, strict=False)
            loss, acc = evaluate(self.model, *self.data, self.batch)
            self.telemetry.evaluated(snap.version, loss, acc)
            done, last_time = snap.version, started
            log.info("version %d: eval loss %.4f accuracy %.4f", snap.version, loss, acc)
