"""Typed, frozen configuration of the invocation side, merged once at the entry points.

`WskConfig` follows the `wsk` CLI's conventions so that a user's existing set-up just works:
`~/.wskprops` (or the file named by `WSK_CONFIG_FILE`) gives `APIHOST`, `AUTH` and `NAMESPACE`;
environment variables override the file, and command-line flags override both. Nothing deeper than
the CLI reads the environment: the other components receive these objects.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from owtrain.action_params import check_training
from owtrain.errors import BadRequest, ConfigError
from owtrain.naming import TRAIN_KEY_PATTERN
from owtrain.settings import setting

# Standalone OpenWhisk's namespace quota (reference §2/§5); the docs' 120/100 are not what runs.
DEFAULT_CONCURRENT = 30
DEFAULT_PER_MINUTE = 60
# Action limits (reference §2): timeout 100 ms..300 s, memory 128..512 MB.
MIN_TIMEOUT_MS, MAX_TIMEOUT_MS, DEFAULT_TIMEOUT_MS = 100, 300_000, 60_000
MIN_MEMORY_MB, MAX_MEMORY_MB = 128, 512
# Blocking invokes wait at most 60 s at the controller, then answer 202 (reference §2).
MAX_BLOCKING_WAIT_MS = 60_000
DEFAULT_ACTION = "dist-train"
DEFAULT_INVOKER = "local"  # action processes on this machine (wsk/invoker/local.py)


def state_dir() -> Path:
    """Where the driver, the bridge and the local invoker keep their SQLite files unless told: ~/.owtrain."""
    return Path("~/.owtrain").expanduser()


@dataclass(frozen=True)
class WskConfig:
    """How to reach an OpenWhisk controller: base URL, `UUID:KEY` credential, namespace."""

    apihost: str
    auth: str
    namespace: str = "_"
    insecure: bool = False
    timeout_s: float = 70.0  # above the controller's 60 s blocking wait

    def __post_init__(self) -> None:
        if ":" not in self.auth:
            raise ConfigError("OpenWhisk AUTH must be 'UUID:KEY' (see `wsk property get --auth`)")

    @property
    def base_url(self) -> str:
        """`https://host[:port]/api/v1`; a host given without a scheme means https, as in `wsk`."""
        host = self.apihost.rstrip("/")
        if "://" not in host:
            host = f"https://{host}"
        return f"{host}/api/v1"

    @property
    def basic_auth(self) -> tuple[str, str]:
        user, _, key = self.auth.partition(":")
        return user, key

    def __repr__(self) -> str:
        # The key must never reach a log line or a traceback through repr().
        return f"WskConfig(apihost={self.apihost!r}, namespace={self.namespace!r}, insecure={self.insecure})"


def read_wskprops(path: Path) -> dict[str, str]:
    """The `KEY=VALUE` lines of a `.wskprops` file; an absent file is an empty mapping."""
    if not path.is_file():
        return {}
    props: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def load_wsk_config(
    env: Mapping[str, str],
    apihost: str | None = None,
    auth: str | None = None,
    namespace: str | None = None,
    insecure: bool = False,
) -> WskConfig:
    """Merge flags > `WSK_*` env > `__OW_*` env (inside an action) > the wskprops file.

    Raises ConfigError naming what is missing and where it could come from.
    """
    props = read_wskprops(Path(env.get("WSK_CONFIG_FILE") or Path(env.get("HOME", "~")) / ".wskprops").expanduser())

    def pick(flag: str | None, names: tuple[str, ...], prop: str) -> str | None:
        if flag:
            return flag
        for name in names:
            if env.get(name):
                return env[name]
        return props.get(prop) or None

    host = pick(apihost, ("WSK_APIHOST", "__OW_API_HOST"), "APIHOST")
    key = pick(auth, ("WSK_AUTH", "__OW_API_KEY"), "AUTH")
    if not host or not key:
        missing = " and ".join(n for n, v in (("APIHOST", host), ("AUTH", key)) if not v)
        raise ConfigError(
            f"no OpenWhisk {missing}: pass --apihost/--auth, set WSK_APIHOST/WSK_AUTH, "
            "or run `wsk property set --apihost … --auth …` (writes ~/.wskprops)"
        )
    return WskConfig(
        apihost=host,
        auth=key,
        namespace=pick(namespace, ("WSK_NAMESPACE", "__OW_NAMESPACE"), "NAMESPACE") or "_",
        insecure=insecure or _truthy(env.get("WSK_INSECURE")),
    )


@dataclass(frozen=True)
class LocalInvokerConfig:
    """OpenWhisk's limits, applied to local `owtrain action serve` processes ("containers").

    `action_argv` is the command that starts one container; `{port}` is replaced by its port.
    """

    db_path: Path
    timeout_ms: int = setting(DEFAULT_TIMEOUT_MS, f"local invoker: action time limit, {MIN_TIMEOUT_MS}..{MAX_TIMEOUT_MS} ms")
    memory_mb: int = setting(MAX_MEMORY_MB, "local invoker: memory limit per container in MB")
    concurrent: int = DEFAULT_CONCURRENT
    per_minute: int = DEFAULT_PER_MINUTE
    rate_window_s: float = 60.0
    # The interpreter running owtrain starts the containers: no reliance on PATH or an active venv.
    action_argv: tuple[str, ...] = (sys.executable, "-m", "commands", "action", "serve", "--port", "{port}")
    start_timeout_s: float = 60.0
    payload_limit: int = 1024 * 1024
    log_limit: int = 10 * 1024 * 1024
    apihost: str = "http://127.0.0.1"
    namespace: str = "guest"
    prewarm: int = setting(0, "local invoker: containers to start before the first activation, like OpenWhisk's "
                              "stem cells, up to the concurrency limit (`owtrain local` pre-warms one per worker)")

    def __post_init__(self) -> None:
        if self.prewarm < 0:
            raise ConfigError(f"prewarm must be 0 or more, got {self.prewarm}")
        if not MIN_TIMEOUT_MS <= self.timeout_ms <= MAX_TIMEOUT_MS:
            raise ConfigError(f"timeout {self.timeout_ms} ms outside {MIN_TIMEOUT_MS}..{MAX_TIMEOUT_MS} ms")
        if self.memory_mb < 16:
            raise ConfigError(f"memory limit {self.memory_mb} MB is too small to start a container")
        if self.concurrent < 1 or self.per_minute < 1:
            raise ConfigError("concurrent and per-minute limits must be at least 1")


@dataclass(frozen=True)
class DockerConfig:
    """The docker invoker's containers (with `LocalInvokerConfig`'s limits): what OpenWhisk's Docker
    container factory and container proxy are configured with (reference §1.1, §1.3).

    `command` replaces the image's CMD when not empty; `extra_args` are added to every `docker run`
    (OpenWhisk's `container-args.extra-args`, e.g. `--gpus all`); `extra_env` is every container's
    extra environment (OpenWhisk's `CONTAINER_EXTRA_ENV`). Containers share the host's network and
    each listens on its own port, given in `OWTRAIN_ACTION_PORT`.
    """

    image: str
    docker: str = "docker"
    user_memory_mb: int = 1024  # the invoker's pool: CPU shares = 1024 * action memory / this
    pause_grace_s: float = 10.0  # OpenWhisk's container-proxy.timeouts.pause-grace
    idle_timeout_s: float = 600.0  # OpenWhisk's container-proxy.timeouts.idle-container
    extra_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.image or self.image.endswith(":latest") or ":" not in self.image.rsplit("/", 1)[-1]:
            raise ConfigError(f"--image {self.image!r}: give an explicit tag other than latest, e.g. "
                              "owtrain-action:0.1.0 (OpenWhisk pulls :latest on every cold start)")
        if self.pause_grace_s < 0 or self.idle_timeout_s <= 0 or self.user_memory_mb < MIN_MEMORY_MB:
            raise ConfigError("pause grace must be 0 or more, the idle timeout positive and the invoker's "
                              f"user memory at least {MIN_MEMORY_MB} MB")

    def cpu_shares(self, memory_mb: int) -> int:
        """OpenWhisk's share of the invoker's CPU for a container of `memory_mb` (at least 2)."""
        return max(int(1024 * memory_mb / self.user_memory_mb), 2)


@dataclass(frozen=True)
class DriverConfig:
    """One training job's fan-out: which action, how wide, how often, when to stop."""

    ps_url: str
    secret: str
    job: str = setting("job", "job name (must match the parameter server's)")
    action: str = setting(DEFAULT_ACTION, "action name")
    workers: int = setting(4, "activation chains in flight at once")
    epochs: int = setting(1, "epochs over each shard")
    target_accuracy: float | None = setting(None, "stop starting activations once the parameter server's accuracy "
                                                  "reaches this (0-1]")
    concurrent: int = setting(DEFAULT_CONCURRENT, "namespace quota: concurrent activations (standalone OpenWhisk's)")
    per_minute: int = setting(DEFAULT_PER_MINUTE, "namespace quota: invocations per minute (standalone OpenWhisk's)")
    rate_window_s: float = setting(60.0, "length in seconds of the --per-minute window (tests shorten it)",
                                   flag="--rate-window")
    max_retries: int = setting(3, "retries of an activation that failed for a transient reason")
    token_ttl_s: float = 24 * 3600.0
    poll_interval_s: float = 0.2
    accuracy_interval_s: float = 5.0
    action_params: tuple[tuple[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.workers < 1 or self.epochs < 1:
            raise ConfigError("--workers and --epochs must be at least 1")
        if self.target_accuracy is not None and not 0.0 < self.target_accuracy <= 1.0:
            raise ConfigError("--target-accuracy must be in (0, 1]")
        try:  # owtrain's own training parameters must be valid; others are passed on to the user's action
            check_training(dict(self.action_params), strict=False)
        except BadRequest as exc:
            raise ConfigError(f"-p: {exc}") from None

    def __repr__(self) -> str:
        return f"DriverConfig(job={self.job!r}, ps_url={self.ps_url!r}, action={self.action!r}, workers={self.workers})"


@dataclass(frozen=True)
class BridgeConfig:
    """The event bridge: webhook token, which keys are shards, optional bucket poller."""

    token: str
    host: str = setting("127.0.0.1", "address the webhook listens on")
    port: int = setting(8095, "port of POST /events and GET /status")
    key_pattern: str = setting(TRAIN_KEY_PATTERN, "regex an object key must match to be a train shard (default: "
                                                  "owtrain pack's names)")
    poll_interval_s: float = setting(0.0, "also poll the bucket every this many seconds (stores without "
                                          "notifications); 0 = off", flag="--poll")
    rescan_every: int = 10
    presign_seconds: int = setting(3600, "lifetime of the presigned URL minted at each launch")
    dispatch: str = setting("invoke", "invoke: the action directly, keeping activation ids (loses nothing); "
                                      "trigger: fire --trigger (OpenWhisk drops rule invokes over the quota, see "
                                      "docs/invocation.md)", choices=("invoke", "trigger"))
    trigger: str = setting("shard-uploaded", "trigger fired with --dispatch trigger")

    def __post_init__(self) -> None:
        try:
            re.compile(self.key_pattern)
        except re.error as exc:
            raise ConfigError(f"--key-pattern {self.key_pattern!r} is not a regular expression: {exc}") from None
        if self.dispatch not in {"invoke", "trigger"}:
            raise ConfigError(f"dispatch must be 'invoke' or 'trigger', not {self.dispatch!r}")

    def __repr__(self) -> str:
        return f"BridgeConfig(key_pattern={self.key_pattern!r}, dispatch={self.dispatch!r})"

