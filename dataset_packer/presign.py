"""`owtrain presign`: the shard list JSON of Contract 1 (key, size, sha256, url, expires, split).

URLs are signed for the host name the workers will use (`public_endpoint`), since SigV4 signs the
`Host` header; expiry is short by default and never more than S3's 7-day maximum.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from dataset_packer.config import MAX_PRESIGN_SECONDS
from dataset_packer.shard import SPLITS
from dataset_packer.stores import Store
from owtrain.errors import BadRequest

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")


def parse_expiry(text: str) -> timedelta:
    """'90s', '30m', '12h', '7d' or plain seconds → timedelta, between 1 s and 7 days."""
    match = DURATION_RE.match(text)
    if not match:
        raise BadRequest(f"expiry {text!r} is not a duration like 90s, 30m, 12h or 7d")
    seconds = int(match.group(1)) * UNITS[match.group(2) or "s"]
    if not 1 <= seconds <= MAX_PRESIGN_SECONDS:
        raise BadRequest(f"expiry {text!r} must be between 1 second and 7 days (S3's limit)")
    return timedelta(seconds=seconds)


def presign_all(store: Store, expires: timedelta, prefix: str = "") -> list[dict[str, Any]]:
    """One entry per shard object under `prefix`: train shards by key, then the val and test shard(s).

    Objects without the sha256 metadata that `owtrain upload` writes raise `BadRequest`: a worker
    could not verify them.
    """
    until = (datetime.now(timezone.utc) + expires).replace(microsecond=0)
    entries = []
    for obj in store.list(prefix):
        if not obj.key.endswith(".tar.gz"):
            continue
        info = store.stat(obj.key)
        if info is None or not info.sha256 or info.split not in SPLITS:
            raise BadRequest(f"object {obj.key} has no sha256/split metadata; upload it with `owtrain upload`")
        entries.append({"key": obj.key, "size": info.size, "sha256": info.sha256,
                        "url": store.presign_get(obj.key, expires),
                        "expires": until.isoformat().replace("+00:00", "Z"), "split": info.split})
    if not entries:
        raise BadRequest(f"no shards under prefix {prefix!r} in the bucket; run `owtrain upload` first")
    return sorted(entries, key=lambda e: (SPLITS.index(e["split"]), e["key"]))


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename) so readers never see half a list of URLs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.chmod(tmp, 0o600)  # the URLs are bearer credentials until they expire
    os.replace(tmp, path)
