"""The driver's durable state: one row per shard chain, in SQLite.

A chain is the sequence of activations that trains one shard: each returns the cursor the next
one starts from. The row holds the cursor of the last *finished* activation and the id of the one
in flight, committed as soon as it is known, so a driver killed at any point and restarted on the
same file polls the activation it had started (instead of starting it again) and continues from
the last recorded cursor (instead of skipping or repeating a stretch of the shard).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owtrain.errors import ConfigError
from wsk.sqlite import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shards (
    n INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT UNIQUE NOT NULL, url TEXT, sha256 TEXT,
    status TEXT NOT NULL DEFAULT 'pending', cursor TEXT, epoch INTEGER NOT NULL DEFAULT 0,
    samples INTEGER NOT NULL DEFAULT 0, activations INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0, not_before REAL NOT NULL DEFAULT 0,
    activation_id TEXT, error TEXT, added REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
    activation_id TEXT PRIMARY KEY, shard TEXT NOT NULL, cursor TEXT, status TEXT, samples INTEGER,
    started REAL NOT NULL, ended REAL, phases TEXT
);
"""
# pending: waiting to be invoked; running: an activation is in flight; done / failed / stopped: final.
FINAL = ("done", "failed", "stopped")


@dataclass(frozen=True)
class Shard:
    """One chain's row. `worker` is the PS identity of the chain (one per shard, so `seq` is too)."""

    n: int
    key: str
    url: str | None
    sha256: str | None
    status: str
    cursor: dict[str, Any] | None
    epoch: int
    samples: int
    attempts: int
    activation_id: str | None
    error: str | None

    @property
    def worker(self) -> str:
        return f"w{self.n}"


@dataclass(frozen=True)
class Summary:
    """Counts over all chains, for the CLI's last line and the progress bar."""

    shards: int
    done: int
    failed: int
    running: int
    samples: int
    epochs_done: int  # over all shards, for the progress bar


