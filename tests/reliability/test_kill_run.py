"""No orphans and exactly once across SIGKILL: `owtrain local`, the driver (`owtrain train`) and the
event bridge (`owtrain bridge serve`) are killed mid-job as real processes, then resumed.

After each kill no process the killed one started is left (every pid seen under it, checked in
/proc with its start time); after the resume every shard-epoch is trained exactly once by the
driver's records (each successful activation starts where the previous one ended, and together
they cover every epoch of the shard once), and the parameter server's ledger holds each chain's
push numbers exactly once: the final model is made of exactly the updates the records count.
A `--resume` on a folder whose session still runs, or whose server port another process holds,
is refused with a message and exit status 2.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from dataset_packer.presign import presign_all, write_json
from dataset_packer.shard import read_shard
from owtrain import supervised
from param_server.checkpoint import list_checkpoints, read_state
from tests.actions.helpers import open_bucket, upload_shard
from tests.fixtures.common import PYTHON, ROOT, live_processes
from wsk.activations import ActivationStore
from wsk.state import DriverState

pytestmark = pytest.mark.slow

OWTRAIN = [PYTHON, "-m", "commands"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
# Small, but long enough (several activations per chain) that a kill lands mid-job.
LOCAL_FLAGS = ["--no-progress", "--limit", "6000", "--max-epochs", "2", "--target-accuracy", "0",
               "--time-budget", "1.5", "--eval-interval", "1"]
SAMPLES, EPOCHS = 2048, 2
TRAINING = ["-p", "batch_sz_train", "32", "-p", "update_intv", "2", "-p", "time_budget_s", "1.5",
            "-p", "threads", "1", "-p", "device", "cpu"]


class Watched:
    """A real process in its own session, with every pid seen under it (pid, start time) recorded."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(argv, cwd=ROOT, env=env or ENV, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.seen: set[tuple[int, int | None]] = set()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while self.proc.poll() is None:
            self.seen |= descendants(self.proc.pid)
            time.sleep(0.1)

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 240) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if m := re.search(pattern, self.text(), re.M):
                return m
            assert self.proc.poll() is None, f"exited with {self.proc.returncode} first:\n{self.text()[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} within {timeout}s:\n{self.text()[-3000:]}")

    def sigkill(self) -> set[tuple[int, int | None]]:
        """SIGKILL only the process itself (not its group): its children must end by themselves."""
        self.seen |= descendants(self.proc.pid)
        assert self.seen, "the process had started no children yet"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._log.close()
        return self.seen

    def finish(self, timeout: float = 400) -> int:
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self._thread.join(timeout=5)
            self._log.close()
        return self.proc.returncode


def descendants(root: int) -> set[tuple[int, int | None]]:
    """(pid, start time) of every live process below `root`."""
    children: dict[int, list[int]] = {}
    for pid, ppid, _ in live_processes():
        children.setdefault(ppid, []).append(pid)
    out, todo = set(), list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.add((pid, supervised.start_ticks(pid)))
        todo.extend(children.get(pid, []))
    return out


