"""`owtrain serve`'s whole configuration: one frozen dataclass; the command-line options are derived
from its fields (name, type, default and help live here once)."""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from owtrain.errors import ConfigError
from serving.batcher import make_policy
from serving.limits import LimitSettings


def _opt(default: Any, help: str, **extra: Any) -> Any:
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class ServeConfig:
    """Everything the prediction server needs; `owtrain serve --help` prints each field's help."""

    repository: str = _opt("", "model repository: a folder, or s3://bucket/prefix with --s3-endpoint "
                               "(default: RUN_DIR/models with --run-dir)", cli=False)
    host: str = _opt("127.0.0.1", "address to listen on")
    port: int = _opt(8501, "TCP port (TensorFlow Serving's REST port)")
    policy: str = _opt("latest:2", "version policy: latest:N, all or specific:V1,V2 (labelled versions are "
                                   "always loaded too)")
    batching: str = _opt("aimd", "aimd (Clipper's adaptive batching under --slo-ms) or fixed:B")
    slo_ms: float = _opt(20.0, "latency objective of one forward pass, for aimd")
    max_batch: int = _opt(64, "largest batch aimd may grow to (instances)")
    max_wait_ms: float = _opt(2.0, "how long a thin queue waits to fill a batch")
    max_queue: int = _opt(1024, "instances queued per version; beyond it requests get 429 + Retry-After")
    max_instances: int = _opt(64, "instances one request may carry")
    max_body_bytes: int = _opt(4 * 1024 * 1024, "largest request body; beyond it 413")
    cache_size: int = _opt(10_000, "prediction cache entries (LRU; 0 disables)")
    poll_s: float = _opt(1.0, "seconds between repository rescans (new versions, label changes)")
    timeout_s: float = _opt(30.0, "how long a request waits for its batch before a 429")
    job: str = _opt("serving", "job name in callers' tokens (param_server.auth tokens for this job)")
    secret: str | None = _opt(None, "token secret (read from --secret-file); none: every caller is anonymous",
                              cli=False)
    auth_rate: float = _opt(LimitSettings.auth_rate, "requests/s per authenticated caller (0: no limit)")
    auth_burst: float = _opt(LimitSettings.auth_burst, "burst per authenticated caller")
    anon_rate: float = _opt(LimitSettings.anon_rate, "requests/s per anonymous caller (by address)")
    anon_burst: float = _opt(LimitSettings.anon_burst, "burst per anonymous caller")
    threads: int = _opt(1, "torch threads for the forward passes")
    selection: str = _opt("canary", "who answers requests that name no version: canary (the stable/canary "
                                    "split) or exp3 (Clipper's bandit, fed by POST …:observe)")
    exp3_gamma: float = _opt(0.1, "Exp3's exploration share")

    def __post_init__(self) -> None:
        from serving.repository import parse_policy  # imports torch: not at `owtrain` start-up

        parse_policy(self.policy)
        make_policy(self.batching, self.slo_ms, self.max_batch)
        if self.max_instances < 1 or self.max_queue < self.max_instances:
            raise ConfigError("--max-instances must be >= 1 and --max-queue at least --max-instances")
        if self.selection not in ("canary", "exp3") or not 0.0 < self.exp3_gamma <= 1.0:
            raise ConfigError("--selection must be canary or exp3, and --exp3-gamma in (0, 1]")
        if self.max_body_bytes < 1024:
            raise ConfigError("--max-body-bytes must be at least 1024")

    @property
    def limits(self) -> LimitSettings:
        return LimitSettings(self.auth_rate, self.auth_burst, self.anon_rate, self.anon_burst)

    def __repr__(self) -> str:  # the secret never reaches a log line
        return f"ServeConfig(repository={self.repository!r}, port={self.port}, batching={self.batching!r})"


@dataclass(frozen=True)
class EventsConfig:
    """Event-driven inference in the serving process (docs/serving.md): off unless a bucket is given.

    The webhook token comes from $OWTRAIN_EVENTS_TOKEN (MinIO's `auth_token`), never a flag."""

    bucket: str = _opt("", "predict images uploaded to this bucket (at --s3-endpoint); empty: off")
    prefix: str = _opt("images/", "only keys under this prefix (.png and .npy)")
    model: str = _opt("", "model that answers (default: the only model served)")
    poll_s: float = _opt(1.0, "bucket poller interval for stores without notifications (0: webhook only)")
    per_minute: int = _opt(60, "predictions per --events-window seconds (the bridge's launch limiter)")
    window_s: float = _opt(60.0, "the limiter's window in seconds")
    state: str = _opt("", "SQLite file of seen inputs (default ~/.owtrain/serving-events-<bucket>.db)")
    token: str = _opt("", "webhook token", cli=False)


def add_options(parser: argparse._ActionsContainer, cls: type = ServeConfig, prefix: str = "",
                only: tuple[str, ...] = ()) -> None:
    """One `--flag` per field of `cls` that is set from the command line (`--PREFIX-NAME`); with
    `only`, just those fields."""
    for f in fields(cls):
        if not f.metadata.get("cli", True) or (only and f.name not in only):
            continue
        kind = type(f.default) if f.default is not MISSING and f.default is not None else str
        flag = "--" + (prefix + "-" if prefix else "") + f.name.replace("_", "-")
        parser.add_argument(flag, dest=(prefix + "_" if prefix else "") + f.name, type=kind, default=f.default,
                            help=f"{f.metadata['help']} (default: {f.default!r})")


def from_args(args: argparse.Namespace, cls: type = ServeConfig, prefix: str = "", **fixed: Any) -> Any:
    """A `cls` from parsed options plus the fields the command works out itself (`fixed`)."""
    values = {f.name: getattr(args, (prefix + "_" if prefix else "") + f.name) for f in fields(cls)
              if f.metadata.get("cli", True)}
    return cls(**values, **fixed)
