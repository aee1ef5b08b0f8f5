"""The parameter server's URLs as a job gives them: one URL, or every shard's in shard order.

Kept free of torch so that commands (the driver, `owtrain ps`) check a bad `--ps` / `--shard-urls`
before they import anything heavy; `owtrain.ps_shards.ShardSet` is the client that uses them.
"""

from __future__ import annotations

from collections.abc import Sequence

from owtrain.errors import ConfigError


def parse_urls(value: str | Sequence[str]) -> tuple[str, ...]:
    """Shard URLs in shard order from a list or a comma-separated string; one URL is S = 1."""
    if not isinstance(value, str | list | tuple):
        raise ConfigError(f"parameter-server URLs must be a string or a list of strings, got {value!r}")
    items = value.split(",") if isinstance(value, str) else list(value)
    urls = tuple(u.strip().rstrip("/") for u in items if isinstance(u, str) and u.strip())
    if not urls or len(urls) != len(items):
        raise ConfigError(f"parameter-server URLs must be non-empty strings (shard 0 first), got {value!r}")
    if len(set(urls)) != len(urls):
        raise ConfigError(f"a parameter-server shard URL is listed twice: {value!r}")
    return urls
