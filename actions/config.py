"""The action's typed, frozen configuration, built once from the activation's parameters and env.

This is the only place that knows the seed's parameter names (`batch_sz_train`, `epoch_n`,
`update_intv`, `apihost`, …; docs/architecture.md Contract 3) and the only place below `main`
that reads the environment (`__OW_DEADLINE`, cache location). Every bad value is a BadRequest
naming the parameter, what it got and what it needs, so the driver's log says what to fix.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actions.cursor import Cursor
from dataset_packer.config import DEFAULT_MAX_SHARD_BYTES
from owtrain.compression import make_compressor
from owtrain.errors import BadRequest, ConfigError
from owtrain.ps_urls import parse_urls

MODES = ("grad", "delta")
OPTIMIZERS = ("sgd", "adam")
DEVICES = ("auto", "cpu", "cuda")
REQUIRED = ("dataset_url", "dataset_sha256", "apihost", "ps_token", "job", "worker")
KNOWN = frozenset(REQUIRED + (
    "batch_sz_train", "epoch_n", "update_intv", "mode", "lr", "optimizer", "momentum", "compression",
    "time_budget_s", "cursor", "seed", "device", "threads", "trace",
))


def default_cache_dir() -> Path:
    """Where verified shards are cached without $OWTRAIN_SHARD_CACHE: `$TMPDIR/owtrain-shards`."""
    return Path(tempfile.gettempdir()) / "owtrain-shards"


@dataclass(frozen=True)
class ActionConfig:
    """One activation's settings; `deadline_ms` is the platform's (epoch ms) or None without one."""

    dataset_url: str
    dataset_sha256: str
    apihost: tuple[str, ...]  # the parameter server's shard URLs, shard 0 first (one URL: an unsharded server)
    ps_token: str
    job: str
    worker: str
    batch_size: int = 32
    epochs: int = 1
    update_intv: int = 1
    mode: str = "grad"
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.0
    compression: str = "none"
    time_budget_s: float | None = None
    cursor: Cursor | None = None
    seed: int = 0
    device: str = "auto"
    threads: int = 1
    trace: bool = False
    deadline_ms: int | None = None
    cache_dir: Path = field(default_factory=default_cache_dir)
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    ps_timeout_s: float = 10.0

    def __repr__(self) -> str:
        # The token and the presigned URL's signature are credentials: keep them out of logs.
        return (f"ActionConfig(job={self.job!r}, worker={self.worker!r}, mode={self.mode!r}, "
                f"batch_size={self.batch_size}, update_intv={self.update_intv}, epochs={self.epochs}, "
                f"compression={self.compression!r}, device={self.device!r}, cursor={self.cursor})")

    @classmethod
    def from_params(cls, args: Mapping[str, Any], env: Mapping[str, str]) -> ActionConfig:
        """Translate action parameters (seed names) and `__OW_*` env into a config; BadRequest if invalid."""
        missing = [name for name in REQUIRED if not args.get(name)]
        if missing:
            raise BadRequest(f"missing required parameter(s): {', '.join(missing)}")
        p = _Params(args)
        config = cls(
            dataset_url=p.text("dataset_url"), dataset_sha256=p.text("dataset_sha256"),
            apihost=p.urls("apihost"), ps_token=p.text("ps_token"), job=p.text("job"), worker=p.text("worker"),
            batch_size=p.integer("batch_sz_train", 32, minimum=1),
            epochs=p.integer("epoch_n", 1, minimum=1),
            update_intv=p.integer("update_intv", 1, minimum=1),
            mode=p.choice("mode", "grad", MODES),
            lr=p.number("lr", 0.01, positive=True),
            optimizer=p.choice("optimizer", "sgd", OPTIMIZERS),
            momentum=p.number("momentum", 0.0),
            compression=p.text("compression", "none"),
            time_budget_s=p.number("time_budget_s", None, positive=True),
            cursor=Cursor.from_json(args["cursor"]) if args.get("cursor") is not None else None,
            seed=p.integer("seed", 0, minimum=0),
            device=p.choice("device", "auto", DEVICES),
            threads=p.integer("threads", 1, minimum=1),
            trace=bool(args.get("trace", False)),
            deadline_ms=_deadline(env.get("__OW_DEADLINE")),
            cache_dir=Path(env.get("OWTRAIN_SHARD_CACHE") or default_cache_dir()),
        )
        try:
            make_compressor(config.compression)
        except ValueError as exc:
            raise BadRequest(f"parameter 'compression': {exc}") from exc
        return config

    @staticmethod
    def unknown(args: Mapping[str, Any]) -> list[str]:
        """Parameter names this action does not know (typos, or the platform's `__ow_*` extras)."""
        return sorted(k for k in args if k not in KNOWN and not k.startswith("__ow"))


class _Params:
    """Typed reads of one parameter each, with the error message the caller sees."""

    def __init__(self, args: Mapping[str, Any]) -> None:
        self.args = args

    def _bad(self, name: str, need: str) -> BadRequest:
        value = self.args[name]
        return BadRequest(f"parameter {name!r} must be {need}, got {value!r} ({type(value).__name__})")

    def text(self, name: str, default: str | None = None) -> str:
        value = self.args.get(name, default)
        if not isinstance(value, str) or not value:
            raise self._bad(name, "a non-empty string")
        return value

    def urls(self, name: str) -> tuple[str, ...]:
        """One URL, a comma-separated list or a JSON list of URLs (a sharded parameter server)."""
        try:
            return parse_urls(self.args[name])
        except ConfigError:
            raise self._bad(name, "a URL or a list of shard URLs (shard 0 first)") from None

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self.args.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._bad(name, f"an integer >= {minimum}")
        return value

    def number(self, name: str, default: float | None, positive: bool = False) -> Any:
        value = self.args.get(name, default)
        if value is None and default is None:
            return None
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        if not ok or (positive and value <= 0):
            raise self._bad(name, "a positive number" if positive else "a number >= 0")
        return float(value)

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.args.get(name, default)
        if value not in choices:
            raise self._bad(name, f"one of {', '.join(choices)}")
        return value


def _deadline(text: str | None) -> int | None:
    """`__OW_DEADLINE` is epoch milliseconds as a string; empty or absent means no deadline."""
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise BadRequest(f"__OW_DEADLINE must be epoch milliseconds, got {text!r}") from exc
