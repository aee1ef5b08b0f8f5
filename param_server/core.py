"""The server's state machine, free of HTTP: exactly-once push handling, the strategy, the
version store, checkpoints and rollback. Every method runs on the single apply thread, so the
model, strategy and ledger need no locks.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from owtrain.errors import BadRequest, JobClosed, ObjectMissing
from param_server import checkpoint
from param_server.config import PSConfig
from param_server.ledger import Ledger
from param_server.model_state import ModelState, Snapshot, VersionStore
from param_server.strategies import Strategy, Update
from param_server.telemetry import Telemetry

log = logging.getLogger(__name__)


class Core:
    """Model + strategy + ledger + versions + checkpoints, driven by push / tick / rollback."""

    def __init__(self, cfg: PSConfig, model: ModelState, strategy: Strategy, telemetry: Telemetry,
                 uploader: checkpoint.S3Uploader | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.strategy = strategy
        self.telemetry = telemetry
        self.uploader = uploader
        self.ledger = Ledger(cfg.ledger_window)
        self.versions = VersionStore(cfg.keep_versions, cfg.keep_versions_bytes)
        self.last_ckpt_version = -1
        self.last_ckpt_time = time.monotonic()
        self.dirty = False  # something was taken since the last checkpoint (maybe only a pending push)
        self.closed: str | None = None  # why the job stopped taking updates (not checkpointed)
        self._published(restore=True)

    def push(self, update: Update) -> dict[str, Any]:
        """Take one validated update exactly once; raises StaleUpdate / BadRequest from the strategy."""
        before = self.model.version
        if self.ledger.seen(update.worker, update.seq) is not None:
            return {"status": "duplicate", "version": before, "staleness": 0, "refresh": False}
        if self.closed is not None:
            raise JobClosed(f"the job takes no more updates ({self.closed}); this update was not applied: "
                            "stop and return the progress acknowledged so far")
        if update.base_version > before:
            raise BadRequest(f"base_version {update.base_version} is newer than the server's {before}")
        outcome = self.strategy.submit(update, self.model)
        self.ledger.record(update.worker, update.seq, self.model.version)
        self.dirty = True
        if self.model.version != before:
            self._published()
        return {"status": outcome.status, "version": self.model.version, "staleness": outcome.staleness,
                "refresh": outcome.refresh}

    def close(self, reason: str) -> None:
        """Take no more updates (retries of ones already taken are still acknowledged), so that
        running activations return at their next push and the model stays as it is now. A server
        restarted from a checkpoint is open again (`owtrain local --resume` relies on that)."""
        self.closed = reason
        log.info("job closed to updates at version %d: %s", self.model.version, reason)

    def tick(self, now: float) -> bool:
        """Periodic work: strategy time-outs and time-based checkpoints. True if the version moved."""
        moved = self.strategy.tick(self.model, now)
        if moved:
            self._published()
        elif self.cfg.checkpoint_dir and self.dirty and now - self.last_ckpt_time >= self.cfg.checkpoint_interval_s:
            self.checkpoint()
        return moved

    def rollback(self, version: int) -> int:
        """Make the parameters of an earlier `version` current again, as a new version.

        The version counter never goes back (a worker holding the old number must not get 304 for
        different weights); the optimiser's moments and pending sync updates are discarded.
        Looks in the in-memory store first, then the checkpoints on disk; ObjectMissing if neither.
        """
        params = self._params_of(version)
        self.model.restore_params(params)
        self.strategy.load_state_dict({}, {})
        self.model.version += 1
        self.dirty = True
        self._published()
        log.warning("rolled back to the parameters of version %d as version %d", version, self.model.version)
        return self.model.version

    def _params_of(self, version: int) -> dict:
        snap = self.versions.get(version)
        if snap is not None:
            return snap.tensors
        if self.cfg.checkpoint_dir:
            path = checkpoint.checkpoint_path(self.cfg.checkpoint_dir, version)
            if path.exists():
                tensors, _ = checkpoint.read_checkpoint(path)
                return {k.removeprefix("model::"): v for k, v in tensors.items() if k.startswith("model::")}
        kept = self.versions.versions()
        raise ObjectMissing(f"version {version} is no longer kept (in memory: {kept[0]}..{kept[-1]}; "
                            "on disk: the checkpoints in --checkpoint-dir)")

    def checkpoint(self) -> Path | None:
        """Write a checkpoint of everything needed to resume; None without a checkpoint folder."""
        folder = self.cfg.checkpoint_dir
        if folder is None:
            return None
        tensors, state = self.model.state_dict()
        s_tensors, s_state = self.strategy.state_dict()
        tensors.update(s_tensors)
        state.update({"strategy": s_state, "ledger": self.ledger.state(), "job": self.cfg.job,
                      "model_name": self.cfg.model, "time": time.time()})
        path = checkpoint.write_checkpoint(folder, self.model.version, tensors, state)
        checkpoint.prune(folder, self.cfg.keep_checkpoints)
        self.last_ckpt_version, self.last_ckpt_time = self.model.version, time.monotonic()
        self.dirty = False
        if self.uploader:
            self.uploader.submit(path)
        log.info("checkpoint %s", path.name)
        return path

    def restore(self) -> bool:
        """Resume from the newest checkpoint in the checkpoint folder; False if there is none."""
        if self.cfg.checkpoint_dir is None:
            return False
        found = checkpoint.list_checkpoints(self.cfg.checkpoint_dir)
        if not found:
            return False
        version, path = found[-1]
        tensors, state = checkpoint.read_checkpoint(path)
        if state.get("job") != self.cfg.job or state.get("model_name") != self.cfg.model:
            raise ValueError(f"checkpoint {path} is for job {state.get('job')!r} / model "
                             f"{state.get('model_name')!r}, not {self.cfg.job!r} / {self.cfg.model!r}")
        self.model.load_state_dict(tensors, state)
        self.strategy.load_state_dict({k: v for k, v in tensors.items() if k.startswith("pending::")},
                                      state.get("strategy", {}))
        self.ledger.load(state.get("ledger", {}))
        self.last_ckpt_version = version
        self._published(restore=True)
        log.info("resumed from %s (version %d)", path.name, version)
        return True

    def latest(self) -> Snapshot:
        return self.versions.latest()

    def _published(self, restore: bool = False) -> None:
        """A new version exists: snapshot it for pulls and rollback, count it, maybe checkpoint."""
        self.versions.add(self.model.snapshot())
        self.telemetry.set_version(self.model.version)
        due = self.model.version - max(self.last_ckpt_version, 0) >= self.cfg.checkpoint_every
        if not restore and self.cfg.checkpoint_dir and self.cfg.checkpoint_every > 0 and due:
            self.checkpoint()
