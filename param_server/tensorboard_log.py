"""TensorBoard event files from the parameter server: what `Telemetry` sees, as scalars an ML
engineer opens with `tensorboard --logdir DIR` next to their other runs.

The step of every scalar is the model version (an update applied = one step), so validation
accuracy lines up with the updates that produced it; the wall time is recorded as well (TensorBoard's
"relative" axis). Tags:

| tag | what |
|---|---|
| `train/loss` | moving average of the losses the workers reported with their pushes |
| `val/accuracy`, `val/loss` | each background evaluation of the validation shard |
| `test/accuracy`, `test/loss` | the one test evaluation of the saved model (written by `owtrain local`) |
| `server/updates_per_s`, `server/staleness`, `server/workers` | per history point (once a second) |
| `workers/<name>/pushes`, `workers/<name>/samples` | each worker's running totals |

`torch.utils.tensorboard.SummaryWriter` queues events and writes them on its own thread, so
neither the evaluator thread nor the gevent loop waits for the disk; `flush_secs` bounds how stale
the file is for a TensorBoard reading it live.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FLUSH_SECS = 5


class TensorBoardLog:
    """One SummaryWriter under `logdir`; `close()` flushes it."""

    def __init__(self, logdir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: only when asked for

        logdir.mkdir(parents=True, exist_ok=True)
        self.logdir = logdir
        self._writer = SummaryWriter(str(logdir), flush_secs=FLUSH_SECS)

    def evaluated(self, split: str, version: int, loss: float, accuracy: float) -> None:
        """One evaluation of `split` (`val` or `test`) at model `version`."""
        self._writer.add_scalar(f"{split}/accuracy", accuracy, version)
        self._writer.add_scalar(f"{split}/loss", loss, version)

    def sampled(self, version: int, train_loss: float | None, updates_per_s: float, staleness: float,
                active_workers: int, workers: Mapping[str, Mapping[str, Any]]) -> None:
        """One history point: throughput, staleness and each worker's totals (name → pushes, samples)."""
        if train_loss is not None:
            self._writer.add_scalar("train/loss", train_loss, version)
        self._writer.add_scalar("server/updates_per_s", updates_per_s, version)
        self._writer.add_scalar("server/staleness", staleness, version)
        self._writer.add_scalar("server/workers", active_workers, version)
        for name, info in workers.items():
            self._writer.add_scalar(f"workers/{name}/pushes", info["pushes"], version)
            self._writer.add_scalar(f"workers/{name}/samples", info["samples"], version)

    def close(self) -> None:
        self._writer.close()
        log.info("TensorBoard event files in %s (tensorboard --logdir %s)", self.logdir, self.logdir)
