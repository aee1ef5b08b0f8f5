"""MinIO bucket notifications (reference §6.3): checking the webhook's token and reading its body.

Pure functions, so that every rule is tested without a server: the token check (MinIO prepends
`Bearer ` to a one-word token and sends a two-word one verbatim), which events count (only
`s3:ObjectCreated:*` — tagging an object re-fires a put-class event, so the key must match the
shard pattern too), and the key decoding (`Records[].s3.object.key` is Go-query-escaped: `+` is a
space, `%2F` a slash; `unquote_plus` undoes exactly that).
"""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from owtrain.errors import BadRequest, Unauthorized
from owtrain.parse import json_int

CREATED = "s3:ObjectCreated:"


@dataclass(frozen=True)
class ObjectCreated:
    """One object-created record of an S3 (MinIO) event notification."""

    bucket: str
    key: str
    etag: str
    size: int


def expected_authorization(token: str) -> str:
    """The `Authorization` header MinIO sends for its configured `auth_token`."""
    words = token.split()
    if len(words) == 1:
        return f"Bearer {words[0]}"
    if len(words) == 2:
        return token
    raise ValueError("the webhook token must be one word (sent as 'Bearer <token>') or two ('Basic <b64>')")


def check_authorization(header: str | None, token: str) -> None:
    """Unauthorized unless `header` is exactly what MinIO sends for `token` (constant-time)."""
    if not header or not hmac.compare_digest(header.encode(), expected_authorization(token).encode()):
        raise Unauthorized("wrong or missing Authorization header for this webhook")


def parse_notification(body: Any) -> tuple[list[ObjectCreated], int]:
    """The created objects in one notification body, and how many records were other events.

    BadRequest names the first malformed part (MinIO then retries, so nothing is lost).
    """
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        raise BadRequest("notification body must be a JSON object with a 'Records' list (MinIO webhook format)")
    created, other = [], 0
    for i, record in enumerate(body["Records"]):
        try:
            name = record["eventName"]
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = unquote_plus(obj["key"]) if isinstance(obj["key"], str) else None
        except (KeyError, TypeError) as exc:
            raise BadRequest(f"Records[{i}] lacks {exc} (expected eventName, s3.bucket.name, s3.object.key)") from exc
        if key is None or not isinstance(obj, dict):
            raise BadRequest(f"Records[{i}].s3.object must be an object with a string key")
        if not str(name).startswith(CREATED):
            other += 1
            continue
        size = json_int(obj.get("size") or 0, f"Records[{i}].s3.object.size")
        created.append(ObjectCreated(bucket=str(bucket), key=key, etag=str(obj.get("eTag", "")), size=size))
    return created, other


def is_shard(key: str, pattern: re.Pattern[str]) -> bool:
    """Whether an object key names a train shard (`pattern` is the bridge's --key-pattern)."""
    return pattern.search(key) is not None
