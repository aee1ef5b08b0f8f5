"""The sessions of one `owtrain local` run (the first and each `--resume`), so that the report covers
the whole run and not only its last session.

The parameter server counts updates and samples its history in memory, per process: a resumed
run's server starts those counts afresh. Each session that ends cleanly (finished or Ctrl-C)
appends what its server counted to `RUN_DIR/sessions.json`; the report adds them up. The driver's
records (activations, samples, busy time) already span every session. A session killed outright
(SIGKILL, a crash) appends nothing: its updates are in the model but not in the counts, which the
report then undercounts (docs/reliability.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localrun.report import Point

SESSIONS_FILE = "sessions.json"


@dataclass(frozen=True)
class Session:
    """What one session's parameter server counted, and its evaluation and loss points."""

    started: float
    finished: float
    updates_applied: int
    rejected: Mapping[str, int]
    interrupted: bool
    points: Sequence[Point] = field(default_factory=list)


@dataclass(frozen=True)
class WholeRun:
    """The sessions added up: first start, total updates, rejections by reason, every point in time order."""

    started: float
    updates_applied: int
    rejected: dict[str, int]
    points: list[Point]
    sessions: int


def load_sessions(run_dir: Path) -> list[Session]:
    """The sessions recorded so far (none for a new run; an unreadable file counts as none)."""
    try:
        data = json.loads((run_dir / SESSIONS_FILE).read_text())
    except (OSError, ValueError):
        return []
    out = []
    for item in data if isinstance(data, list) else []:
        try:
            points = [Point(**p) for p in item.get("points", [])]
            out.append(Session(float(item["started"]), float(item["finished"]), int(item["updates_applied"]),
                               dict(item.get("rejected", {})), bool(item.get("interrupted")), points))
        except (KeyError, TypeError, ValueError):
            continue
    return out


def record_session(run_dir: Path, session: Session) -> WholeRun:
    """Append `session` to the run's sessions (atomically) and return the whole run so far."""
    sessions = [*load_sessions(run_dir), session]
    path = run_dir / SESSIONS_FILE
    tmp = path.with_name(f".{SESSIONS_FILE}.tmp")
    tmp.write_text(json.dumps([_jsonable(s) for s in sessions]))
    os.replace(tmp, path)
    rejected: dict[str, int] = {}
    for s in sessions:
        for reason, n in s.rejected.items():
            rejected[reason] = rejected.get(reason, 0) + int(n)
    points = sorted((p for s in sessions for p in s.points), key=lambda p: p.time)
    return WholeRun(started=min(s.started for s in sessions), updates_applied=sum(s.updates_applied for s in sessions),
                    rejected=rejected, points=points, sessions=len(sessions))


def _jsonable(session: Session) -> dict[str, Any]:
    data = asdict(session)
    data["rejected"] = dict(session.rejected)
    return data
