"""The docker backend: OpenWhisk's invoker in miniature, running the action image on a Docker engine.

It is the local invoker (`local.py`: the namespace quota, the payload limit, `/init` once and
`/run` with the invoker's exact body, warm reuse, stem cells, the time limit, logs split at the
sentinels, the activation records) with real containers instead of processes, started the way
OpenWhisk's Docker container factory starts them (reference §1.1): `docker run` with
`--memory M --memory-swap M`, a CPU share of the invoker's pool, the fixed ulimits and
`__OW_API_HOST`. Then, as OpenWhisk's container proxy does:

- `/init` is retried while the container does not accept connections yet, up to the time limit;
- the engine enforces the memory limit; a container that dies is reported as out of memory when
  `docker inspect` says the kernel killed it (`OOMKilled`), else as having exited;
- a warm container is paused (`docker pause`) once idle for the pause grace and unpaused for its
  next activation; one idle for the idle timeout is removed;
- containers carry a label naming this invoker; one left by an invoker that died is removed by the
  next one, and `close` removes every container of this invoker.

Containers share the host's network (the engine here runs without a bridge), so each listens on a
port of its own, passed in `OWTRAIN_ACTION_PORT`, on 127.0.0.1.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from wsk.config import DockerConfig, LocalInvokerConfig
from wsk.invoker.container import Container, Reply
from wsk.invoker.local import LocalInvoker

log = logging.getLogger(__name__)
LABEL = "owtrain.invoker"
DOCKER_TIMEOUT_S = 60.0  # one docker CLI call (create, pause, rm) on a busy machine
EXIT_WAIT_S = 5.0  # how long a dead container may take to be reported as stopped
REAP_INTERVAL_S = 0.2
# `docker run` itself failed (125), or the command cannot run (126, 127): nothing was started.
RUN_FAILED = {125, 126, 127}


def owner_label() -> str:
    """This invoker's value of the containers' label: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class DockerContainer(Container):
    """One container of the action image, watched through its attached `docker run` client.

    The client's stdout and stderr are the container's, so the process container's log reading
    and sentinel splitting apply unchanged; killing means `docker rm -f`.
    """

    def __init__(self, docker: DockerConfig, limits: LocalInvokerConfig, env: Mapping[str, str], owner: str) -> None:
        self.docker = docker.docker
        self.docker_env = dict(env)
        self.name = f"owtrain-{uuid.uuid4().hex[:16]}"
        self.paused = False
        self.in_use = False
        self.idle_since = time.monotonic()
        self._pause_lock = threading.Lock()
        memory = f"{limits.memory_mb}m"
        argv = [docker.docker, "run", "--pull", "never", "--name", self.name, "--label", f"{LABEL}={owner}",
                "--network", "host", "--memory", memory, "--memory-swap", memory,
                "--cpu-shares", str(docker.cpu_shares(limits.memory_mb)),
                "--ulimit", "nofile=1024:1024", "--pids-limit", "1024",
                "-e", f"__OW_API_HOST={limits.apihost}", "-e", "OWTRAIN_ACTION_HOST=127.0.0.1",
                "-e", "OWTRAIN_ACTION_PORT={port}"]
        for key, value in docker.extra_env:
            argv += ["-e", f"{key}={value}"]
        argv += [*docker.extra_args, docker.image, *docker.command]
        super().__init__(argv, env, limits.start_timeout_s, limits.log_limit)

    # -- starting: the engine's answer, not the server's ------------------------------------------

    def _wait_ready(self, timeout: float) -> None:
        """Return once the engine runs the container (its server may still be starting: `/init`
        waits for it, as OpenWhisk's does); RuntimeError when `docker run` failed."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                if self.proc.returncode in RUN_FAILED:
                    self.kill()
                    raise RuntimeError(f"docker run failed ({self.proc.returncode}): "
                                       + " | ".join(self.take_logs(0)[-3:]))
                return  # it ran and died already: /init reports how (out of memory, exited)
            if self.inspect("{{.State.Running}}") == "true":
                return
            if time.monotonic() >= deadline:
                self.kill()
                raise RuntimeError(f"container {self.name} did not start within {timeout:.0f}s")
            time.sleep(0.05)

    def call(self, path: str, body: dict[str, Any], deadline: float, memory_bytes: int) -> Reply:
        """POST like the process container, except that the engine enforces the memory limit
        (`memory_bytes` is its value) and `/init` first waits for the server to listen."""
        if path == "/init" and (failed := self._wait_listening(deadline)) is not None:
            return failed
        reply = super().call(path, body, deadline, sys.maxsize)
        if reply.killed == "exited" and self.oom_killed():
            return Reply(killed="memory")
        return reply

    def _wait_listening(self, deadline: float) -> Reply | None:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return None
            except OSError:
                pass
            if not self.alive:
                return Reply(killed="memory" if self.oom_killed() else "exited")
            if time.monotonic() >= deadline:
                self.kill()
                return Reply(killed="timeout")
            time.sleep(0.02)

    def oom_killed(self) -> bool:
        """Whether the kernel killed the container for its memory limit (waits until it has stopped)."""
        until = time.monotonic() + EXIT_WAIT_S
        while True:
            state = self.inspect("{{.State.Running}} {{.State.OOMKilled}}").split()
            if len(state) != 2:
                return False  # already removed
            if state[0] == "false" or time.monotonic() >= until:
                return state[1] == "true"
            time.sleep(0.05)

    # -- the engine's view ------------------------------------------------------------------------

    def inspect(self, template: str) -> str:
        """`docker inspect -f template` of this container; "" when the engine does not know it."""
        done = self._docker("inspect", "-f", template, self.name)
        return done.stdout.strip() if done.returncode == 0 else ""

    def suspend(self) -> None:
        """`docker pause`, unless an activation took the container meanwhile."""
        with self._pause_lock:
            if self.in_use or self.paused or not self.alive:
                return
            done = self._docker("pause", self.name)
            if done.returncode == 0:
                self.paused = True
            else:
                log.warning("cannot pause %s: %s", self.name, done.stderr.strip())

    def resume(self) -> bool:
        """Mark the container in use and `docker unpause` it; False when it cannot serve any more."""
        with self._pause_lock:
            self.in_use = True
            if self.paused:
                done = self._docker("unpause", self.name)
                if done.returncode != 0:
                    log.warning("cannot unpause %s: %s", self.name, done.stderr.strip())
                    return False
                self.paused = False
            return self.alive

    def release(self) -> None:
        """Back to the pool: idle from now."""
        with self._pause_lock:
            self.in_use = False
            self.idle_since = time.monotonic()

    def kill(self) -> None:
        """Remove the container (paused or not), then reap its client."""
        done = self._docker("rm", "-f", self.name)
        if done.returncode != 0 and "No such container" not in done.stderr:
            log.error("cannot remove container %s: %s", self.name, done.stderr.strip())
        super().kill()

    def _docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run([self.docker, *args], capture_output=True, text=True, env=self.docker_env,
                                  timeout=DOCKER_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return subprocess.CompletedProcess([self.docker, *args], 1, "", str(exc))


class DockerInvoker(LocalInvoker):
    """Runs activations in containers of `docker.image` under OpenWhisk's limits (module docstring)."""

    def __init__(self, config: LocalInvokerConfig, docker: DockerConfig, env: Mapping[str, str] | None = None) -> None:
        self.docker = docker
        self.owner = owner_label()
        environment = dict(env if env is not None else os.environ)
        removed = remove_containers(docker.docker, environment, orphans_only=True)
        if removed:
            log.warning("removed %d container(s) of stopped invokers: %s", len(removed), " ".join(removed))
        super().__init__(config, environment)  # may start stem cells, hence self.docker first
        self._reaper = threading.Thread(target=self._reap, name="docker-invoker-reaper", daemon=True)
        self._reaper.start()

    def close(self, grace_s: float | None = None) -> None:
        """Stop like the local invoker, then remove any container of this invoker still there."""
        if self._closed:
            return
        super().close(grace_s)
        self._reaper.join(timeout=5)
        remove_containers(self.docker.docker, self.env, owner=self.owner)

    def _start_container(self) -> Container:
        return DockerContainer(self.docker, self.config, self.env, self.owner)

    def _take(self, action: str) -> Container | None:
        container = super()._take(action)
        if isinstance(container, DockerContainer) and not container.resume():
            container.kill()
            with self._lock:
                self._busy.discard(container)
            return None  # a cold start instead
        return container

    def _give_back(self, action: str, container: Container) -> None:
        if isinstance(container, DockerContainer):
            container.release()
            if self.docker.pause_grace_s == 0:
                container.suspend()
        super()._give_back(action, container)

    def _reap(self) -> None:
        """Pause warm containers idle for the pause grace; remove those idle for the idle timeout."""
        while not self._closed:
            time.sleep(REAP_INTERVAL_S)
            now = time.monotonic()
            expired: list[Container] = []
            to_pause: list[DockerContainer] = []
            with self._lock:
                for pool in self._idle.values():
                    for container in list(pool):
                        if not isinstance(container, DockerContainer):
                            continue
                        if now - container.idle_since >= self.docker.idle_timeout_s:
                            pool.remove(container)
                            expired.append(container)
                        elif not container.paused and now - container.idle_since >= self.docker.pause_grace_s:
                            to_pause.append(container)
            for container in expired:
                log.info("removing container idle for %.0f s", self.docker.idle_timeout_s)
                container.kill()
            for container in to_pause:
                container.suspend()


def remove_containers(docker: str, env: Mapping[str, str], owner: str | None = None,
                      orphans_only: bool = False) -> list[str]:
    """Remove containers labelled by an owtrain invoker: `owner`'s, or (orphans_only) those of
    invokers on this host whose process is gone. Returns the names removed."""
    label = f"{LABEL}={owner}" if owner else LABEL
    listed = _run([docker, "ps", "-a", "--filter", f"label={label}", "--format", '{{.Names}} {{.Label "' + LABEL
                   + '"}}'], env)
    names = []
    for line in listed.splitlines():
        name, _, value = line.partition(" ")
        if orphans_only and not _orphaned(value):
            continue
        names.append(name)
    if names:
        _run([docker, "rm", "-f", *names], env)
    return names


def _orphaned(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _run(argv: list[str], env: Mapping[str, str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=dict(env), timeout=DOCKER_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("%s failed: %s", " ".join(argv[:3]), exc)
        return ""
    if done.returncode != 0:
        log.warning("%s failed: %s", " ".join(argv[:3]), done.stderr.strip())
    return done.stdout

