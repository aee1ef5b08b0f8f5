"""Opening the SQLite files that hold activation records, driver state and the bridge queue.

WAL mode lets `owtrain activation list` read while an invoker writes; `synchronous=FULL` makes a
commit survive a SIGKILL or power loss, which is what "persist before answering 2xx" relies on.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: Path, schema: str) -> sqlite3.Connection:
    """A connection usable from several threads (callers serialise with their own lock)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.executescript(schema)
    return conn
