"""Per-worker tokens minted offline from the job secret (HMAC-SHA256, no server-side state).

A token is `owt1.<payload>.<sig>`: payload is base64url JSON `{"job", "worker", "exp"}` and sig
the base64url HMAC-SHA256 of `owt1.<payload>` under the job secret. The driver mints one per
worker, so the server needs only the secret to check any of them. Anything malformed, wrongly
signed or expired is `Unauthorized` (401); a genuine token for another job is `Forbidden` (403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from owtrain.errors import Forbidden, Unauthorized

PREFIX = "owt1"
ADMIN = "admin"


@dataclass(frozen=True)
class Claims:
    """Who a verified token speaks for and until when (`exp`, Unix seconds)."""

    job: str
    worker: str
    exp: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, signed_part: str) -> str:
    return _b64(hmac.new(secret.encode(), signed_part.encode("ascii"), hashlib.sha256).digest())


def mint_token(secret: str, job: str, worker: str, ttl_s: float) -> str:
    """A token for `worker` of `job`, valid for `ttl_s` seconds from now."""
    if not secret:
        raise ValueError("the job secret must not be empty")
    payload = _b64(json.dumps({"job": job, "worker": worker, "exp": time.time() + ttl_s}).encode())
    signed_part = f"{PREFIX}.{payload}"
    return f"{signed_part}.{_sign(secret, signed_part)}"


def verify_token(secret: str, job: str, token: str, now: float | None = None) -> Claims:
    """Check a token's signature, expiry and job; return its claims.

    Raises Unauthorized (malformed, bad signature, expired) or Forbidden (another job).
    """
    parts = token.split(".")
    if not token.isascii() or len(parts) != 3 or parts[0] != PREFIX:  # header bytes may be any latin-1
        raise Unauthorized(f"malformed token: expected {PREFIX}.<payload>.<signature>")
    signed_part = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(secret, signed_part), parts[2]):
        raise Unauthorized("token signature does not match this server's job secret")
    try:
        claims = json.loads(_unb64(parts[1]))
        job_claim, worker, exp = str(claims["job"]), str(claims["worker"]), float(claims["exp"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Unauthorized(f"malformed token payload: {exc}") from exc
    if exp < (time.time() if now is None else now):
        raise Unauthorized("token expired: mint a new one from the job secret")
    if job_claim != job:
        raise Forbidden(f"token is for job {job_claim!r}, this server runs job {job!r}")
    return Claims(job=job_claim, worker=worker, exp=exp)


def bearer(header: str | None) -> str:
    """The token in an `Authorization: Bearer <token>` header; Unauthorized when absent."""
    if not header:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <token>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <token>'")
    return token.strip()
