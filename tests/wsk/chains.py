"""A stand-in for the training action on the fake controller, and checks on the chains it saw.

`fake_train` follows Contract 3's cursor rules (30 samples per epoch, 10 per activation) so that a
test can say exactly which cursors a correct driver must send, in which order, for each worker.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

PER_EPOCH, PER_CALL = 30, 10


def fake_train(params: dict, delay: float = 0.05) -> tuple[str, dict]:
    time.sleep(delay)
    cursor = params.get("cursor") or {"epoch": 0, "offset": 0, "seed": 0, "seq": 0}
    epoch, offset = cursor["epoch"], cursor["offset"] + PER_CALL
    if offset >= PER_EPOCH:
        epoch, offset = epoch + 1, 0
    done = epoch >= params["epoch_n"]
    nxt = None if done else {"epoch": epoch, "offset": offset, "seed": 0, "seq": cursor["seq"] + 1}
    return "success", {"samples": PER_CALL, "steps": 1, "avg_loss": 1.0, "version": 1, "done": done,
                       "next": nxt, "worker": params["worker"], "epoch": epoch}


def expected_chain(epochs: int) -> list[dict | None]:
    """The cursors a correct driver sends for one shard, in order (None = the first call)."""
    chain: list[dict | None] = [None]
    params = {"epoch_n": epochs, "worker": "w"}
    while True:
        _, result = fake_train({**params, "cursor": chain[-1]}, delay=0)
        if result["done"]:
            return chain
        chain.append(result["next"])


def sent_chains(controller, action: str = "dist-train") -> dict[str, list[dict | None]]:
    """Per worker, the cursors of the invokes the controller accepted, in order."""
    chains: dict[str, list[dict | None]] = {}
    for req in controller.invocations(action):
        chains.setdefault(req.body["worker"], []).append(req.body.get("cursor"))
    return chains


def write_shard_list(path: Path, n: int, url: str = "http://127.0.0.1:9/shard") -> Path:
    """A Contract-1 shard list with `n` train shards and one test shard."""
    expires = (datetime.now(timezone.utc) + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    entries = [{"key": f"ds-train-{i:05d}-of-{n:05d}.tar.gz", "size": 100, "sha256": f"{i:064x}",
                "url": f"{url}/{i}", "expires": expires, "split": "train"} for i in range(n)]
    entries.append({"key": "ds-test.tar.gz", "size": 100, "sha256": "f" * 64, "url": f"{url}/t",
                    "expires": expires, "split": "test"})
    path.write_text(json.dumps(entries))
    return path


def collapse_repeats(chain: list[dict | None]) -> tuple[list[dict | None], int]:
    """The chain with consecutive repeats of a cursor removed, and how many were removed."""
    out: list[dict | None] = []
    for cursor in chain:
        if not out or out[-1] != cursor:
            out.append(cursor)
    return out, len(chain) - len(out)
