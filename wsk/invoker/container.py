"""One local "container": an `owtrain action serve` process on a free loopback port.

It plays the part Docker plays for OpenWhisk's invoker: the process is started by
`owtrain.supervised.spawn` (its own session, so the whole tree can be killed; it dies with the
invoker's process, SIGKILL included), is watched for memory
(RSS of its process tree against the limit, like `docker run --memory`), and its stdout/stderr are
collected line by line and split into activations at the sentinel lines.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import requests

from owtrain import supervised
from wsk.invoker.protocol import LOGS_TRUNCATED_MSG, SENTINEL, log_line

log = logging.getLogger(__name__)
WATCH_INTERVAL_S = 0.02


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants (0 once it is gone)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{current}/task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return total


@dataclass(frozen=True)
class Reply:
    """What a watched call ended with: an HTTP reply, or why there is none."""

    status_code: int = 0
    body: bytes = b""
    killed: str = ""  # "timeout" | "memory" | "exited" | ""


class Container:
    """A started, ready action server process (raises RuntimeError if it cannot start)."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str], start_timeout_s: float, log_limit: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_limit = log_limit
        self.initialized = False
        self._streams: dict[str, deque[str]] = {"stdout": deque(), "stderr": deque()}
        self._cond = threading.Condition()
        self.proc = supervised.spawn([a.replace("{port}", str(self.port)) for a in argv], role="action",
                                     port=self.port, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for name, pipe in (("stdout", self.proc.stdout), ("stderr", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, pipe), daemon=True).start()
        self._wait_ready(start_timeout_s)

    def _read(self, name: str, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            with self._cond:
                self._streams[name].append(log_line(name, raw.decode(errors="replace").rstrip("\n")))
                self._cond.notify_all()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"action server exited with {self.proc.returncode} while starting: "
                                   + " | ".join(self.take_logs(0)[-5:]))
            try:
                requests.get(self.url + "/", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"action server did not answer on {self.url} within {timeout:.0f}s")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, path: str, body: dict[str, Any], deadline: float, memory_bytes: int) -> Reply:
        """POST `body` to `path`, killing the container at `deadline` (monotonic) or over memory."""
        outcome: list[Reply] = []

        def post() -> None:
            try:
                resp = requests.post(self.url + path, json=body, timeout=max(deadline - time.monotonic(), 0) + 30)
                outcome.append(Reply(resp.status_code, resp.content))
            except requests.RequestException:
                outcome.append(Reply(killed="exited"))

        worker = threading.Thread(target=post, daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(WATCH_INTERVAL_S)
            if not worker.is_alive():
                break
            if time.monotonic() >= deadline:
                self.kill()
                return Reply(killed="timeout")
            if tree_rss_bytes(self.proc.pid) > memory_bytes:
                self.kill()
                return Reply(killed="memory")
        return outcome[0]

    def take_logs(self, wait_s: float) -> list[str]:
        """This activation's log lines: up to the sentinel on each stream (waiting up to `wait_s`)."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            while not all(any(SENTINEL in line for line in q) for q in self._streams.values()):
                left = deadline - time.monotonic()
                if left <= 0 or not self.alive:
                    break
                self._cond.wait(left)
            lines: list[str] = []
            for q in self._streams.values():
                while q:
                    line = q.popleft()
                    if SENTINEL in line:
                        break
                    lines.append(line)
        lines.sort()  # each line starts with its timestamp: interleave the two streams in time order
        return _truncate(lines, self.log_limit)

    def kill(self) -> None:
        """SIGKILL the container's whole process group and reap it."""
        supervised.kill(self.proc, "action")


def _truncate(lines: list[str], limit: int) -> list[str]:
    kept, size = [], 0
    for line in lines:
        size += len(line.encode())
        if size > limit:
            kept.append(log_line("stderr", LOGS_TRUNCATED_MSG.format(limit=limit)))
            break
        kept.append(line)
    return kept
