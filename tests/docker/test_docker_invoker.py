"""The docker invoker with the real action image on a real engine: a training activation under
OpenWhisk's default 256 MB, one under a limit too small for torch (out of memory, retried by the
driver), one past its time limit, warm reuse through pause/unpause, and orphan removal."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid
from datetime import timedelta

from dataset_packer.presign import presign_all, write_json
from tests.actions.helpers import action_params, open_bucket, upload_shard
from tests.fixtures.common import PYTHON, ROOT
from wsk.activations import ActivationStore
from wsk.invoker import protocol as p
from wsk.invoker.docker import LABEL
from wsk.state import DriverState

ENTRY = "tests.wsk.entries:main"


def test_training_activation_under_256_mb_pushes_to_the_parameter_server(docker_invoker, docker_engine, ps_server,
                                                                          swift_s3, tmp_path):
    ps = ps_server(strategy="async", lr=0.05)
    shard = upload_shard(open_bucket(swift_s3, f"dk{uuid.uuid4().hex[:8]}"), tmp_path, "train-0.tar.gz", 256)
    invoker = docker_invoker(memory_mb=256, timeout_ms=120_000)
    params = action_params(ps, shard, batch_sz_train=32, update_intv=2, mode="delta", lr=0.05, threads=1,
                           device="cpu")
    activation = invoker.wait(invoker.invoke("dist-train", params), timeout=180)
    assert activation.success, (activation.result, activation.logs[-20:])
    assert activation.result["pushes"] >= 1 and activation.result["samples"] > 0
    assert ps.client("reader").version() >= activation.result["pushes"]
    assert activation.annotations["kind"] == "blackbox" and "initTime" in activation.annotations
    assert any("actions.main: activation" in line for line in activation.logs), activation.logs[-10:]
    assert not any(p.SENTINEL in line for line in activation.logs)
    # The engine ran it under the limit and the CPU share OpenWhisk gives 256 MB of a 1024 MB pool.
    name = docker_engine.docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
    assert len(name) == 1
    limits = docker_engine.docker("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}} "
                                  "{{.HostConfig.CpuShares}} {{.Config.User}}", name[0]).stdout.split()
    assert limits == [str(256 << 20), str(256 << 20), "256", "owtrain"]
    env = docker_engine.docker("inspect", "-f", "{{json .Config.Env}}", name[0]).stdout
    assert "__OW_API_HOST=http://127.0.0.1" in env


def test_too_small_a_limit_is_out_of_memory_and_the_driver_retries(docker_engine, ps_server, swift_s3, tmp_path):
    """`owtrain train --invoker docker` at 128 MB: torch's import alone passes the limit; each try is
    an out-of-memory developer error, retried with the same cursor, then the chain fails."""
    ps = ps_server(strategy="async")
    store = open_bucket(swift_s3, f"oom{uuid.uuid4().hex[:8]}")
    upload_shard(store, tmp_path, "learn-train-00000-of-00001.tar.gz", 128)
    shards = tmp_path / "shards.json"
    write_json(shards, presign_all(store, timedelta(minutes=30)))
    db, state = tmp_path / "activations.db", tmp_path / "state.db"
    done = subprocess.run(
        [PYTHON, "-m", "commands", "train", "--shards", str(shards), "--ps", ps.url, "--job", ps.job, "--secret",
         ps.secret, "--workers", "1", "--invoker", "docker", "--image", docker_engine.image, "--memory-mb", "128",
         "--max-retries", "1", "--activations-db", str(db), "--state", str(state)],
        cwd=ROOT, env=docker_engine.env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0, done.stdout + done.stderr
    records = ActivationStore(db).list(limit=10)
    assert len(records) == 2, records  # the first try and one retry
    for record in records:
        activation = ActivationStore(db).get(record["activationId"])
        assert activation.status == "action developer error"
        assert activation.result == {"error": p.MEMORY_MSG}
    assert [shard.status for shard in DriverState(state).shards()] == ["failed"]


def test_past_the_time_limit_the_container_is_killed(docker_invoker, docker_engine):
    invoker = docker_invoker(ENTRY, timeout_ms=3000)
    assert invoker.wait(invoker.invoke("a", {}), 60).success  # warm: the limit then covers only the run
    t0 = time.monotonic()
    late = invoker.wait(invoker.invoke("a", {"do": "sleep", "s": 60}), 60)
    assert time.monotonic() - t0 < 15
    assert late.status == "action developer error" and late.annotations["timeout"] is True
    assert late.result == {"error": "The action exceeded its time limits of 3000 milliseconds."}
    assert late.logs[-1].endswith(p.LOGS_MISSING_MSG)
    assert not docker_engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split(), "not removed"


def test_warm_container_is_paused_between_activations_and_reused(docker_invoker, docker_engine):
    invoker = docker_invoker(ENTRY, pause_grace_s=0.0)
    first = invoker.wait(invoker.invoke("a", {"n": 1}), 60)
    names = docker_engine.docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
    assert docker_engine.docker("inspect", "-f", "{{.State.Status}}", *names).stdout.split() == ["paused"]
    second = invoker.wait(invoker.invoke("a", {"n": 2}), 60)
    assert first.success and second.success and "initTime" not in second.annotations
    assert second.result["pid"] == first.result["pid"] == 1, "the action server is the container's process"
    assert [line for line in second.logs if "line of" in line] == [
        line for line in second.logs if second.activation_id in line] and len(second.logs) >= 2
    again = docker_engine.docker("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout.split()
    assert again == names, "the same container served both"


def test_idle_containers_are_removed_and_orphans_of_a_dead_invoker_too(docker_invoker, docker_engine):
    invoker = docker_invoker(ENTRY, idle_timeout_s=0.5)
    assert invoker.wait(invoker.invoke("a", {}), 60).success
    deadline = time.monotonic() + 15
    while docker_engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split():
        assert time.monotonic() < deadline, "the idle container was not removed"
        time.sleep(0.2)
    # A container labelled by an invoker process that no longer exists is removed by the next invoker.
    orphan = docker_engine.docker("run", "-d", "--network", "host", "--label", f"{LABEL}={_dead_owner()}",
                                  docker_engine.image, "sleep", "300")
    assert orphan.returncode == 0, orphan.stderr
    docker_invoker(ENTRY)
    assert not docker_engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()


def _dead_owner() -> str:
    """An owner label naming a process of this host that has ended."""
    proc = subprocess.Popen(["true"])
    proc.wait()
    return f"{socket.gethostname()}:{proc.pid}"


KILLED_INVOKER = """
import sys, time
from pathlib import Path
from wsk.config import DockerConfig, LocalInvokerConfig
from wsk.invoker.docker import DockerInvoker
DockerInvoker(LocalInvokerConfig(db_path=Path(sys.argv[1]), prewarm=1), DockerConfig(image=sys.argv[2]))
print("started", flush=True)
time.sleep(600)
"""


def test_a_sigkilled_invokers_containers_are_removed_by_the_next(docker_invoker, docker_engine, tmp_path):
    proc = subprocess.Popen([PYTHON, "-c", KILLED_INVOKER, str(tmp_path / "dead.db"), docker_engine.image], cwd=ROOT,
                            env=docker_engine.env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
        deadline = time.monotonic() + 60
        while not (names := docker_engine.docker("ps", "-q", "--filter", f"label={LABEL}").stdout.split()):
            assert time.monotonic() < deadline, "the stem cell never started"
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    time.sleep(1)
    assert docker_engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split() == names, \
        "the engine keeps a dead invoker's container: the next invoker must remove it"
    docker_invoker(ENTRY)
    assert not docker_engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
