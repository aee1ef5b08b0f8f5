"""The server's state machine, free of HTTP: exactly-once push handling, the strategy, the
version store, the update journal, checkpoints, recovery and rollback. Every method but
`advance_visible` and `latest` runs on the single apply thread, so the model, strategy and ledger
need no locks.

With a journal, every update taken (applied, or accepted into a sync round) and every time-out
step is appended before it is acknowledged, and a version becomes visible (pulls, evaluation,
`/getVersion`) only once the records it depends on are durable: a crash can lose only versions
nobody saw and updates nobody was told about, so a version number never names two sets of weights.
Recovery loads the newest readable checkpoint and replays the journal after the offset it covers
through the same code as the original pushes.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from pathlib import Path
from typing import Any

from owtrain import codec
from owtrain.compression import decompress
from owtrain.errors import BadRequest, CheckpointCorrupt, JobClosed, ObjectMissing
from param_server import checkpoint
from param_server.config import PSConfig
from param_server.journal import Journal, JournalCorrupt
from param_server.ledger import Ledger
from param_server.model_state import ModelState, Snapshot, VersionStore
from param_server.strategies import Strategy, Update
from param_server.telemetry import Telemetry

log = logging.getLogger(__name__)


class Core:
    """Model + strategy + ledger + versions + journal + checkpoints, driven by push / tick / rollback."""

    def __init__(self, cfg: PSConfig, model: ModelState, strategy: Strategy, telemetry: Telemetry,
                 uploader: checkpoint.S3Uploader | None = None, journal: Journal | None = None) -> None:
        self.cfg = cfg
        self.model = model
        self.strategy = strategy
        self.telemetry = telemetry
        self.uploader = uploader
        self.journal = journal
        self.ledger = Ledger(cfg.ledger_window)
        self.versions = VersionStore(cfg.keep_versions, cfg.keep_versions_bytes)
        self.last_ckpt_version = -1
        self.last_ckpt_time = time.monotonic()
        self.dirty = False  # something was taken since the last checkpoint (maybe only a pending push)
        self.moved = False  # the version moved since the last snapshot (published once per apply batch)
        self.journal_bytes = 0  # journal payload appended since the last checkpoint
        self.closed: str | None = None  # why the job stopped taking updates (not checkpointed)
        self.replayed = 0  # journal records applied again at the last start
        self._replaying = False
        # Versions published on the apply thread but not yet durable, oldest first, as (journal offset
        # that must be durable, snapshot); only the gevent loop moves them to `_visible`.
        self._pending: deque[tuple[int, Snapshot]] = deque()
        self._visible: Snapshot
        self._announced = -1  # the visible version the loop last woke waiters for
        self._ckpt_offset = 0  # journal offset the loaded checkpoint covers
        self._published(restore=True)

    def push(self, update: Update, raw: bytes | bytearray = b"") -> tuple[dict[str, Any], int]:
        """Take one validated update exactly once; raises StaleUpdate / BadRequest from the strategy.

        Returns the answer and the journal offset that must be durable before it is sent (-1: none).
        `raw` is the body as received: the journal keeps it so that a replay decodes it again.
        """
        before = self.model.version
        if self.ledger.seen(update.worker, update.seq) is not None:
            # the original may still be on its way to disk: wait for everything written so far
            tail = self.journal.next_offset - 1 if self.journal else -1
            return {"status": "duplicate", "version": before, "staleness": 0, "refresh": False}, tail
        if self.closed is not None and not self._replaying:
            raise JobClosed(f"the job takes no more updates ({self.closed}); this update was not applied: "
                            "stop and return the progress acknowledged so far")
        if update.base_version > before:
            raise BadRequest(f"base_version {update.base_version} is newer than the server's {before}")
        # The decoded tensors are views of `raw` (no copy on the push path); applying never writes
        # into them (tests/param_server/test_aggregate.py), so the journal takes the same buffer.
        outcome = self.strategy.submit(update, self.model)
        self.ledger.record(update.worker, update.seq, self.model.version)
        offset = self._journal({"type": "update", "worker": update.worker, "seq": update.seq,
                                "base_version": update.base_version, "kind": update.kind,
                                "samples": update.samples, "loss": update.loss, "status": outcome.status,
                                "version": self.model.version}, raw)
        self.dirty = True
        self.moved = self.moved or self.model.version != before
        return {"status": outcome.status, "version": self.model.version, "staleness": outcome.staleness,
                "refresh": outcome.refresh}, offset

    def _journal(self, header: dict[str, Any], payload: bytes | bytearray = b"") -> int:
        if self.journal is None or self._replaying:
            return -1
        header["time"] = time.time()
        self.journal_bytes += len(payload)
        return self.journal.append(header, payload)

    def end_batch(self) -> None:
        """After a batch of pushes on the apply thread: publish the version it reached (one
        snapshot, however many updates the batch applied), commit the batch's journal records (one
        fdatasync, on this thread), then checkpoint if the journal has grown by
        `checkpoint_journal_bytes` since the last one (only recovery time depends on it)."""
        if self.moved:
            self._published()
        if self.journal is not None and not self._replaying:
            self.journal.commit()  # the batch's records, one fdatasync, before its pushes are answered
        if (self.journal is not None and self.cfg.checkpoint_dir and self.dirty
                and self.journal_bytes >= self.cfg.checkpoint_journal_bytes):
            self.checkpoint()

    def close(self, reason: str) -> None:
        """Take no more updates (retries of ones already taken are still acknowledged), so that
        running activations return at their next push and the model stays as it is now. A server
        restarted from a checkpoint is open again (`owtrain local --resume` relies on that)."""
        self.closed = reason
        log.info("job closed to updates at version %d: %s", self.model.version, reason)

    def tick(self, now: float) -> bool:
        """Periodic work: strategy time-outs and time-based checkpoints. True if the version moved."""
        moved = self.strategy.tick(self.model, now)
        if moved:  # a sync round closed by its time-out: replayed by a tick at infinite time
            self._journal({"type": "tick", "version": self.model.version})
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
        if self.cfg.checkpoint_dir:  # a rollback is not replayed: the checkpoint makes it durable
            self.checkpoint()
        log.warning("rolled back to the parameters of version %d as version %d", version, self.model.version)
        return self.model.version

    def _params_of(self, version: int) -> dict[str, Any]:
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
        if self.journal is not None:
            # the records this checkpoint covers go to disk first, so that a restart never hands out
            # their offsets again (the checkpoint says the log reaches `journal_offset`)
            self.journal.flush()
            state["journal_offset"] = self.journal.next_offset
        path = checkpoint.write_checkpoint(folder, self.model.version, tensors, state)
        checkpoint.prune(folder, self.cfg.keep_checkpoints)
        if self.journal is not None:
            oldest = checkpoint.list_checkpoints(folder)[0][1]
            self.journal.retain_from(int(checkpoint.read_state(oldest).get("journal_offset", 0)))
        self.last_ckpt_version, self.last_ckpt_time = self.model.version, time.monotonic()
        self.dirty = False
        self.journal_bytes = 0
        if self.uploader:
            self.uploader.submit(path)
        log.info("checkpoint %s", path.name)
        return path

    def restore(self) -> bool:
        """Rebuild the state at the last stop or crash: the newest readable checkpoint, then the
        journal after the offset it covers. False if there was nothing to restore."""
        loaded = self._load_newest_checkpoint()
        if self.journal is None:
            every = self.cfg.checkpoint_every_versions()
            if loaded and every > 0:
                # Without a journal, versions after the checkpoint may have been seen and are lost: skip
                # past every number they can have had (a count-based checkpoint follows at most
                # checkpoint_every versions later), so no number is given to other weights.
                self.model.version += every
                self._published(restore=True)
                log.warning("no journal: updates after checkpoint version %d may be lost; continuing as "
                            "version %d", self.last_ckpt_version, self.model.version)
            return loaded
        start = self._ckpt_offset if loaded else 0
        self.journal.start_at(start)
        self._replay(start)
        if self.replayed and self.cfg.checkpoint_dir:
            self.checkpoint()
        return loaded or self.replayed > 0

    def _load_newest_checkpoint(self) -> bool:
        """Load the newest checkpoint that reads back (an older one if the newest is damaged)."""
        if self.cfg.checkpoint_dir is None:
            return False
        for version, path in reversed(checkpoint.list_checkpoints(self.cfg.checkpoint_dir)):
            try:
                tensors, state = checkpoint.read_checkpoint(path)
            except CheckpointCorrupt as exc:
                log.warning("skipping checkpoint %s: %s", path.name, exc)
                continue
            if state.get("job") != self.cfg.job or state.get("model_name") != self.cfg.model:
                raise ValueError(f"checkpoint {path} is for job {state.get('job')!r} / model "
                                 f"{state.get('model_name')!r}, not {self.cfg.job!r} / {self.cfg.model!r}")
            self.model.load_state_dict(tensors, state)
            self.strategy.load_state_dict({k: v for k, v in tensors.items() if k.startswith("pending::")},
                                          state.get("strategy", {}))
            self.ledger.load(state.get("ledger", {}))
            self.last_ckpt_version = version
            self._ckpt_offset = int(state.get("journal_offset", 0))
            self._published(restore=True)
            log.info("resumed from %s (version %d)", path.name, version)
            return True
        return False

    def _replay(self, start: int) -> None:
        """Apply the journal's records from `start` again, exactly as they were first taken."""
        assert self.journal is not None
        self._replaying = True
        began = time.monotonic()
        try:
            for record in self.journal.read(start):
                h = record.header
                if h.get("type") == "tick":
                    if self.strategy.tick(self.model, math.inf):
                        self._published(restore=True)
                elif h.get("type") == "update":
                    wire, meta = codec.decode_tensors(record.payload)
                    update = Update(worker=h["worker"], seq=int(h["seq"]), base_version=int(h["base_version"]),
                                    kind=h["kind"], tensors=decompress(wire, meta, self.model.spec),
                                    samples=int(h.get("samples", 0)), loss=h.get("loss"))
                    before = self.model.version
                    answer, _ = self.push(update)
                    self.end_batch()
                    if answer["status"] != h["status"] or answer["version"] != h["version"]:
                        raise JournalCorrupt(f"journal offset {record.offset}: replay gave {answer['status']} at "
                                             f"version {answer['version']}, the record says {h['status']} at "
                                             f"{h['version']} (from version {before}): the strategy is not "
                                             "deterministic or the checkpoint does not match the journal")
                else:
                    raise JournalCorrupt(f"journal offset {record.offset}: unknown record type {h.get('type')!r}")
                self.replayed += 1
        finally:
            self._replaying = False
        if self.replayed:
            log.info("replayed %d journal record(s) from offset %d in %.2f s: version %d", self.replayed, start,
                     time.monotonic() - began, self.model.version)

    def latest(self) -> Snapshot:
        """The newest visible version (durable when there is a journal); any thread may call it."""
        return self._visible

    def advance_visible(self) -> bool:
        """Make every version whose records are durable visible; True if the visible one moved.
        Only the gevent loop calls this (so one thread pops `_pending`)."""
        durable = self.journal.durable if self.journal else math.inf
        while self._pending and self._pending[0][0] <= durable:
            self._visible = self._pending.popleft()[1]
        if self._visible.version == self._announced:
            return False
        self._announced = self._visible.version
        self.telemetry.set_version(self._announced)
        return True

    def _published(self, restore: bool = False) -> None:
        """A new version exists: snapshot it for pulls and rollback, count it, maybe checkpoint."""
        self.moved = False
        snap = self.model.snapshot()
        self.versions.add(snap)
        if self.journal is None or self._replaying or restore:
            self._visible = snap
            self.telemetry.set_version(snap.version)
        else:
            self._pending.append((self.journal.next_offset, snap))
        every = self.cfg.checkpoint_every_versions()
        due = every > 0 and self.model.version - max(self.last_ckpt_version, 0) >= every
        if not (restore or self._replaying) and self.cfg.checkpoint_dir and due:
            self.checkpoint()
