"""Verified shard download for workers (docs/architecture.md, Contract 1).

`fetch_shard` turns a presigned URL and the sha256 the driver was given into a local file that is
exactly that shard: streamed under a size cap, retried with back-off on transient failures,
resumed with `Range` where the store supports it, and hashed before use. Files are cached under
their sha256, so a warm container never downloads the same shard twice and a new URL for
different content can never be served from a stale file. S3 refusals become distinct errors so
the driver knows whether to re-sign (`UrlExpired`), fix its signing host (`SignatureMismatch`),
re-upload (`ObjectMissing`) or wait (`StoreUnreachable`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import requests

from dataset_packer.config import DEFAULT_MAX_SHARD_BYTES
from owtrain.errors import (
    BadRequest,
    ObjectMissing,
    ShardCorrupt,
    SignatureMismatch,
    StoreUnreachable,
    UrlExpired,
)
from owtrain.retry import RetryPolicy, retry_call

log = logging.getLogger(__name__)
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024
# Network reads are smaller, so that bytes received before a dropped connection reach the .part file.
NET_CHUNK = 64 * 1024
DEFAULT_POLICY = RetryPolicy()


class _Transient(ConnectionError):
    """A failure worth retrying (network error, 5xx); the `.part` file keeps what arrived."""


def _redacted(url: str) -> str:
    """The URL without its query: the signature is a bearer credential and never goes to a log."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _s3_error(response: requests.Response) -> tuple[str, str]:
    """(Code, Message) of an S3 XML error body, or empty strings when it is not one."""
    try:
        root = ET.fromstring(response.content[:65536])
    except ET.ParseError:
        return "", ""
    return root.findtext("Code") or "", root.findtext("Message") or ""


def _raise_for_refusal(response: requests.Response, url: str) -> None:
    """Map a non-success answer to the typed error that tells the caller what to do."""
    status = response.status_code
    if status >= 500 or status == 429:
        raise _Transient(f"store answered {status} for {_redacted(url)}")
    code, message = _s3_error(response)
    detail = f"{status} {code} {message}".strip()
    if status == 404:
        raise ObjectMissing(f"no object at {_redacted(url)} ({detail}); upload the shard again")
    if code == "AccessDenied" and "expired" in message.lower():
        raise UrlExpired(f"presigned URL for {_redacted(url)} has expired ({detail}); run `owtrain presign` again")
    raise SignatureMismatch(
        f"store refused the presigned URL for {_redacted(url)} ({detail}); it was tampered with or signed "
        "for another host name (see `owtrain presign --public-endpoint`)"
    )


def _download_once(session: requests.Session, url: str, part: Path, max_bytes: int, timeout_s: float) -> None:
    """One attempt: append to `part` from where it stops (Range), or start over if unsupported."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with session.get(url, headers=headers, stream=True, timeout=(timeout_s, timeout_s)) as response:
            if response.status_code == 416:
                part.unlink(missing_ok=True)  # our partial file is longer than the object: start over
                raise _Transient("range not satisfiable; restarting the download")
            if response.status_code not in (200, 206):
                _raise_for_refusal(response, url)
            resumed = response.status_code == 206
            offset = have if resumed else 0
            declared = int(response.headers.get("Content-Length", "0") or 0) + offset
            if declared > max_bytes:
                raise ShardCorrupt(f"shard at {_redacted(url)} is {declared} bytes, over the {max_bytes}-byte cap")
            with open(part, "ab" if resumed else "wb") as out:
                for chunk in response.iter_content(NET_CHUNK):
                    offset += len(chunk)
                    if offset > max_bytes:
                        raise ShardCorrupt(f"shard at {_redacted(url)} exceeds the {max_bytes}-byte cap")
                    out.write(chunk)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _Transient(f"{type(exc).__name__} while downloading {_redacted(url)}") from exc


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def cached_path(cache_dir: Path, sha256: str) -> Path:
    """Where the shard with this sha256 lives in `cache_dir` once downloaded and verified."""
    return Path(cache_dir) / f"{sha256}.tar.gz"


def fetch_shard(
    url: str,
    sha256: str,
    cache_dir: str | os.PathLike[str],
    max_bytes: int = DEFAULT_MAX_SHARD_BYTES,
    policy: RetryPolicy = DEFAULT_POLICY,
    timeout_s: float = 30.0,
) -> Path:
    """Download the shard behind `url`, verify it against `sha256`, and return its cached path.

    A cached file whose hash still matches is returned without any network access. Raises
    `UrlExpired`, `SignatureMismatch`, `ObjectMissing`, `StoreUnreachable` (after `policy`'s
    retries) or `ShardCorrupt` (over `max_bytes`, or the bytes do not hash to `sha256`).
    """
    sha256 = sha256.lower()
    if not SHA256_RE.match(sha256):
        raise BadRequest(f"dataset_sha256 must be 64 hex digits, got {sha256[:80]!r}")
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    final = cached_path(cache, sha256)
    if final.exists():
        if file_sha256(final) == sha256:
            log.info("shard %s… found in cache %s", sha256[:12], cache)
            return final
        log.warning("cached shard %s does not match its sha256; downloading again", final)
        final.unlink()
    part = cache / f"{sha256}.{os.getpid()}.part"
    with requests.Session() as session:
        for fresh_try in (False, True):
            try:
                retry_call(lambda: _download_once(session, url, part, max_bytes, timeout_s), policy,
                           retry_on=(_Transient,), what=f"download {_redacted(url)}")
            except _Transient as exc:
                raise StoreUnreachable(f"could not download {_redacted(url)} after {policy.attempts} "
                                       f"attempt(s): {exc}") from exc
            except BaseException:
                part.unlink(missing_ok=True)
                raise
            got = file_sha256(part)
            if got == sha256:
                os.replace(part, final)
                log.info("downloaded shard %s… (%d bytes)", sha256[:12], final.stat().st_size)
                return final
            part.unlink(missing_ok=True)
            if fresh_try:
                break
            log.warning("shard from %s hashed to %s…, expected %s…; retrying once from scratch",
                        _redacted(url), got[:12], sha256[:12])
    raise ShardCorrupt(f"shard at {_redacted(url)} has sha256 {got}, expected {sha256}")
