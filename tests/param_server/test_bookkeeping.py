"""Exactly-once ledger, token buckets and atomic checkpoint files (no server)."""

from __future__ import annotations

import pytest
import torch

from owtrain.errors import CheckpointCorrupt, Throttled
from param_server import checkpoint
from param_server.admission import Admission
from param_server.ledger import Ledger


def test_ledger_remembers_and_forgets_below_window():
    ledger = Ledger(window=3)
    assert ledger.seen("w", 1) is None
    for seq in range(1, 6):
        ledger.record("w", seq, version=seq * 10)
    assert ledger.seen("w", 5) == 50
    assert ledger.seen("w", 1) is not None  # evicted but older than the window: still a duplicate
    assert ledger.seen("w", 6) is None
    assert ledger.seen("other", 1) is None
    restored = Ledger(window=3)
    restored.load(ledger.state())
    assert restored.seen("w", 4) == 40 and restored.seen("w", 1) is not None and restored.seen("w", 9) is None


def test_admission_per_worker_and_global():
    adm = Admission(worker_rate=1.0, worker_burst=2, global_rate=0, global_burst=0)
    adm.admit("a")
    adm.admit("a")
    with pytest.raises(Throttled) as info:
        adm.admit("a")
    assert 0 < info.value.retry_after <= 1.0
    adm.admit("b")  # other workers have their own bucket
    glob = Admission(worker_rate=0, worker_burst=0, global_rate=1.0, global_burst=1)
    glob.admit("a")
    with pytest.raises(Throttled, match="server-wide"):
        glob.admit("b")


def test_checkpoint_roundtrip_prune_and_corrupt(tmp_path):
    for v in range(1, 5):
        checkpoint.write_checkpoint(tmp_path, v, {"model::w": torch.full((2,), float(v))}, {"version": v})
    checkpoint.prune(tmp_path, keep=2)
    assert [v for v, _ in checkpoint.list_checkpoints(tmp_path)] == [3, 4]
    tensors, state = checkpoint.read_checkpoint(checkpoint.checkpoint_path(tmp_path, 4))
    assert state == {"version": 4} and torch.equal(tensors["model::w"], torch.full((2,), 4.0))
    assert not list(tmp_path.glob(".ckpt-*"))  # no temp files left behind
    bad = checkpoint.checkpoint_path(tmp_path, 9)
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(CheckpointCorrupt, match="ckpt-0000000009"):
        checkpoint.read_checkpoint(bad)


def test_version_store_keeps_a_count_and_a_byte_budget():
    from param_server.model_state import Snapshot, VersionStore

    store = VersionStore(keep=3, max_bytes=10 * 4 * 2)  # room for two snapshots of 10 floats
    for v in range(5):
        store.add(Snapshot(v, {"w": torch.zeros(10)}))
    assert store.versions() == [3, 4] and store.get(4) is not None and store.get(2) is None
    big = VersionStore(keep=3, max_bytes=1)
    big.add(Snapshot(0, {"w": torch.zeros(10)}))
    assert big.latest().version == 0  # the newest is kept even over the budget
