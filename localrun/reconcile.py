"""After a crash, `owtrain local --resume` makes sure the driver's records and the parameter server's
recovered state agree before it trains on.

The driver records, per shard chain, the cursor of the last activation that ended (its `seq` is the
number of the chain's next push); the server's ledger records every push it took, by worker and
seq, and is recovered from the newest checkpoint plus the update journal. With the journal (the
default) the two agree: the server has taken every push the records count, and maybe a few more
from an activation that was running at the crash, which the resumed chain repeats as duplicates
(answered, not applied twice).

If the server is *behind* the records (its journal was disabled, deleted or damaged, or its
checkpoints were removed), some acknowledged updates are missing from the model while the records
count their samples as trained. Training on would silently break "every shard-epoch exactly
once", so the resume is refused with what happened and what to do (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from owtrain.errors import RecordsDisagree
from owtrain.ps_shards import ShardSet

DRIVER_DB = "driver.db"


def check_records_agree(run_dir: Path, admin: ShardSet) -> None:
    """RecordsDisagree naming each chain whose recorded pushes the recovered server (every shard of
    it: a push counts once every shard has it) does not have."""
    from param_server.checkpoint import read_state
    from wsk.state import DriverState

    db = run_dir / DRIVER_DB
    if not db.exists():  # a new run: nothing recorded yet
        return
    answers = admin.admin("checkpoint")  # the recovered state (checkpoint + journal replay), on disk now
    if not all(a.get("path") for a in answers):
        return
    ledgers = [read_state(Path(a["path"])).get("ledger", {}) for a in answers]
    state = DriverState(db)
    try:
        behind = []
        for shard in state.shards():
            recorded = _recorded_pushes(shard.cursor, state.history(shard.key))
            taken = min(_next_seq(ledger, shard.worker) for ledger in ledgers)
            if taken < recorded:
                behind.append(f"{shard.worker} ({shard.key}): the records count {recorded} pushes, "
                              f"the server has {taken}")
    finally:
        state.close()
    if behind:
        raise RecordsDisagree(
            f"the parameter server of {run_dir} recovered fewer updates than the driver recorded as trained "
            f"({'; '.join(behind)}): its update journal or checkpoints were lost or disabled, so resuming would "
            "skip those samples. Start a new run (another --run-dir), or restore the run folder's checkpoints/ "
            "and checkpoints/journal/ from a backup and resume again")


def _recorded_pushes(cursor: dict[str, Any] | None, history: list[dict[str, Any]]) -> int:
    """How many pushes the records say the chain made: its cursor's `seq` (a finished chain keeps
    `{"seq", "done"}`: where it ended), or for a finished chain of an older state file (no cursor) at
    least the `seq` its last activation started from."""
    if cursor is not None:
        return int(cursor.get("seq", 0))
    starts = [int(h["cursor"].get("seq", 0)) for h in history if isinstance(h.get("cursor"), dict)]
    return max(starts, default=0)


def _next_seq(ledger: dict[str, Any], worker: str) -> int:
    """The server's next expected seq for `worker`: one past the highest it took (0 if none)."""
    seen = [int(seq) for seq, _ in ledger.get("seen", {}).get(worker, [])]
    floor = int(ledger.get("floor", {}).get(worker, 0))
    return max([s + 1 for s in seen] + [floor])
