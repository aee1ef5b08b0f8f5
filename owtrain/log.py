"""Logging set-up for the CLI entry points (library code only calls `logging.getLogger`)."""

from __future__ import annotations

import logging
import os
import re

# Credentials that libraries log verbatim at DEBUG (urllib3 logs every request line, presigned query
# included): a presigned URL's signature and credential scope, and owtrain tokens' signatures.
SECRETS = re.compile(r"(X-Amz-Signature=|X-Amz-Credential=|X-Amz-Security-Token=)[^&\s\"']+|(owt1\.[\w-]+\.)[\w-]+")


class RedactSecrets(logging.Filter):
    """Rewrites each record's message with the credentials above replaced by `REDACTED`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken record: the handler reports it as logging always does
            return True
        redacted = SECRETS.sub(lambda m: (m.group(1) or m.group(2)) + "REDACTED", message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def ensure_logging() -> None:
    """Configure logging as the CLI does unless something already did.

    For entry points that run inside another program's process: OpenWhisk's Python runtime
    imports the action and calls `main` from a launcher that sets up no handler, so without this
    every INFO line would be dropped and warnings would come out bare (logging's last resort).
    """
    if not logging.getLogger().handlers:
        setup_logging()


def setup_logging(level: str | None = None) -> None:
    """Configure the root logger once; `OWTRAIN_LOG` or `level` picks the level (INFO default).
    Every handler redacts credentials, whichever library logs them."""
    name = (level or os.environ.get("OWTRAIN_LOG") or "INFO").upper()
    logging.basicConfig(
        level=getattr(logging, name, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())
