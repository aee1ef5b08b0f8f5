"""Child processes that cannot outlive their parent: the one way owtrain starts a process.

Every process that `owtrain local`, the driver (`owtrain train`) or the bridge (`owtrain bridge
serve`) starts — the parameter server, the local action "containers" — goes through `spawn`, which
gives it two ties to its parent:

- its own session (process group), so that a Ctrl-C in the terminal reaches only the parent, which
  then stops the children in order, and so that stopping a child stops whatever it started;
- Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG, SIGKILL)`, set in the child before exec),
  so that the kernel kills the child when the parent dies, however it dies: SIGKILL and crashes
  included, which no `finally` or `atexit` can handle.

The kernel sends the parent-death signal when the *thread* that forked the child ends, not the
process. So every fork happens on one long-lived spawner thread, whichever thread asks; that thread
lives as long as the process. A parent that dies between the fork and the `prctl` would leave the
child unsignalled: the child checks its parent pid after the `prctl` and ends itself then.

Whoever needs to know which children are alive (the run folder's lock file names them) registers a
listener with `add_listener`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ChildInfo:
    """A started child as the lock file records it: `start_ticks` tells a reused pid from it."""

    pid: int
    role: str
    port: int | None
    start_ticks: int | None


# (event, child): event is "started" or "ended".
Listener = Callable[[str, ChildInfo], None]
_listeners: list[Listener] = []
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()
_prctl: Any = None


def add_listener(listener: Listener) -> None:
    """Call `listener("started" | "ended", child)` for every child spawned or stopped from now on."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat); None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def is_running(pid: int, ticks: int | None) -> bool:
    """Whether the process `pid` that started at `ticks` still runs (not a zombie, not a reused pid)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and (ticks is None or int(fields[19]) == ticks)


def spawn(argv: Sequence[str], *, role: str, env: Mapping[str, str], port: int | None = None,
          stdin: int | IO[Any] | None = subprocess.DEVNULL, stdout: int | IO[Any] | None = None,
          stderr: int | IO[Any] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session, killed by the kernel when this process dies (see module doc).

    `role` and `port` only describe the child to the listeners (e.g. "ps", 29500).
    """
    prctl = _load_prctl()
    parent = os.getpid()

    def tie_to_parent() -> None:  # runs in the child, between fork and exec
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(list(argv), env=dict(env), stdin=stdin, stdout=stdout, stderr=stderr,
                                start_new_session=True, preexec_fn=tie_to_parent)

    proc = _spawner_thread().submit(start).result()
    _notify("started", ChildInfo(proc.pid, role, port, start_ticks(proc.pid)))
    return proc


def stop(proc: subprocess.Popen[bytes], role: str, timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM the child's group (a clean shutdown), SIGKILL it if it does not end within `timeout`."""
    try:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing it", role, proc.pid, timeout)
    except ProcessLookupError:
        pass
    kill(proc, role)


def kill(proc: subprocess.Popen[bytes], role: str) -> None:
    """SIGKILL the child's whole group and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        log.error("%s (pid %d) did not die after SIGKILL", role, proc.pid)
        return
    _notify("ended", ChildInfo(proc.pid, role, None, None))


def _notify(event: str, child: ChildInfo) -> None:
    for listener in list(_listeners):
        listener(event, child)


def _spawner_thread() -> ThreadPoolExecutor:
    """The one thread that forks every child (its life bounds theirs: PR_SET_PDEATHSIG is per thread)."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="owtrain-spawner")
        return _spawner


def _load_prctl() -> Any:
    """libc's prctl, looked up in the parent (not between fork and exec); None where there is none."""
    global _prctl
    if _prctl is None:
        try:
            _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
        except (OSError, AttributeError):
            log.warning("no prctl on this system: children are stopped on exit but not if this process is killed")
            _prctl = False
    return _prctl or None
