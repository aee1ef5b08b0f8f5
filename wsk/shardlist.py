"""Reading the shard list JSON that `owtrain presign` writes (Contract 1).

The driver and `scripts/fanout.sh` consume it; a malformed list is rejected as a whole with the
entry and field named, before any activation starts.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from owtrain.errors import BadRequest

log = logging.getLogger(__name__)
FIELDS = ("key", "size", "sha256", "url", "expires", "split")


def load_train_shards(path: Path) -> list[dict[str, Any]]:
    """The `train` entries of the list, in file order; BadRequest names what is wrong."""
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read shard list {path}: {exc}") from exc
    if not isinstance(entries, list):
        raise BadRequest(f"shard list {path} must be a JSON list of shard entries")
    now = datetime.now(timezone.utc)
    train = []
    for i, entry in enumerate(entries):
        missing = [f for f in FIELDS if not isinstance(entry, dict) or f not in entry]
        if missing:
            raise BadRequest(f"shard list {path}: entry {i} lacks {', '.join(missing)}")
        if entry["split"] not in ("train", "val", "test"):
            raise BadRequest(f"shard list {path}: entry {i} has split {entry['split']!r}, not train/val/test")
        try:
            expires = datetime.fromisoformat(str(entry["expires"]).replace("Z", "+00:00"))
        except ValueError as exc:
            raise BadRequest(f"shard list {path}: entry {i} expires {entry['expires']!r} is not ISO-8601") from exc
        if expires <= now:
            log.warning("shard %s: its URL expired at %s; run `owtrain presign` again", entry["key"], entry["expires"])
        if entry["split"] == "train":
            train.append(entry)
    if not train:
        raise BadRequest(f"shard list {path} has no train shards")
    return train
