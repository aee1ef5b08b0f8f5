"""The server's error answers: JSON `{"error", "reason"}` with a precise status, the same from a
Flask route and from the thin hot path, each refused request counted and logged in one line."""

from __future__ import annotations

import math
from typing import Any

from werkzeug.exceptions import HTTPException

from owtrain.errors import (
    BadRequest,
    BadTensor,
    CheckpointCorrupt,
    Forbidden,
    JobClosed,
    ObjectMissing,
    OwtrainError,
    PayloadTooLarge,
    StaleUpdate,
    Throttled,
    Unauthorized,
)
from owtrain.rejections import REJECTIONS
from param_server.telemetry import Telemetry

PUSH_PATH = "/putGradient"

# error class → (HTTP status, reason code)
ERRORS: dict[type[OwtrainError], tuple[int, str]] = {
    BadTensor: (400, "bad_tensor"),
    BadRequest: (400, "bad_request"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    ObjectMissing: (404, "not_found"),
    StaleUpdate: (409, "stale"),
    JobClosed: (410, "closed"),
    PayloadTooLarge: (413, "too_large"),
    Throttled: (429, "throttled"),
    CheckpointCorrupt: (500, "checkpoint_corrupt"),
}

Answer = tuple[int, dict[str, Any], list[tuple[str, str]]]  # status, JSON body, extra headers


def too_large_message(limit: int) -> str:
    return (f"request body is over this server's limit of {limit} bytes (--max-body-mb); "
            "send a smaller or compressed update")


def owtrain_answer(exc: OwtrainError, tel: Telemetry, method: str, path: str) -> Answer:
    """The answer to one of owtrain's own errors (status from `ERRORS`, typed fields in the body)."""
    status, reason = next((v for k, v in ERRORS.items() if isinstance(exc, k)), (500, "internal"))
    body: dict[str, Any] = {"error": str(exc), "reason": reason}
    headers: list[tuple[str, str]] = []
    if isinstance(exc, BadTensor):
        body["tensor"] = exc.name
    if isinstance(exc, StaleUpdate):
        body["version"] = exc.current_version
        body["refresh"] = True
    if isinstance(exc, Throttled):
        headers.append(("Retry-After", str(max(1, math.ceil(exc.retry_after)))))
    if path == PUSH_PATH:
        tel.reject(reason)
    REJECTIONS.note(status, reason, method, path, str(exc))
    return status, body, headers


def http_answer(exc: HTTPException, limit: int, tel: Telemetry, method: str, path: str) -> Answer:
    """The answer to an HTTP-level error (404, 405, 413, a body cut short, ...)."""
    reason = "too_large" if exc.code == 413 else (exc.name or "http").lower().replace(" ", "_")
    if exc.code == 413 and path == PUSH_PATH:
        tel.reject(reason)
    message = too_large_message(limit) if exc.code == 413 else (exc.description or "")
    status = exc.code or 500
    REJECTIONS.note(status, reason, method, path, message)
    return status, {"error": message, "reason": reason}, []
