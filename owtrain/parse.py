"""Strict parsing of untrusted request fields, shared by every server (PS, action, bridge).

Python's own parsers are generous: `int()` takes " 12", "+12", "1_2" and other scripts' digits
("١٢"), `json.loads` takes NaN and Infinity, lone UTF-16 surrogates and nesting deep enough to
raise RecursionError. A request field means one thing only, so each is parsed here: integers are
plain ASCII decimal digits within explicit bounds, JSON bodies are strict UTF-8 objects, and
every failure is a `BadRequest` naming the field (never another exception type).
"""

from __future__ import annotations

import json
from typing import Any

from owtrain.errors import BadRequest

# Bounds of the integer fields on the wire. Versions and sequence numbers are 63-bit counters
# (they never wrap in a job's life); one push covers at most a billion samples.
MAX_COUNTER = 2**63 - 1
MAX_SAMPLES = 10**9
_MAX_DIGITS = len(str(MAX_COUNTER))


def _show(raw: object) -> str:
    """A short, printable rendering of a rejected value for an error message."""
    text = ascii(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_int(raw: object, name: str, high: int = MAX_COUNTER, low: int = 0) -> int:
    """`raw` (text from a query, header or metadata field) as an integer in `low..high`.

    Only plain ASCII decimal digits are accepted: no sign, spaces, underscores or other digits.
    """
    if not (isinstance(raw, str) and 0 < len(raw) <= _MAX_DIGITS and raw.isascii() and raw.isdigit()):
        raise BadRequest(f"{name} must be a plain decimal integer, got {_show(raw)}")
    return _in_range(int(raw), name, low, high)


def json_int(raw: object, name: str, high: int = MAX_COUNTER, low: int = 0) -> int:
    """A JSON integer (not a bool, float or string) in `low..high`."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise BadRequest(f"{name} must be a JSON integer, got {_show(raw)}")
    return _in_range(raw, name, low, high)


def _in_range(value: int, name: str, low: int, high: int) -> int:
    if not low <= value <= high:
        raise BadRequest(f"{name} must be in {low}..{high}, got {_show(value)}")
    return value


def _no_constants(token: str) -> float:
    raise ValueError(f"{token} is not JSON")


def json_object(data: bytes) -> dict[str, Any] | None:
    """The JSON object in `data`, or None when `data` is anything else: not UTF-8, not JSON, not
    an object, nested too deeply to parse, or holding NaN/Infinity or lone surrogates (which no
    log file, database or environment variable downstream can store)."""
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_no_constants)
        if not isinstance(value, dict):
            return None
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # lone surrogates fail here
    except (UnicodeError, ValueError, RecursionError):
        return None
    return value
