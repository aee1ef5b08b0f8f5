"""The services `owtrain local` runs, each as a context manager that always stops what it started.

- the parameter server: an `owtrain ps` child process in its own process group (so a Ctrl-C in
  the terminal reaches only `owtrain local`, which then stops it in order: checkpoint first);
- the event bridge: `wsk.bridge.Bridge` polling the bucket, with its `Driver`, the driver's state
  file and the invoker (local `owtrain action serve` processes, or OpenWhisk), in this process.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

from localrun.config import TENSORBOARD_DIR, LocalConfig
from owtrain import supervised
from owtrain.errors import ConfigError, ServerUnavailable
from owtrain.naming import TRAIN_KEY_PATTERN, held_out_shard
from owtrain.ps_client import PSClient
from owtrain.s3 import S3Settings

if TYPE_CHECKING:
    from wsk.invoker.base import Invoker
    from wsk.job import Job

log = logging.getLogger(__name__)

PS_START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
TOKEN_TTL_S = 7 * 24 * 3600.0
POLL_INTERVAL_S = 0.5
# Evaluate on time only (every --eval-interval seconds): a version count would evaluate many times a
# second on a busy server, and each pass over a 10k test shard costs about a second of one core.
EVAL_BY_TIME_ONLY = 10**9
# Every checkpoint of a run stays on disk: each is a version `owtrain ps rollback` can restore
# after it has left the server's memory (a LeNet5 checkpoint is about 0.25 MB).
KEEP_ALL_CHECKPOINTS = 10**6
STATIC_DASHBOARD = "dashboard.html"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_holder(port: int) -> int | None:
    """The pid of the process listening on TCP `port` (any address), from /proc; None if none is
    found (nothing listens, or the listener is another user's process)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{fields[9]}]")
    for entry in filter(str.isdigit, os.listdir("/proc")) if inodes else ():
        try:
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") in inodes for fd in os.listdir(f"/proc/{entry}/fd")):
                return int(entry)
        except OSError:
            continue
    return None


def check_port_free(host: str, port: int) -> None:
    """ConfigError naming the holder when something already listens on the run's server port: the
    run must not train against a server it did not start (an orphan of an earlier session, say)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            return
        except OSError:
            pass
    holder = port_holder(port)
    who = "another process" if holder is None else f"pid {holder} ({_cmdline(holder)})"
    raise ConfigError(f"the run's parameter server port {port} is in use by {who}; this run will not train "
                      f"against a server it did not start. Stop that process (`kill {holder or 'PID'}`) and "
                      "resume again")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
    except OSError:
        return "?"


class ServiceProcess:
    """A supervised child (`owtrain.supervised`: own process group, dies with this process), with its
    output in a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str], role: str,
                 port: int | None = None) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.role = role
        self._log: IO[bytes] = open(log_path, "ab")
        self.proc = supervised.spawn(argv, role=role, port=port, env={**os.environ, **env}, stdout=self._log,
                                     stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the group (the server checkpoints and exits), SIGKILL it if it does not."""
        supervised.stop(self.proc, self.role, timeout)
        self._log.close()


class PSProcess:
    """The started parameter server (one process per shard): where each listens and the admin token.
    `url` and `port` are shard 0's (its dashboard shows the job's accuracy)."""

    def __init__(self, processes: list[ServiceProcess], urls: list[str], ports: list[int], admin_token: str) -> None:
        self.processes, self.urls, self.ports, self.admin_token = processes, urls, ports, admin_token
        self.url, self.port = urls[0], ports[0]
        # How long a stop waits for the clean shutdown (final checkpoint) before SIGKILL; after an
        # admin checkpoint and with the journal nothing is lost by a shorter wait (Ctrl-C).
        self.stop_timeout_s = STOP_TIMEOUT_S

    def wait_ready(self) -> None:
        """Block until every shard answers (each imports torch; shard 0 loads the validation shard), and
        make sure each answer came from this run's child and not from another process on the same port."""
        for process, url, port in zip(self.processes, self.urls, self.ports, strict=True):
            client = PSClient(url, self.admin_token)
            try:
                _wait_until_up(client, process)
            finally:
                client.close()
            holder = port_holder(port)
            if not process.alive() or (holder is not None and holder != process.proc.pid):
                raise ServerUnavailable(f"port {port} is answered by pid {holder}, not by the parameter server "
                                        f"this run started (pid {process.proc.pid}); see {process.log_path}")


