"""What every route needs: the token check, the JSON body and the worker a call may name."""

from __future__ import annotations

import math
from typing import Any

from owtrain.errors import BadRequest, Forbidden
from owtrain.parse import json_object, parse_int
from owtrain.tokens import ADMIN, Claims, bearer, verify_token
from param_server.runtime import Runtime


def claims(rt: Runtime, authorization: str | None, admin: bool = False) -> Claims:
    """The verified token of a request (Unauthorized / Forbidden); a worker's call marks it active."""
    c = verify_token(rt.cfg.secret, rt.cfg.job, bearer(authorization))
    if admin and c.worker != ADMIN:
        raise Forbidden("this call needs the admin token (a token whose worker is 'admin')")
    if not admin:
        rt.telemetry.touch(c.worker)
    return c


def open_read(rt: Runtime, authorization: str | None) -> None:
    """Read-only calls need a token only with `--protect-reads`."""
    if not rt.cfg.open_reads:
        claims(rt, authorization)


def json_body(data: bytes) -> dict[str, Any]:
    body = json_object(data)
    if body is None:
        raise BadRequest("request body must be a JSON object")
    return body


def own_worker(c: Claims, named: Any) -> str:
    """The token's worker; Forbidden when the body names another one."""
    if named is not None and str(named) != c.worker:
        raise Forbidden(f"token is for worker {c.worker!r}, request names {named!r}")
    return c.worker


def int_arg(raw: str | None, name: str) -> int | None:
    return None if raw in (None, "") else parse_int(raw, f"query parameter {name}")


def float_arg(raw: str | None, name: str, default: float) -> float:
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise BadRequest(f"query parameter {name} must be finite")
    return value
