"""What `owtrain local` shows while it trains: one progress bar per epoch, with loss and accuracy.

The bars are fed from the parameter server's `/status` (samples pushed by all workers, the
workers' moving-average loss) and `/getAccuracy` (the latest validation-set evaluation), so they move
with every push rather than only when an activation ends.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm


class EpochBars:
    """Per-epoch tqdm bars over `samples_per_epoch` samples; `update` takes the server's numbers."""

    def __init__(self, samples_per_epoch: int, max_epochs: int, offset: int = 0, enabled: bool = True) -> None:
        self.samples_per_epoch = samples_per_epoch
        self.max_epochs = max_epochs
        self.offset = offset  # samples trained before this process started (a resumed run)
        self.enabled = enabled
        self.epoch = -1
        self.bar: tqdm | None = None
        self.lines: list[str] = []  # one summary per finished epoch, also for the report

    def update(self, status: dict[str, Any], accuracy: dict[str, Any]) -> None:
        """Advance to the samples the server has seen; close each finished epoch with a summary line."""
        pushed = sum(int(w.get("samples") or 0) for w in (status.get("workers") or {}).values())
        total = self.offset + pushed
        epoch = min(total // self.samples_per_epoch, self.max_epochs - 1)
        while self.epoch < epoch:
            self._next_epoch(status, accuracy)
        if self.bar is not None:
            self.bar.n = min(total - self.epoch * self.samples_per_epoch, self.samples_per_epoch)
            self.bar.set_postfix(self._postfix(status, accuracy), refresh=False)
            self.bar.refresh()

    def close(self, status: dict[str, Any], accuracy: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(self._postfix(status, accuracy), refresh=False)
            self.bar.close()
            self.bar = None

    def _next_epoch(self, status: dict[str, Any], accuracy: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.n = self.samples_per_epoch
            self.close(status, accuracy)
            summary = ", ".join(f"{k} {v}" for k, v in self._postfix(status, accuracy).items())
            self.lines.append(f"epoch {self.epoch + 1}: {summary}")
        self.epoch += 1
        self.bar = tqdm(total=self.samples_per_epoch, unit="sample", unit_scale=True, disable=not self.enabled,
                        desc=f"epoch {self.epoch + 1}/{self.max_epochs}", dynamic_ncols=True)

    @staticmethod
    def _postfix(status: dict[str, Any], accuracy: dict[str, Any]) -> dict[str, str]:
        out = {"version": str(status.get("version", "-"))}
        if status.get("loss") is not None:
            out["loss"] = f"{status['loss']:.4f}"
        if accuracy.get("accuracy") is not None:
            out["val_acc"] = f"{accuracy['accuracy']:.4f}"
            out["val_loss"] = f"{accuracy['loss']:.4f}"
        return out