@contextmanager
def start_ps(cfg: LocalConfig, secret_file: Path, shards_dir: Path,
             samples_per_epoch: int | None = None) -> Iterator[PSProcess]:
    """Start `owtrain ps` for the run (evaluating on the validation shard, checkpointing into the run
    folder, TensorBoard files in RUN_DIR/tensorboard, a static dashboard copy in RUN_DIR/dashboard.html).
    With `ps_shards` S > 1, S processes on ports ps_port..ps_port+S-1 (`--shard I/S`): shard 0 evaluates
    the whole model and keeps RUN_DIR/checkpoints, shard I > 0 checkpoints into RUN_DIR/checkpoints-shard-I.

    It is not waited for here: the caller does other work while it starts, then `wait_ready()`.
    """
    from owtrain.tokens import ADMIN, mint_token

    val_shard = held_out_shard(shards_dir, "val")
    if val_shard is None:  # --val-size 0: the only held-out data is the test set
        log.warning("no validation shard (--val-size 0): the target and the kept model are chosen on the test set, "
                    "so the test accuracy printed at the end is optimistic")
        val_shard = held_out_shard(shards_dir, "test")
    ports = [cfg.ps_port + i for i in range(cfg.ps_shards)]
    urls = [f"http://{cfg.advertise_host}:{port}" for port in ports]
    common = [sys.executable, "-m", "commands", "ps", "--job", cfg.job, "--secret-file", str(secret_file),
              "--model", cfg.model, "--seed", str(cfg.seed), "--host", cfg.bind_host, "--strategy", str(cfg.strategy),
              "--max-epochs", str(cfg.max_epochs), "--keep-checkpoints", str(KEEP_ALL_CHECKPOINTS),
              "--keep-versions", str(cfg.keep_versions), "--shard-urls", ",".join(urls)]
    if cfg.mode == "grad":  # the server's optimiser takes the steps; in delta mode the workers' do
        common += ["--lr", str(cfg.lr), "--momentum", str(cfg.momentum)]
    if cfg.target_accuracy is not None:
        common += ["--target-accuracy", str(cfg.target_accuracy)]
    if samples_per_epoch is not None:
        common += ["--samples-per-epoch", str(samples_per_epoch)]
    # shard 0 evaluates, draws the dashboard and writes the TensorBoard files (of the whole model)
    first = ["--eval-shard", str(val_shard), "--static-dashboard", str(cfg.run_dir / STATIC_DASHBOARD),
             "--eval-every", str(EVAL_BY_TIME_ONLY), "--eval-interval", str(cfg.eval_interval_s)]
    if cfg.tensorboard:
        first += ["--tensorboard-dir", str(cfg.run_dir / TENSORBOARD_DIR)]
    processes: list[ServiceProcess] = []
    handle: PSProcess | None = None
    try:
        for index, port in enumerate(ports):
            name = "" if index == 0 else f"-shard-{index}"
            argv = [*common, "--port", str(port), "--shard", f"{index}/{cfg.ps_shards}",
                    "--checkpoint-dir", str(cfg.run_dir / f"checkpoints{name}"), *(first if index == 0 else [])]
            processes.append(ServiceProcess(argv, cfg.run_dir / "logs" / f"ps{name}.log",
                                            env={"OWTRAIN_PS_THREADS": "1"}, role=f"ps{name}", port=port))
        handle = PSProcess(processes, urls, ports, mint_token(_read(secret_file), cfg.job, ADMIN, TOKEN_TTL_S))
        yield handle
    finally:
        timeout = handle.stop_timeout_s if handle is not None else STOP_TIMEOUT_S
        for process in processes:
            process.stop(timeout)


@contextmanager
def start_bridge(cfg: LocalConfig, secret: str, ps_url: str, store: S3Settings, invoker: Invoker,
                 uploaded: Sequence[str] = ()) -> Iterator[Job]:
    """The run's job on the invocation side: the bridge in poller mode over the job's prefix and its
    driver (state in the run folder), dispatching to `invoker`; the `uploaded` shards' chains start
    at the driver's first step (`wsk.job.start_job`)."""
    from wsk.config import BridgeConfig, DriverConfig
    from wsk.job import start_job

    driver_cfg = DriverConfig(job=cfg.job, ps_url=ps_url, secret=secret, action=cfg.action, workers=cfg.workers,
                              epochs=cfg.max_epochs, target_accuracy=cfg.target_accuracy,
                              accuracy_interval_s=1.0, token_ttl_s=TOKEN_TTL_S, action_params=cfg.action_params())
    bridge_cfg = BridgeConfig(token=secret, key_pattern=TRAIN_KEY_PATTERN, poll_interval_s=POLL_INTERVAL_S)
    with start_job(driver_cfg, bridge_cfg, invoker, store, cfg.run_dir / "driver.db", prefix=f"{cfg.job}/",
                   drain_s=cfg.action_timeout_ms / 1000 + 10, uploaded=uploaded) as job:
        yield job


@contextmanager
def start_invoker(cfg: LocalConfig) -> Iterator[Invoker]:
    """OpenWhisk (credentials from ~/.wskprops or WSK_* variables) or local action processes.

    The local invoker pre-warms one container per worker as soon as it exists, so starting it
    before the data is packed and uploaded hides the containers' start-up (torch's import) behind
    that work.
    """
    from wsk.config import DockerConfig, LocalInvokerConfig, load_wsk_config
    from wsk.invoker import InvokerSettings, make_invoker

    if cfg.openwhisk:
        invoker = make_invoker("openwhisk", InvokerSettings(wsk=load_wsk_config(os.environ)), os.environ)
    else:
        local = LocalInvokerConfig(db_path=cfg.run_dir / "activations.db", timeout_ms=cfg.action_timeout_ms,
                                   memory_mb=cfg.action_memory_mb, prewarm=cfg.workers)
        docker = DockerConfig(image=cfg.image) if cfg.invoker == "docker" and cfg.image else None
        invoker = make_invoker(cfg.invoker, InvokerSettings(local=local, docker=docker),
                               {**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        yield invoker
    finally:
        invoker.close()


def _wait_until_up(client: PSClient, process: ServiceProcess, timeout: float = PS_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            raise ServerUnavailable(f"the parameter server exited at start; see {process.log_path}")
        if client.answers():
            return
        time.sleep(0.2)
    raise ServerUnavailable(f"the parameter server did not answer at {client.base_url} within {timeout:.0f}s; "
                            f"see {process.log_path}")


def _read(path: Path) -> str:
    return path.read_text().strip()
