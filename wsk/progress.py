"""The driver's progress bar: shard-epochs done out of shards × epochs, with samples and accuracy."""

from __future__ import annotations

from tqdm import tqdm

from wsk.state import Summary


class ProgressBar:
    """A tqdm bar fed with the driver's summaries (`update` is the driver's `progress` hook)."""

    def __init__(self, total: int) -> None:
        self.bar = tqdm(total=total, unit="shard-epoch", dynamic_ncols=True)

    def update(self, summary: Summary, accuracy: float | None) -> None:
        self.bar.total = max(self.bar.total or 0, summary.epochs_done)
        self.bar.n = summary.epochs_done
        self.bar.set_postfix(shards=f"{summary.done}/{summary.shards}", running=summary.running,
                             failed=summary.failed, samples=summary.samples,
                             acc="-" if accuracy is None else f"{accuracy:.4f}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()
