"""What every fuzz module of the reliability suite shares: hypothesis settings, generators of
hostile bodies and headers, a raw-socket client, and the checks on a server's log.

The settings are derandomised (the same cases on every run, so CI is reproducible) and keep no
example database; `CASES` counts the generated cases each module really sent, so the suite can
assert its own size (docs/reliability.md quotes the counts).
"""

from __future__ import annotations

import json
import re
import socket
from collections import Counter
from typing import Any

import requests
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])
CASES: Counter[str] = Counter()

# JSON of any shape: scalars, nested lists and objects, odd strings (surrogate escapes come below).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


# Bodies a JSON endpoint must refuse or accept with a 4xx/2xx, never a 5xx.
hostile_bytes = st.one_of(
    st.binary(max_size=512),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.integers(2_000, 200_000).map(_deep),
    st.integers(2_000, 50_000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b'{"a": NaN}', b'{"a": Infinity}', b'"\\ud800"', b'{"k": "\\udc00\\ud800"}',
                     b'{"version": ' + b"9" * 5000 + b"}", b"\xff\xfe{}", b"{\"a\": 1}\x00", b"", b"null"]),
)

# Header values as bytes on the wire can be any latin-1 character but CR/LF (requests also refuses a
# leading space; the raw-socket cases send those).
latin1_text = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255, exclude_characters="\r\n"),
                      max_size=80).map(str.lstrip)


def check(resp: requests.Response, module: str, allowed: range = range(100, 500)) -> requests.Response:
    """Count one case and fail on any status outside `allowed` (by default: any 5xx)."""
    CASES[module] += 1
    assert resp.status_code in allowed, f"{resp.request.method} {resp.request.url[:200]} -> " \
                                        f"{resp.status_code} {resp.text[:300]}"
    return resp


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send `data` on a fresh connection, half-close, and return everything the server answers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer and close before it read everything; the answer still counts
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError as exc:
            if not chunks:
                raise AssertionError(f"connection reset with no answer to {data[:120]!r}") from exc
        return b"".join(chunks)


def status_of(answer: bytes) -> int | None:
    """The status code of a raw HTTP answer, None if there is none."""
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match.group(1)) if match else None


# Raw request heads: valid-ish lines with hostile header bytes, lengths and framing.
_methods = st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"\xff\xfe", b"G\x00T", b""])


def raw_requests(paths: list[str]) -> st.SearchStrategy[bytes]:
    """Whole raw requests aimed at `paths`: header bytes 0x80-0xff, bad Content-Length, chunked garbage,
    truncated bodies, and over-long lines."""
    path = st.sampled_from([p.encode() for p in paths]) | st.binary(min_size=1, max_size=40).map(
        lambda b: b"/" + b.replace(b" ", b"").replace(b"\r", b"").replace(b"\n", b""))
    header = st.tuples(st.binary(min_size=1, max_size=20).filter(lambda b: b":" not in b and b"\n" not in b),
                       st.binary(max_size=60).filter(lambda b: b"\n" not in b and b"\r" not in b))
    framing = st.sampled_from([
        b"Content-Length: 5\r\n\r\nab",                      # truncated body
        b"Content-Length: abc\r\n\r\n", b"Content-Length: -1\r\n\r\n", b"Content-Length: 1_0\r\n\r\n",
        b"Content-Length: 99999999999999999999999\r\n\r\n", b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n", b"Transfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n", b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"\r\n", b"Content-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
    ])
    return st.builds(
        lambda method, p, headers, frame: method + b" " + p + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        + b"".join(k + b": " + v + b"\r\n" for k, v in headers) + frame,
        _methods, path, st.lists(header, max_size=5), framing)


# Framings of a request whose body the route reads: each must be answered with a 4xx, never a 5xx.
FRAMING = {
    "truncated body": b"Content-Length: 50\r\nContent-Type: application/json\r\n\r\n{\"a\":",
    "chunked garbage": b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\nzz\r\nabc\r\n",
    "chunk cut short": b"Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n50\r\n{\"a\"",
    "huge chunk size": b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
    "length not digits": b"Content-Length: 1_0\r\n\r\n0123456789",
    "negative length": b"Content-Length: -1\r\n\r\n",
    "huge length": b"Content-Length: 99999999999999999999999\r\n\r\n",
}


def framed(path: str, framing: str, headers: bytes = b"") -> bytes:
    return b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + FRAMING[framing]


OVERSIZED = {
    "request line": lambda: b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header line": lambda: b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"\xe9" * 100_000 + b"\r\n\r\n",
    "header count": lambda: b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 5000 + b"\r\n",
    "header bytes": lambda: b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 8000 + b"\r\n" * 1
                    + b"".join(b"X-%d: " % i + b"c" * 8000 + b"\r\n" for i in range(20)) + b"\r\n",
    "megabyte of headers": lambda: b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 200_000 + b"\r\n",
}
OVERSIZED_STATUS = {"request line": 414, "header line": 431, "header count": 431, "header bytes": 431,
                    "megabyte of headers": 431}


def assert_clean_log(text: str) -> None:
    """No traceback, no logging failure and no ERROR line: every rejection was a client's mistake."""
    assert "Traceback" not in text, text[text.index("Traceback") - 500:][:3000]
    assert "--- Logging error ---" not in text
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert not errors, errors[:5]


def rejection_lines(text: str) -> int:
    return sum(1 for line in text.splitlines() if "owtrain.rejected" in line)


def send_raw_suite(port: int, data: bytes) -> int:
    """One raw request; returns its status (an answer with a status is required, never 5xx)."""
    answer = raw_exchange(port, data)
    status = status_of(answer)
    if status is None:  # HTTP/0.9-looking garbage or an empty method: the server may close silently
        assert answer == b"", answer[:200]
        return 0
    assert status < 500, answer[:300]
    return status


def any_json(value: Any) -> bytes:
    return json.dumps(value).encode()
