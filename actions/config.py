"""The action's typed, frozen configuration, built once from the activation's parameters and env.

The parameters' wire names, defaults and checks are `owtrain.action_params.ActionParams` (the type
the driver writes them with); this adds what comes from the platform and the container: the
deadline (`__OW_DEADLINE`), the shard cache, the shard size cap and the server time-out. This is
the only place below `main` that reads the environment.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataset_packer.config import DEFAULT_MAX_SHARD_BYTES
from owtrain import action_params
from owtrain.action_params import ActionParams
from owtrain.errors import BadRequest


def default_cache_dir() -> Path:
    """Where verified shards are cached without $OWTRAIN_SHARD_CACHE: `$TMPDIR/owtrain-shards`."""
    return Path(tempfile.gettempdir()) / "owtrain-shards"


@dataclass(frozen=True, repr=False)
class ActionConfig(ActionParams):
    """One activation's settings; `deadline_ms` is the platform's (epoch ms) or None without one."""

    deadline_ms: int | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    ps_timeout_s: float = 10.0

    @classmethod
    def from_params(cls, args: Mapping[str, Any], env: Mapping[str, str]) -> ActionConfig:
        """Translate action parameters (seed names) and `__OW_*` env into a config; BadRequest if invalid."""
        return cls(**ActionParams.field_values(args), deadline_ms=_deadline(env.get("__OW_DEADLINE")),
                   cache_dir=Path(env.get("OWTRAIN_SHARD_CACHE") or default_cache_dir()))

    @staticmethod
    def unknown(args: Mapping[str, Any]) -> list[str]:
        """Parameter names this action does not know (typos, or the platform's `__ow_*` extras)."""
        return action_params.unknown(args)


def _deadline(text: str | None) -> int | None:
    """`__OW_DEADLINE` is epoch milliseconds as a string; empty or absent means no deadline."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise BadRequest(f"__OW_DEADLINE must be epoch milliseconds, got {text!r}") from exc