class DriverState:
    """Reads and writes the state file; every method commits before it returns."""

    def __init__(self, path: Path) -> None:
        self.conn = connect(path, SCHEMA)
        self.lock = threading.Lock()
        columns = {r["name"] for r in self.conn.execute("PRAGMA table_info(history)")}
        if "phases" not in columns:  # a state file from before activations reported their phases
            self.conn.execute("ALTER TABLE history ADD COLUMN phases TEXT")

    def close(self) -> None:
        self.conn.close()

    def bind_job(self, settings: dict[str, Any]) -> None:
        """Record the job's identity on first use; refuse a state file of another job."""
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key='job'").fetchone()
            text = json.dumps(settings, sort_keys=True)
            if row is None:
                self.conn.execute("INSERT INTO meta VALUES ('job', ?)", (text,))
            elif json.loads(row["value"]) != settings:
                raise ConfigError(f"this state file belongs to another job ({row['value']}); "
                                  "use another --state file or the same job settings")

    def get_meta(self, key: str) -> str | None:
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row["value"]

    def set_meta(self, key: str, value: str) -> None:
        with self.lock:
            self.conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def add(self, key: str, url: str | None = None, sha256: str | None = None) -> bool:
        """Add a chain for `key`; False when it exists (a fresher URL for the same bytes is kept)."""
        with self.lock:
            cur = self.conn.execute("INSERT OR IGNORE INTO shards (key, url, sha256, added) VALUES (?, ?, ?, ?)",
                                    (key, url, sha256, time.time()))
            if cur.rowcount == 0 and url:
                self.conn.execute("UPDATE shards SET url=? WHERE key=? AND sha256=?", (url, key, sha256))
            return cur.rowcount == 1

    def shards(self, status: str | None = None) -> list[Shard]:
        query = "SELECT * FROM shards" + (" WHERE status=?" if status else "") + " ORDER BY n"
        with self.lock:
            rows = self.conn.execute(query, (status,) if status else ()).fetchall()
        return [_shard(r) for r in rows]

    def runnable(self, limit: int) -> list[Shard]:
        """Pending chains whose retry back-off is over, oldest first."""
        with self.lock:
            rows = self.conn.execute("SELECT * FROM shards WHERE status='pending' AND not_before<=? "
                                     "ORDER BY n LIMIT ?", (time.time(), limit)).fetchall()
        return [_shard(r) for r in rows]

    def resolved(self, key: str, url: str, sha256: str) -> None:
        with self.lock:
            self.conn.execute("UPDATE shards SET url=?, sha256=? WHERE key=?", (url, sha256, key))

    def started(self, shard: Shard, activation_id: str) -> None:
        with self.lock, self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute("UPDATE shards SET status='running', activation_id=? WHERE key=?",
                              (activation_id, shard.key))
            self.conn.execute("INSERT INTO history (activation_id, shard, cursor, started) VALUES (?, ?, ?, ?)",
                              (activation_id, shard.key, json.dumps(shard.cursor), time.time()))

    def advanced(self, shard: Shard, status: str, samples: int, cursor: dict[str, Any] | None, epoch: int, done: bool,
                 phases: dict[str, Any] | None = None) -> None:
        """A successful activation: move the cursor, count the samples, maybe finish the chain;
        `phases` is where the activation's time went (its result's `phases`, owtrain.phases)."""
        with self.lock, self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "UPDATE shards SET status=?, cursor=?, epoch=?, samples=samples+?, activations=activations+1, "
                "attempts=0, activation_id=NULL, error=NULL WHERE key=?",
                ("done" if done else "pending", json.dumps(cursor), epoch, samples, shard.key))
            self._ended(shard.activation_id, status, samples, phases)

    def failed(self, shard: Shard, status: str, error: str, retry_at: float | None,
               phases: dict[str, Any] | None = None) -> None:
        """A failed activation: retry the same cursor at `retry_at`, or give the chain up (None)."""
        with self.lock, self.conn:
            self.conn.execute("BEGIN")
            self.conn.execute(
                "UPDATE shards SET status=?, attempts=attempts+1, not_before=?, activation_id=NULL, error=? "
                "WHERE key=?", ("pending" if retry_at is not None else "failed", retry_at or 0, error, shard.key))
            self._ended(shard.activation_id, status, 0, phases)

    def stop_pending(self) -> int:
        """Stop every chain that is not running (target accuracy reached); returns how many."""
        with self.lock:
            return self.conn.execute("UPDATE shards SET status='stopped' WHERE status='pending'").rowcount

    def history(self, key: str) -> list[dict[str, Any]]:
        """The activations of one chain in the order they were started."""
        with self.lock:
            rows = self.conn.execute("SELECT * FROM history WHERE shard=? ORDER BY started", (key,)).fetchall()
        return [{**dict(r), "cursor": json.loads(r["cursor"]), "phases": json.loads(r["phases"] or "null")}
                for r in rows]

    def summary(self, epochs: int) -> Summary:
        rows = self.shards()
        return Summary(
            shards=len(rows), done=sum(r.status == "done" for r in rows), failed=sum(r.status == "failed" for r in rows),
            running=sum(r.status == "running" for r in rows), samples=sum(r.samples for r in rows),
            epochs_done=sum(epochs if r.status == "done" else min(r.epoch, epochs) for r in rows))

    def _ended(self, activation_id: str | None, status: str, samples: int, phases: dict[str, Any] | None) -> None:
        self.conn.execute("UPDATE history SET status=?, samples=?, ended=?, phases=? WHERE activation_id=?",
                          (status, samples, time.time(), None if phases is None else json.dumps(phases),
                           activation_id))


def _shard(row: sqlite3.Row) -> Shard:
    return Shard(n=row["n"], key=row["key"], url=row["url"], sha256=row["sha256"], status=row["status"],
                 cursor=json.loads(row["cursor"]) if row["cursor"] else None, epoch=row["epoch"],
                 samples=row["samples"], attempts=row["attempts"], activation_id=row["activation_id"],
                 error=row["error"])