def assert_all_gone(pids: set[tuple[int, int | None]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (alive := [p for p, t in pids if supervised.is_running(p, t)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"left running: {alive}"


def wait_version(url: str, at_least: int, timeout: float = 240) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            version = int(requests.get(f"{url}/getVersion", timeout=5).json()["version"])
            if version >= at_least:
                return version
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the server did not reach version {at_least} within {timeout}s")


def chain_pushes(state_db: Path, activations_db: Path, sizes: dict[str, int], epochs: int) -> dict[str, int]:
    """Check that every shard-epoch was trained exactly once by the driver's records; return each
    chain's number of acknowledged pushes (worker -> pushes).

    The successful activations of a chain, in order, start where the previous one's returned
    cursor points; their samples add up to `epochs` passes over the shard. Failed (killed)
    activations count nothing: their chain repeated their stretch from the same cursor.
    """
    chains, store = DriverState(state_db), ActivationStore(activations_db)
    pushes = {}
    try:
        shards = chains.shards()
        assert len(shards) == len(sizes) and all(s.status == "done" for s in shards), [s.status for s in shards]
        for shard in shards:
            n = sizes[shard.key.rsplit("/", 1)[-1]]
            position, seq = 0, 0
            for row in chains.history(shard.key):
                activation = store.get(row["activation_id"])
                if activation is None or not activation.success:
                    continue
                start = row["cursor"] or {"epoch": 0, "offset": 0, "seq": 0}
                assert start["epoch"] * n + start["offset"] == position and start["seq"] == seq, (shard.key, row)
                result = activation.result
                position += int(result["samples"])
                seq = start["seq"] + int(result["pushes"])
                if result["next"] is not None:
                    nxt = result["next"]
                    assert nxt["epoch"] * n + nxt["offset"] == position and nxt["seq"] == seq
            assert position == epochs * n, f"{shard.key}: {position} samples trained, {epochs} x {n} expected"
            assert shard.samples == epochs * n
            pushes[shard.worker] = seq
    finally:
        chains.close()
        store.close()
    return pushes


def assert_ledger_matches(checkpoints: Path, pushes: dict[str, int]) -> None:
    """The newest checkpoint's ledger holds each chain's push numbers 0..P-1 exactly once: every
    acknowledged update is in the model once, and no other."""
    newest = list_checkpoints(checkpoints)[-1][1]
    seen = read_state(newest)["ledger"]["seen"]
    for worker, count in pushes.items():
        seqs = sorted(int(s) for s, _ in seen.get(worker, []))
        assert seqs == list(range(count)), f"{worker}: ledger {seqs[:5]}..{seqs[-5:]} vs {count} pushes"


def shard_sizes(folder: Path) -> dict[str, int]:
    return {p.name: len(read_shard(p).y) for p in sorted(folder.glob("*-train-*.tar.gz"))}


def test_sigkill_of_owtrain_local_leaves_no_process_and_resume_trains_each_shard_epoch_once(tmp_path):
    run_dir = tmp_path / "run"
    first = Watched([*OWTRAIN, "local", "--run-dir", str(run_dir), *LOCAL_FLAGS], tmp_path / "first.log")
    url = first.wait_for(r"^dashboard: (http://\S+)/dashboard$").group(1)
    wait_version(url, 6)
    listed = {c["pid"] for c in json.loads((run_dir / "processes.json").read_text())["children"]}
    assert {"ps", "action"} <= {c["role"] for c in json.loads((run_dir / "processes.json").read_text())["children"]}
    seen = first.sigkill()
    assert listed <= {p for p, _ in seen}, "the lock file names processes the run started"
    assert_all_gone(seen)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/getVersion", timeout=2)

    resumed = Watched([*OWTRAIN, "local", "--resume", str(run_dir), "--no-progress"], tmp_path / "resumed.log")
    assert resumed.finish() == 0, resumed.text()[-3000:]
    assert "result: finished" in resumed.text()
    assert_all_gone(resumed.seen, timeout=2)
    assert json.loads((run_dir / "processes.json").read_text()) == {"owner": None, "children": []}
    pushes = chain_pushes(run_dir / "driver.db", run_dir / "activations.db", shard_sizes(run_dir / "shards"), 2)
    assert_ledger_matches(run_dir / "checkpoints", pushes)


def test_sigkill_of_owtrain_local_while_it_draws_the_plots_leaves_no_process(tmp_path):
    """The wind-down draws the plots in a child beside the exports (`localrun.plots`): a parent
    killed then leaves neither that child nor a server behind, and the report is not claimed."""
    run_dir = tmp_path / "run"
    first = Watched([*OWTRAIN, "local", "--run-dir", str(run_dir), *LOCAL_FLAGS], tmp_path / "first.log")
    deadline = time.monotonic() + 400
    plots: list[int] = []
    while not plots and time.monotonic() < deadline:
        assert first.proc.poll() is None, f"exited with {first.proc.returncode} first:\n{first.text()[-3000:]}"
        below = {p for p, _ in descendants(first.proc.pid)}
        plots = [pid for pid, _, cmd in live_processes() if pid in below and "localrun.plots" in cmd]
        time.sleep(0.05)
    assert plots, "the run never started its plots child"
    seen = first.sigkill()
    assert_all_gone(seen)
    assert not (run_dir / "report.json").exists()


def test_resume_of_a_running_session_is_refused_with_what_to_do(tmp_path):
    run_dir = tmp_path / "run"
    # more epochs than the test lasts: only its SIGINT ends this session
    first = Watched([*OWTRAIN, "local", "--run-dir", str(run_dir), *LOCAL_FLAGS, "--max-epochs", "50"],
                    tmp_path / "first.log")
    try:
        first.wait_for(r"^dashboard: ")
        started = time.monotonic()
        again = subprocess.run([*OWTRAIN, "local", "--resume", str(run_dir)], cwd=ROOT, env=ENV,
                               capture_output=True, text=True, timeout=120)
        assert again.returncode == 2, again.stdout + again.stderr
        assert f"is in use by a running owtrain local session (pid {first.proc.pid})" in again.stderr
        assert f"owtrain local --resume {run_dir}" in again.stderr and "Traceback" not in again.stderr
        assert time.monotonic() - started < 60
        assert first.proc.poll() is None, "the refused command must not disturb the running session"
    finally:
        first.proc.send_signal(signal.SIGINT)
        assert first.finish() == 130, first.text()[-3000:]
    assert_all_gone(first.seen, timeout=2)


def test_resume_refuses_a_server_port_held_by_another_process(tmp_path):
    """What used to happen after an orphaned server: `--resume` trained against it. Now it says so."""
    run_dir = tmp_path / "run"
    first = Watched([*OWTRAIN, "local", "--run-dir", str(run_dir), *LOCAL_FLAGS], tmp_path / "first.log")
    first.wait_for(r"^dashboard: ")
    first.sigkill()
    port = json.loads((run_dir / "config.json").read_text())["ps_port"]
    impostor = subprocess.Popen([PYTHON, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                requests.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.1)
        again = subprocess.run([*OWTRAIN, "local", "--resume", str(run_dir)], cwd=ROOT, env=ENV,
                               capture_output=True, text=True, timeout=120)
    finally:
        impostor.kill()
        impostor.wait()
    assert again.returncode == 2, again.stdout + again.stderr
    assert f"port {port} is in use by pid {impostor.pid}" in again.stderr and "Traceback" not in again.stderr
    assert "dashboard:" not in again.stdout


def test_resume_refuses_when_the_server_lost_what_the_records_count(tmp_path):
    """A machine crash that also lost the server's journal and checkpoints (or a run with the journal
    off): the recovered server is behind the driver's records. Resuming would skip the lost samples,
    so it is refused, saying what happened and what to do, and nothing is trained."""
    import shutil

    run_dir = tmp_path / "run"
    first = Watched([*OWTRAIN, "local", "--run-dir", str(run_dir), *LOCAL_FLAGS], tmp_path / "first.log")
    first.wait_for(r"trained \d+ samples")
    assert_all_gone(first.sigkill())
    shutil.rmtree(run_dir / "checkpoints")  # the journal lives in it too
    chains = DriverState(run_dir / "driver.db")
    before = sum(len(chains.history(s.key)) for s in chains.shards())
    chains.close()
    resumed = Watched([*OWTRAIN, "local", "--resume", str(run_dir), "--no-progress"], tmp_path / "resumed.log")
    assert resumed.finish(timeout=300) == 1, resumed.text()[-3000:]
    text = resumed.text()
    assert "recovered fewer updates than the driver recorded as trained" in text and "Traceback" not in text
    assert "result: failed" in text
    assert_all_gone(resumed.seen, timeout=2)
    chains = DriverState(run_dir / "driver.db")
    assert sum(len(chains.history(s.key)) for s in chains.shards()) == before, "nothing may be trained"
    chains.close()


def _driver_job(ps_server, swift_s3, tmp_path: Path):
    ps = ps_server(strategy="async", lr=0.05, checkpoint_dir=tmp_path / "ckpt")
    bucket = f"kill{uuid.uuid4().hex[:8]}"
    store = open_bucket(swift_s3, bucket)
    sizes = {}
    for i in range(2):
        name = f"learn-train-{i:05d}-of-00002.tar.gz"
        upload_shard(store, tmp_path, name, SAMPLES, seed=i)
        sizes[name] = SAMPLES
    return ps, store, bucket, sizes


def assert_runs_containers(proc: Watched) -> None:
    below = {p for p, _ in descendants(proc.proc.pid)}
    assert any("action serve" in cmd for pid, _, cmd in live_processes() if pid in below), "no container yet"


def test_sigkill_of_the_driver_leaves_no_container_and_a_rerun_trains_each_shard_epoch_once(
        ps_server, swift_s3, tmp_path):
    ps, store, _, sizes = _driver_job(ps_server, swift_s3, tmp_path)
    shard_list = tmp_path / "shards.json"
    write_json(shard_list, presign_all(store, timedelta(minutes=30)))
    db, state = tmp_path / "activations.db", tmp_path / "state.db"
    argv = [*OWTRAIN, "train", "--shards", str(shard_list), "--ps", ps.url, "--job", ps.job, "--secret", ps.secret,
            "--workers", "2", "--epochs", str(EPOCHS), "--invoker", "local", "--activations-db", str(db),
            "--state", str(state), "--no-progress", *TRAINING]
    first = Watched(argv, tmp_path / "driver1.log")
    first.wait_for(r"trained \d+ samples")
    assert_runs_containers(first)
    seen = first.sigkill()
    assert_all_gone(seen)
    second = Watched(argv, tmp_path / "driver2.log")
    assert second.finish() == 0, second.text()[-3000:]
    assert_all_gone(second.seen, timeout=2)
    pushes = chain_pushes(state, db, sizes, EPOCHS)
    ps.client("admin").admin("checkpoint")
    assert_ledger_matches(tmp_path / "ckpt", pushes)


def test_sigkill_of_the_bridge_leaves_no_container_and_a_restart_trains_each_shard_epoch_once(
        ps_server, swift_s3, tmp_path):
    ps, _, bucket, sizes = _driver_job(ps_server, swift_s3, tmp_path)
    db, state = tmp_path / "activations.db", tmp_path / "bridge.db"
    argv = [*OWTRAIN, "bridge", "serve", "--port", "0", "--token", "t0k", "--bucket", bucket,
            "--endpoint", swift_s3.endpoint, "--access-key", swift_s3.access_key, "--secret-key", swift_s3.secret_key,
            "--poll", "0.3", "--ps", ps.url, "--job", ps.job, "--secret", ps.secret, "--workers", "2",
            "--epochs", str(EPOCHS), "--invoker", "local", "--activations-db", str(db), "--state", str(state),
            *TRAINING]
    first = Watched(argv, tmp_path / "bridge1.log")
    first.wait_for(r"trained \d+ samples")
    assert_runs_containers(first)
    seen = first.sigkill()
    assert_all_gone(seen)
    second = Watched(argv, tmp_path / "bridge2.log")
    try:
        deadline = time.monotonic() + 240
        while True:
            chains = DriverState(state)
            try:
                shards = chains.shards()
            finally:
                chains.close()
            if len(shards) == 2 and all(s.status == "done" for s in shards):
                break
            assert not any(s.status == "failed" for s in shards), second.text()[-3000:]
            assert time.monotonic() < deadline, second.text()[-3000:]
            time.sleep(0.5)
    finally:
        second.proc.send_signal(signal.SIGTERM)
        second.finish(timeout=60)
    assert_all_gone(second.seen, timeout=5)
    pushes = chain_pushes(state, db, sizes, EPOCHS)
    ps.client("admin").admin("checkpoint")
    assert_ledger_matches(tmp_path / "ckpt", pushes)
