"""The local invoker's activation records in SQLite, shaped like OpenWhisk's.

A record is created (unfinished) when an invocation is admitted and completed when it ends, so
`owtrain activation list` shows running activations too, and an invoker that died (SIGKILL) leaves
records that the next invoker on the same file marks as `whisk internal error`: a caller polling
such an id learns that it will never finish instead of waiting for ever.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from owtrain.errors import ObjectMissing
from wsk.invoker.base import Activation
from wsk.sqlite import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS activations (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, status TEXT, result TEXT, start INTEGER NOT NULL,
    end INTEGER, logs TEXT NOT NULL DEFAULT '[]', annotations TEXT NOT NULL DEFAULT '{}', owner INTEGER
);
CREATE INDEX IF NOT EXISTS activations_start ON activations(start);
"""
ORPHANED = "The invoker running this activation stopped before it finished."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def now_ms() -> int:
    return int(time.time() * 1000)


class ActivationStore:
    """Create, finish, read and list activation records in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, SCHEMA)
        self.lock = threading.Lock()

    def close(self) -> None:
        self.conn.close()

    def create(self, activation_id: str, name: str) -> None:
        with self.lock:
            self.conn.execute("INSERT INTO activations (id, name, start, owner) VALUES (?, ?, ?, ?)",
                              (activation_id, name, now_ms(), os.getpid()))

    def finish(self, activation: Activation) -> None:
        with self.lock:
            self.conn.execute(
                "UPDATE activations SET status=?, result=?, start=?, end=?, logs=?, annotations=? WHERE id=?",
                (activation.status, json.dumps(activation.result), activation.start, activation.end,
                 json.dumps(activation.logs), json.dumps(activation.annotations), activation.activation_id))

    def fail_orphans(self) -> int:
        """Mark unfinished records of invokers that no longer run; returns how many."""
        with self.lock:
            rows = self.conn.execute("SELECT id, owner FROM activations WHERE end IS NULL").fetchall()
            dead = [r["id"] for r in rows if r["owner"] is None or not _pid_alive(int(r["owner"]))]
            for activation_id in dead:
                self.conn.execute("UPDATE activations SET status=?, result=?, end=? WHERE id=?",
                                  ("whisk internal error", json.dumps({"error": ORPHANED}), now_ms(), activation_id))
        return len(dead)

    def get(self, activation_id: str) -> Activation | None:
        """The finished activation; None while it runs; ObjectMissing for an unknown id."""
        with self.lock:
            row = self.conn.execute("SELECT * FROM activations WHERE id=?", (activation_id,)).fetchone()
        if row is None:
            raise ObjectMissing(f"no activation {activation_id!r} in this invoker's records")
        return None if row["end"] is None else _activation(row)

    def list(self, name: str | None = None, limit: int = 30, skip: int = 0,
             since: int | None = None, upto: int | None = None) -> list[dict[str, Any]]:
        """Newest first, OpenWhisk-shaped summaries (unfinished ones have no `end`)."""
        where, args = ["1=1"], []
        for clause, value in (("name=?", name), ("start>=?", since), ("start<=?", upto)):
            if value is not None:
                where.append(clause)
                args.append(value)
        query = f"SELECT * FROM activations WHERE {' AND '.join(where)} ORDER BY start DESC LIMIT ? OFFSET ?"
        with self.lock:
            rows = self.conn.execute(query, (*args, limit, skip)).fetchall()
        return [_activation(r).to_record() if r["end"] is not None else
                {"activationId": r["id"], "name": r["name"], "start": r["start"], "status": "running"}
                for r in rows]


def _activation(row: sqlite3.Row) -> Activation:
    return Activation(activation_id=row["id"], name=row["name"], status=row["status"],
                      result=json.loads(row["result"]) if row["result"] else None, start=row["start"],
                      end=row["end"], logs=json.loads(row["logs"]), annotations=json.loads(row["annotations"]))
