"""`owtrain serve`'s whole configuration: one frozen dataclass; the command-line options are derived
from its fields (name, type, default and help live here once)."""

from __future__ import annotations

from dataclasses import dataclass

from owtrain.errors import ConfigError
from owtrain.settings import default_of, setting
from serving.batch_policy import make_policy
from serving.limits import LimitSettings


@dataclass(frozen=True)
class ServeConfig:
    """Everything the prediction server needs; `owtrain serve --help` prints each field's help."""

    repository: str = ""  # a folder, or s3://bucket/prefix with --s3-endpoint (default: RUN_DIR/models)
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8501, "TCP port (TensorFlow Serving's REST port)")
    policy: str = setting("latest:2", "version policy: latest:N, all or specific:V1,V2 (labelled versions are "
                                   "always loaded too)")
    batching: str = setting("aimd", "aimd (Clipper's adaptive batching under --slo-ms) or fixed:B")
    slo_ms: float = setting(20.0, "latency objective of one forward pass, for aimd")
    max_batch: int = setting(64, "largest batch aimd may grow to (instances)")
    max_wait_ms: float = setting(2.0, "how long a thin queue waits to fill a batch")
    max_queue: int = setting(1024, "instances queued per version; beyond it requests get 429 + Retry-After")
    max_instances: int = setting(64, "instances one request may carry")
    max_body_bytes: int = setting(4 * 1024 * 1024, "largest request body; beyond it 413")
    cache_size: int = setting(10_000, "prediction cache entries (LRU; 0 disables)")
    poll_s: float = setting(1.0, "seconds between repository rescans (new versions, label changes)")
    timeout_s: float = setting(30.0, "how long a request waits for its batch before a 429")
    job: str = setting("serving", "job name in callers' tokens (owtrain.tokens tokens for this job)")
    secret: str | None = None  # the token secret (read from --secret-file); None: every caller is anonymous
    auth_rate: float = setting(LimitSettings.auth_rate, "requests/s per authenticated caller (0: no limit)")
    auth_burst: float = setting(LimitSettings.auth_burst, "burst per authenticated caller")
    anon_rate: float = setting(LimitSettings.anon_rate, "requests/s per anonymous caller (by address)")
    anon_burst: float = setting(LimitSettings.anon_burst, "burst per anonymous caller")
    threads: int = setting(1, "torch threads for the forward passes")
    selection: str = setting("canary", "who answers requests that name no version: canary (the stable/canary "
                                    "split) or exp3 (Clipper's bandit, fed by POST …:observe)")
    exp3_gamma: float = setting(0.1, "Exp3's exploration share")

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

    bucket: str = setting("", "predict images uploaded to this bucket (at --s3-endpoint); empty: off")
    prefix: str = setting("images/", "only keys under this prefix (.png and .npy)")
    model: str = setting("", "model that answers (default: the only model served)")
    poll_s: float = setting(1.0, "bucket poller interval for stores without notifications (0: webhook only)")
    per_minute: int = setting(60, "predictions per --events-window seconds (the bridge's launch limiter)")
    window_s: float = setting(60.0, "the limiter's window in seconds")
    state: str = setting("", "SQLite file of seen inputs (default ~/.owtrain/serving-events-<bucket>.db)")
    token: str = ""  # the webhook token, from $OWTRAIN_EVENTS_TOKEN


@dataclass(frozen=True)
class BridgePredictConfig:
    """Event-driven inference inside `owtrain bridge serve` (serving/bridge_sink.py): off unless a
    repository is given. The prefix, model and state options are EventsConfig's (`--predict-*`)."""

    repository: str = setting("", "model repository (a folder, or s3://bucket/prefix at --endpoint) whose model "
                                  "predicts uploaded images; empty: no inference")
    policy: str = setting(default_of(ServeConfig, "policy"), "version policy of that repository (as owtrain serve "
                                                              "--policy)")
