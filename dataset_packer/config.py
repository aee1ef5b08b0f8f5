"""Typed, frozen configuration of the dataset packer, built once at the CLI (or action) boundary.

Nothing below the entry points reads the environment: they receive one of these objects.
"""

from __future__ import annotations

import os
from pathlib import Path

# Uncompressed bytes one shard may expand to. A full MNIST train split is ~47 MB as uint8, and an
# action has 256-512 MB of memory, so anything far above this is a mistake or a decompression bomb.
DEFAULT_MAX_SHARD_BYTES = 512 * 1024 * 1024
# The manifest is a few KB; a large one is an attack on the JSON parser, not a real shard.
MAX_MANIFEST_BYTES = 1024 * 1024
# S3/SigV4 presigned URLs cannot live longer than 7 days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
DEFAULT_PRESIGN_SECONDS = 30 * 60


def default_data_dir() -> Path:
    """Where fetched datasets are cached: `$OWTRAIN_DATA_DIR` or `~/.cache/owtrain/datasets`."""
    env = os.environ.get("OWTRAIN_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "owtrain" / "datasets"
