"""The gevent WSGI server every owtrain service runs on (parameter server, action, bridge).

Three things on top of gevent's pywsgi, so that all three servers get them:

- TCP_NODELAY on each accepted connection. pywsgi sends the status line and headers, then the
  body, in two writes; with Nagle's algorithm the second waits for the client's delayed ACK,
  which costs ~40 ms on every request (measured: 19 → 170 pushes/s).
- Bounded, strict request heads. Header lines over 8 KiB, more than 100 headers or more than
  64 KiB of headers get 431 (RFC 6585), a request line over 8 KiB gets 414 (RFC 9112 §3 asks for
  414 there), a Content-Length that is not plain digits gets 400. Each is one rate-limited log
  line (`owtrain.rejections`), never a traceback, and the connection is closed gracefully: the
  answer is sent, our side is shut down and what the client is still sending is drained for a
  moment, so the client reads the status instead of a reset.
- A request body cut short or with broken chunking is the client's error (400), not a crash.
- owtrain's own errors (`OwtrainError`) raised on gevent's thread pool are results, not crashes:
  the hub would otherwise print a traceback for every rejected push decoded off the loop.
"""

from __future__ import annotations

import io
import json
import socket
import time
from typing import Any

import gevent
from gevent.pywsgi import MAX_REQUEST_LINE, WSGIHandler, WSGIServer, headers_factory
from werkzeug.exceptions import ClientDisconnected

from owtrain.errors import OwtrainError
from owtrain.rejections import REJECTIONS

MAX_HEADER_LINE = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
MAX_LENGTH_DIGITS = 18  # a Content-Length must fit the readers' 64-bit sizes (each app caps it far lower)
# After an error answer: how long and how much of the client's unread request is drained.
LINGER_S = 1.0
LINGER_BYTES = 4 * 1024 * 1024


class HeadTooLarge(ValueError):
    """The request's headers are over a limit (431)."""


class BadHead(ValueError):
    """The request's head is malformed in a way pywsgi lets through (400)."""


def _answer(status: str, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message, "reason": reason}).encode()
    return (f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body


class _BodyReader:
    """`wsgi.input` that reports a body cut short or badly chunked as the client's error.

    pywsgi raises OSError there, which Flask would answer with a 500 and a traceback; werkzeug's
    `ClientDisconnected` is a 400 (a client that really went away never reads the answer anyway).
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def _guard(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.inner, method)(*args)
        except OSError as exc:
            raise ClientDisconnected(f"the request body is cut short or malformed: {exc}") from None

    def read(self, *args: Any) -> bytes:
        return bytes(self._guard("read", *args))

    def read_exactly(self, length: int) -> bytearray:
        """The next `length` bytes of a Content-Length body in one preallocated buffer, filled by
        `readinto` straight from the socket's reader (no chunk list, no join, no second copy).
        A body that ends early raises ClientDisconnected (400)."""
        inner = self.inner
        buf = bytearray(length)
        view = memoryview(buf)
        inner._send_100_continue()
        got = 0
        try:
            while got < length:
                n = inner.rfile.readinto(view[got:])
                if not n:
                    break
                got += n
        except OSError as exc:
            raise ClientDisconnected(f"the request body is cut short or malformed: {exc}") from None
        finally:
            inner.position += got  # pywsgi discards what the app left unread before the next request
        if got < length:
            raise ClientDisconnected(f"the body is cut short: {got} of {length} bytes")
        return buf

    def readline(self, *args: Any) -> bytes:
        return bytes(self._guard("readline", *args))

    def readlines(self, *args: Any) -> list[bytes]:
        return list(self._guard("readlines", *args))

    def __iter__(self) -> Any:
        return iter(self.readline, b"")


class StrictHandler(WSGIHandler):
    """pywsgi's handler with bounded header parsing, strict Content-Length and graceful errors."""

    def get_environ(self) -> Any:
        environ = super().get_environ()
        environ["wsgi.input"] = _BodyReader(environ["wsgi.input"])
        return environ

    def MessageClass(self, fp: Any, *args: Any) -> Any:  # noqa: N802 (pywsgi's name)
        """Read the header block within the limits, then let pywsgi parse the bounded bytes."""
        lines, total = [], 0
        while True:
            line = fp.readline(MAX_HEADER_LINE + 1)
            if len(line) > MAX_HEADER_LINE:
                raise HeadTooLarge(f"a header line is over {MAX_HEADER_LINE} bytes")
            total += len(line)
            if total > MAX_HEADER_BYTES:
                raise HeadTooLarge(f"the headers are over {MAX_HEADER_BYTES} bytes")
            lines.append(line)
            if line in (b"\r\n", b"\n", b""):
                break
            if len(lines) > MAX_HEADERS:
                raise HeadTooLarge(f"more than {MAX_HEADERS} headers")
        return headers_factory(io.BytesIO(b"".join(lines)))

    def read_request(self, raw_requestline: str) -> bool:
        ok = super().read_request(raw_requestline)
        length = self.headers.get("content-length")
        if length is not None and not (length.isascii() and length.isdigit() and len(length) <= MAX_LENGTH_DIGITS):
            raise BadHead(f"Content-Length must be plain decimal digits below 10**{MAX_LENGTH_DIGITS}, "
                          f"got {ascii(length[:40])}")
        return bool(ok)

    def _handle_client_error(self, ex: BaseException) -> tuple[str, bytes]:
        """One log line and a JSON answer for a request pywsgi could not parse (no traceback)."""
        if isinstance(ex, HeadTooLarge):
            status, reason, message = "431 Request Header Fields Too Large", "headers_too_large", str(ex)
        else:
            status, reason = "400 Bad Request", "bad_request"
            message = getattr(ex, "formatted_message", None) or str(ex) or type(ex).__name__
        self._note(int(status[:3]), reason, message)
        return status[:3], _answer(status, reason, message)

    def handle_one_request(self) -> Any:
        result = super().handle_one_request()
        if not isinstance(result, tuple):
            return result
        status, body = result
        if status == "414":
            message = f"the request line is over {MAX_REQUEST_LINE - 1} bytes"
            self._note(414, "uri_too_long", message)
            body = _answer("414 URI Too Long", "uri_too_long", message)
        try:
            self.socket.sendall(body)
        except OSError:
            return None
        self._linger()
        return None

    def _note(self, status: int, reason: str, message: str) -> None:
        words = (getattr(self, "requestline", "") or "").split()
        REJECTIONS.note(status, reason, words[0] if words else "-", words[1] if len(words) > 1 else "-",
                        f"{message} (from {self.client_address})")

    def _linger(self) -> None:
        """Half-close and read what the client still sends (bounded), so it sees our answer and not
        a reset caused by closing a socket with unread data."""
        sock = self.socket
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(LINGER_S)
            deadline, drained = time.monotonic() + LINGER_S, 0
            while drained < LINGER_BYTES and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass


class NoDelayWSGIServer(WSGIServer):
    """gevent's WSGI server with TCP_NODELAY, the strict handler and quiet thread-pool errors."""

    handler_class = StrictHandler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hub = gevent.get_hub()
        if not issubclass(OwtrainError, hub.NOT_ERROR):
            hub.NOT_ERROR = (*hub.NOT_ERROR, OwtrainError)

    def handle(self, sock: socket.socket, address: tuple[Any, ...]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle(sock, address)
