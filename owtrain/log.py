"""Logging set-up for the CLI entry points (library code only calls `logging.getLogger`)."""

from __future__ import annotations

import logging
import os


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once; `OWTRAIN_LOG` or `level` picks the level (INFO default)."""
    name = (level or os.environ.get("OWTRAIN_LOG") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, name, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
