"""One log line per rejected request, rate-limited, never a traceback.

A client's mistake is not the server's error: it is logged at INFO as one line naming the
request and the reason. A stream of bad requests (a broken worker, a scanner) must not fill the
disk, so at most `burst` lines are written at once and `rate` a second after that; the lines held
back are counted and the count is written with the next line that goes out.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("owtrain.rejected")


class RejectionLog:
    """A token bucket in front of `logging`: `note()` logs or counts one rejected request."""

    def __init__(self, rate: float = 5.0, burst: float = 20.0) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, time.monotonic()
        self.held_back = 0
        self.lock = threading.Lock()

    def note(self, status: int, reason: str, method: str, path: str, detail: str) -> None:
        """Log `METHOD path -> status reason: detail` unless over the rate (then only count it)."""
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens < 1.0:
                self.held_back += 1
                return
            self.tokens -= 1.0
            held, self.held_back = self.held_back, 0
        more = f" ({held} more rejections not logged)" if held else ""
        log.info("rejected %s %s -> %d %s: %s%s", _one_line(method[:16]), _one_line(path[:200]), status, reason,
                 _one_line(detail[:300]), more)


def _one_line(text: str) -> str:
    """`text` as printable ASCII on one line (a client chooses these bytes)."""
    return text.encode("ascii", "backslashreplace").decode().replace("\n", "\\n").replace("\r", "\\r")


# One per process: every layer (the WSGI server and the apps on it) shares the same rate.
REJECTIONS = RejectionLog()
