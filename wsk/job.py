"""A training job's fan-out as one object: what the one-machine run (and any other owner) asks of
the invocation side, so that nothing outside `wsk/` reaches into the bridge or the driver.

`start_job` starts the event bridge in poller mode with its driver over a bucket prefix and an
invoker; the `Job` it yields says whether the job finished, how its chains stand and which failed,
stops it (draining the running activations, or pausing them resumably) and reads its activations.
The driver's two hooks into the parameter server are in `wsk/ps_hooks.py`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owtrain.errors import ServerUnavailable
from owtrain.s3 import S3Settings
from wsk.config import BridgeConfig, DriverConfig
from wsk.ps_hooks import accuracy_reader, job_closer
from wsk.state import FINAL, DriverState

if TYPE_CHECKING:
    from wsk.bridge import Bridge
    from wsk.driver import Driver
    from wsk.invoker.base import Invoker


class Job:
    """One running job: its bridge, driver, state file and invoker."""

    def __init__(self, bridge: Bridge, driver: Driver, state: DriverState, invoker: Invoker, workers: int,
                 drain_s: float) -> None:
        self.bridge, self.driver, self.state, self.invoker = bridge, driver, state, invoker
        self.workers, self.drain_s = workers, drain_s
        self.samples_before = state.summary(1).samples  # trained before this process (a resumed job)
        self._stopped = False

    def finished(self) -> bool:
        """True when every shard's chain has ended (its epochs done, stopped or failed for good)."""
        shards = self.state.shards()
        return len(shards) >= self.workers and all(s.status in FINAL for s in shards)

    def chain_states(self) -> dict[str, int]:
        """How many shard chains are in each state (pending, running, done, stopped, failed)."""
        counts: dict[str, int] = {}
        for shard in self.state.shards():
            counts[shard.status] = counts.get(shard.status, 0) + 1
        return counts

    def failures(self) -> list[str]:
        """`key: error` of every chain the driver gave up on."""
        return [f"{s.key}: {s.error}" for s in self.state.shards("failed")]

    def check(self) -> None:
        """ServerUnavailable if the bridge's background threads died (nothing would make progress)."""
        if dead := self.bridge.dead_threads():
            raise ServerUnavailable(f"event bridge thread(s) {', '.join(dead)} stopped; see the log above")

    def stop(self, drain: bool = False) -> None:
        """Stop the bridge and the invoker (which lets running activations return first).

        `drain` (the job is over): the driver first records how the running activations ended and
        marks every chain stopped. Without it the chains stay as they are (see `pause` for Ctrl-C).
        """
        if self._stopped:
            return
        self._stopped = True
        if drain:
            self.driver.finish()
            deadline = time.monotonic() + self.drain_s
            while self.state.shards("running") and time.monotonic() < deadline and self.bridge.dispatching():
                time.sleep(0.2)
        self.bridge.stop()
        self.invoker.close()

    def pause(self, reason: str, grace_s: float) -> None:
        """Stop within about `grace_s` seconds and leave every chain resumable (Ctrl-C).

        The driver closes the job on the parameter server, so the running activations return at
        their next push with the cursor after their last acknowledged push, and records those
        cursors (the chains stay pending). Activations that have not returned after `grace_s` are
        killed: their acknowledged pushes are in the server's ledger, so the resumed chain repeats
        them from the last recorded cursor as duplicates, which the server does not apply twice.
        """
        if self._stopped:
            return
        self._stopped = True
        self.driver.pause(reason)
        deadline = time.monotonic() + grace_s
        if self.bridge.dispatching():
            self.driver.paused.wait(max(deadline - time.monotonic(), 0.0))
            while self.state.shards("running") and time.monotonic() < deadline and self.bridge.dispatching():
                time.sleep(0.05)
        self.bridge.stop()
        self.invoker.close(grace_s=0.0)

    def activations(self) -> list[dict[str, Any]]:
        """Every activation of every chain (`worker`, `shard`, `activation_id`, `status`, `samples`,
        `start`, `end` in Unix seconds, `phases`), for a report."""
        out = []
        for shard in self.state.shards():
            for row in self.state.history(shard.key):
                out.append({"worker": shard.worker, "shard": shard.key, "activation_id": row["activation_id"],
                            "status": row["status"] or "interrupted", "samples": row["samples"] or 0,
                            "start": row["started"], "end": row["ended"], "phases": row["phases"]})
        return out


@contextmanager
def start_job(driver_cfg: DriverConfig, bridge_cfg: BridgeConfig, invoker: Invoker, store: S3Settings,
              state_path: Path, prefix: str, drain_s: float, uploaded: Sequence[str] = ()) -> Iterator[Job]:
    """The bridge polling `store`'s bucket under `prefix` and its driver (state in `state_path`),
    dispatching to `invoker`; stopped (not drained) when the block ends.

    `uploaded`: keys the caller has just put into the bucket. The shards among them are queued
    before the bridge starts, so the driver's first step launches their chains without waiting for
    a bucket listing to see them (the poller then finds them queued already: duplicates).
    """
    from dataset_packer.stores.s3 import S3Store
    from wsk.bridge import Bridge
    from wsk.driver import Driver
    from wsk.sources import bucket_lister, store_resolver

    s3 = S3Store(store)  # the lister and the resolver speak S3 (ListObjectsV2, presign)
    s3.ensure_bucket()
    state = DriverState(state_path)
    driver = Driver(invoker, state, driver_cfg, resolver=store_resolver(s3, bridge_cfg.presign_seconds),
                    accuracy=accuracy_reader(driver_cfg.ps_url), closer=job_closer(driver_cfg))
    bridge = Bridge(bridge_cfg, store.bucket, state, driver, lister=bucket_lister(s3, prefix=prefix))
    bridge.offer(key for key in uploaded if key.startswith(prefix))  # what the lister under `prefix` would see
    job = Job(bridge, driver, state, invoker, driver_cfg.workers, drain_s)
    bridge.start()
    try:
        yield job
    finally:
        job.stop()
        state.close()
