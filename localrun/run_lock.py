"""The lock of a run folder: one `owtrain local` session at a time, and a list of what it runs.

`RUN_DIR/run.lock` is held with `flock` for the whole session (the kernel drops it when the
session's process dies, however it dies), and `RUN_DIR/processes.json` names the session's
process and every child it has started (`owtrain.supervised`): pid, role, port and start time.

A second session on the same folder (`owtrain local --resume RUN_DIR` while the first still runs)
cannot take the lock and is refused with what to do. A session whose lock is free but whose
`processes.json` still names a live process (a child that outlived a crashed session, which the
parent-death signal should make impossible) is refused too: the new session never trains against
a server it did not start. The start time recorded with each pid tells a reused pid from the
process itself, so after a machine crash (every process gone) the folder is free again.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from owtrain import supervised
from owtrain.errors import ConfigError

LOCK_FILE = "run.lock"
PROCESSES_FILE = "processes.json"


class RunLock:
    """The held lock of one session; `close()` releases it (also when the process dies)."""

    def __init__(self, run_dir: Path, fd: int) -> None:
        self.run_dir = run_dir
        self._fd = fd
        self._mutex = threading.Lock()
        self._children: dict[int, dict[str, Any]] = {}
        self._owner = {"pid": os.getpid(), "start_ticks": supervised.start_ticks(os.getpid()),
                       "argv": sys.argv, "started": time.time()}
        self._write()
        supervised.add_listener(self._on_child)

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Take the folder's lock; ConfigError saying what to do when another session holds it or
        an earlier session's processes still run."""
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = read_processes(run_dir).get("owner") or {}
            pid = owner.get("pid", "?")
            raise ConfigError(
                f"{run_dir} is in use by a running owtrain local session (pid {pid}); it was not resumed. "
                f"Stop that session first (Ctrl-C in its terminal, or `kill -INT {pid}`) and run "
                f"`owtrain local --resume {run_dir}` again, or train in another --run-dir") from None
        leftovers = live_children(run_dir)
        if leftovers:
            os.close(fd)
            listed = ", ".join(f"{c['role']} pid {c['pid']}" + (f" port {c['port']}" if c.get("port") else "")
                               for c in leftovers)
            kill = " ".join(f"-- -{c['pid']}" for c in leftovers)
            raise ConfigError(
                f"processes of an earlier session of {run_dir} still run ({listed}); this session will not "
                f"use them. Stop them (`kill -TERM {kill}`) and run `owtrain local --resume {run_dir}` again")
        return cls(run_dir, fd)

    def close(self) -> None:
        """Record that nothing runs any more and release the lock."""
        supervised.remove_listener(self._on_child)
        with self._mutex:
            self._children.clear()
            self._owner = {}
            self._write()
        os.close(self._fd)

    def _on_child(self, event: str, child: supervised.ChildInfo) -> None:
        with self._mutex:
            if event == "started":
                self._children[child.pid] = {"pid": child.pid, "role": child.role, "port": child.port,
                                             "start_ticks": child.start_ticks}
            else:
                self._children.pop(child.pid, None)
            self._write()

    def _write(self) -> None:
        """Rewrite processes.json atomically (a temp name, then a rename)."""
        path = self.run_dir / PROCESSES_FILE
        tmp = path.with_name(f".{PROCESSES_FILE}.tmp")
        tmp.write_text(json.dumps({"owner": self._owner or None, "children": list(self._children.values())},
                                  indent=2))
        os.replace(tmp, path)


def read_processes(run_dir: Path) -> dict[str, Any]:
    """What `processes.json` says (empty when there is none or it is unreadable)."""
    try:
        data = json.loads((run_dir / PROCESSES_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def live_children(run_dir: Path) -> list[dict[str, Any]]:
    """The children `processes.json` names that still run (same pid and start time)."""
    children = read_processes(run_dir).get("children") or []
    return [c for c in children if isinstance(c, dict) and isinstance(c.get("pid"), int)
            and supervised.is_running(c["pid"], c.get("start_ticks"))]
