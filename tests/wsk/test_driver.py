"""The fan-out driver on the fake controller: continuation, quota, retries, target accuracy, resume."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import wsk.driver as d
from owtrain.retry import RetryPolicy
from owtrain.tokens import verify_token
from tests.fixtures.common import PYTHON, ROOT, ServiceProcess
from tests.wsk.chains import collapse_repeats, expected_chain, fake_train, sent_chains, write_shard_list
from wsk.client import OpenWhiskClient
from wsk.config import DriverConfig, WskConfig
from wsk.driver import Driver
from wsk.invoker.openwhisk import OpenWhiskInvoker
from wsk.shardlist import load_train_shards
from wsk.state import DriverState

SECRET = "s3cret"


def make_driver(ctl, tmp_path, n=3, accuracy=None, closer=None, **kw) -> Driver:
    client = OpenWhiskClient(WskConfig(apihost=ctl.url, auth=ctl.auth), RetryPolicy(attempts=8, base=0.05))
    client.put_action("dist-train", image="owtrain/action:test")
    state = DriverState(tmp_path / "state.db")
    for entry in load_train_shards(write_shard_list(tmp_path / "shards.json", n)):
        state.add(entry["key"], entry["url"], entry["sha256"])
    kw.setdefault("poll_interval_s", 0.02)
    config = DriverConfig(job="job1", ps_url="http://ps:1", secret=SECRET, **kw)
    return Driver(OpenWhiskInvoker(client), state, config, accuracy=accuracy, closer=closer)


def test_chains_continue_with_the_returned_cursor_until_the_epochs(fake_controller, tmp_path):
    fake_controller.impl = fake_train
    driver = make_driver(fake_controller, tmp_path, n=3, epochs=2, action_params=(("batch_sz_train", 16),))
    summary = driver.run(threading.Event())
    assert (summary.done, summary.failed, summary.samples) == (3, 0, 3 * 6 * 10)
    chains = sent_chains(fake_controller)
    assert chains == {w: expected_chain(2) for w in ("w1", "w2", "w3")}
    first = fake_controller.invocations()[0].body
    assert first["dataset_url"].startswith("http://127.0.0.1:9/shard/") and len(first["dataset_sha256"]) == 64
    assert (first["apihost"], first["job"], first["epoch_n"], first["batch_sz_train"]) == ("http://ps:1", "job1", 2, 16)
    assert verify_token(SECRET, "job1", first["ps_token"]).worker == first["worker"]
    assert all("test" not in r.body["dataset_url"] for r in fake_controller.invocations())


def test_quota_concurrency_rate_and_429_backoff(fake_controller, tmp_path):
    lock, live, peak = threading.Lock(), [0], [0]

    def counted(params):
        with lock:
            live[0] += 1
            peak[0] = max(peak[0], live[0])
        try:
            return fake_train(params, delay=0.1)
        finally:
            with lock:
                live[0] -= 1

    fake_controller.impl = counted
    fake_controller.force_429 = 3
    driver = make_driver(fake_controller, tmp_path, n=4, workers=4, concurrent=2, per_minute=4, rate_window_s=1.0)
    t0 = time.monotonic()
    assert driver.run(threading.Event()).done == 4
    assert peak[0] <= 2
    times = sorted(r.time for r in fake_controller.invocations())
    assert len(times) == 4 * len(expected_chain(1))
    assert all(sum(1 for t in times if s <= t < s + 0.9) <= 4 for s in times), "over the rate"
    assert time.monotonic() - t0 >= 2.0  # 12 invokes at 4 per second take at least 2 s
    assert sent_chains(fake_controller) == {w: expected_chain(1) for w in ("w1", "w2", "w3", "w4")}


def test_transient_failures_retry_the_same_cursor_a_bounded_number_of_times(fake_controller, tmp_path, monkeypatch):
    calls: dict[str, int] = {}

    def flaky(params):
        worker = params["worker"]
        calls[worker] = calls.get(worker, 0) + 1
        if worker == "w1" and calls[worker] == 2:
            return "action developer error", {"error": "The action exhausted its memory and was aborted."}
        if worker == "w2":
            return "whisk internal error", {"error": "invoker down"}
        if worker == "w3":
            return "application error", {"error": "ShardCorrupt: bad sha256"}
        return fake_train(params, delay=0)

    fake_controller.impl = flaky
    driver = make_driver(fake_controller, tmp_path, n=3, max_retries=2)
    driver.state.conn.execute("UPDATE shards SET not_before=0")
    monkeypatch.setattr(d, "RETRY_POLICY", RetryPolicy(base=0.01, cap=0.02))
    summary = driver.run(threading.Event())
    chains = sent_chains(fake_controller)
    expected = expected_chain(1)
    assert chains["w1"] == expected[:2] + expected[1:]  # the failed cursor is sent again, once
    assert len(chains["w2"]) == 3 and chains["w2"] == [None] * 3  # first try + 2 retries, then given up
    assert chains["w3"] == [None]  # an application error is not retried
    assert (summary.done, summary.failed) == (1, 2)
    failed = {s.key: s.error for s in driver.state.shards("failed")}
    assert any("ShardCorrupt" in e for e in failed.values()) and any("invoker down" in e for e in failed.values())


def test_failures_are_classified_by_the_error_type_the_action_carries_as_data(fake_controller, tmp_path,
                                                                               monkeypatch):
    calls: dict[str, int] = {}

    def typed(params):
        worker = params["worker"]
        calls[worker] = calls.get(worker, 0) + 1
        if worker == "w1" and calls[worker] == 1:  # the store was down: a passing condition, retried
            return "application error", {"error": "cannot load the shard: StoreUnreachable: refused",
                                         "error_type": "StoreUnreachable", "transient": True}
        if worker == "w2":  # the word appears in the text, but the type says it is no passing condition
            return "application error", {"error": "cannot load the shard: ShardCorrupt: member Throttled.npy",
                                         "error_type": "ShardCorrupt", "transient": False}
        return fake_train(params, delay=0)

    fake_controller.impl = typed
    driver = make_driver(fake_controller, tmp_path, n=2, max_retries=2)
    monkeypatch.setattr(d, "RETRY_POLICY", RetryPolicy(base=0.01, cap=0.02))
    summary = driver.run(threading.Event())
    assert calls["w2"] == 1 and (summary.done, summary.failed) == (1, 1)
    assert calls["w1"] >= 2  # retried after the transient failure, then trained to the end


def test_a_chain_that_makes_no_progress_is_retried_then_failed(fake_controller, tmp_path, monkeypatch):
    calls: dict[str, int] = {}

    def stalling(params):
        worker = params["worker"]
        calls[worker] = calls.get(worker, 0) + 1
        # w1 never gets past its second cursor; w2 stalls once there, then goes on
        if params.get("cursor") and (worker == "w1" or (worker == "w2" and calls[worker] == 2)):
            return "success", {"samples": 0, "steps": 0, "avg_loss": None, "version": 1, "done": False,
                               "next": params["cursor"], "worker": worker, "epoch": 0}
        return fake_train(params, delay=0)

    fake_controller.impl = stalling
    driver = make_driver(fake_controller, tmp_path, n=2, max_retries=2)
    monkeypatch.setattr(d, "RETRY_POLICY", RetryPolicy(base=0.01, cap=0.02))
    summary = driver.run(threading.Event())
    chains = sent_chains(fake_controller)
    expected = expected_chain(1)
    assert chains["w1"] == expected[:2] + [expected[1]] * 2  # the stalled cursor: first try + 2 retries
    assert chains["w2"] == expected[:2] + expected[1:]  # one stall, retried, then the chain goes on
    assert (summary.done, summary.failed) == (1, 1)
    [failed] = driver.state.shards("failed")
    assert failed.error == d.STALLED and "more time" in failed.error


def test_a_job_closed_on_the_server_stops_every_chain(fake_controller, tmp_path):
    calls: dict[str, int] = {}

    def closing(params):
        worker = params["worker"]
        calls[worker] = calls.get(worker, 0) + 1
        if worker == "w1" and calls[worker] == 2:  # the server closed the job during this activation
            _, result = fake_train(params, delay=0)
            return "success", {**result, "samples": 0, "next": params["cursor"], "closed": "target reached"}
        return fake_train(params, delay=0.3)

    fake_controller.impl = closing
    driver = make_driver(fake_controller, tmp_path, n=3, epochs=3)
    summary = driver.run(threading.Event())
    assert driver.closed == "target reached" and summary.done == 0
    assert {s.status for s in driver.state.shards()} == {"stopped"}
    assert sent_chains(fake_controller)["w1"] == expected_chain(3)[:2]  # nothing after the closed one
    assert len(fake_controller.invocations()) <= 7  # the other chains end at their next return


def test_target_accuracy_stops_new_activations(fake_controller, tmp_path):
    fake_controller.impl = lambda p: fake_train(p, delay=0.05)
    readings = iter([None, 0.5, 0.95] + [0.95] * 1000)
    closed: list[str] = []
    driver = make_driver(fake_controller, tmp_path, n=2, epochs=50, target_accuracy=0.9, accuracy_interval_s=0.0,
                         accuracy=lambda: next(readings), closer=closed.append)
    summary = driver.run(threading.Event())
    assert closed == ["target accuracy 0.9 reached: 0.9500"]  # once: running activations return early
    assert driver.target_reached and summary.done == 0
    assert len(driver.state.shards("stopped")) == 2
    assert len(fake_controller.invocations()) < 10


def test_a_killed_driver_resumes_without_repeating_or_skipping(fake_controller, wskprops, tmp_path):
    fake_controller.impl = lambda p: fake_train(p, delay=0.15)
    OpenWhiskClient(WskConfig(apihost=fake_controller.url, auth=fake_controller.auth)).put_action("dist-train", "i:1")
    shards = write_shard_list(tmp_path / "shards.json", 3)
    argv = [PYTHON, "-m", "commands", "train", "--shards", str(shards), "--ps", "http://ps:1", "--job", "job1",
            "--workers", "3", "--epochs", "3", "--invoker", "openwhisk", "--state", str(tmp_path / "state.db"),
            "--no-progress"]
    env = {"WSK_CONFIG_FILE": str(wskprops), "OWTRAIN_JOB_SECRET": SECRET}
    first = ServiceProcess(argv, tmp_path / "driver1.log", env=env, cwd=ROOT)
    deadline = time.monotonic() + 60
    while len(fake_controller.invocations()) < 8:
        assert time.monotonic() < deadline and first.proc.poll() is None, first.log_text()
        time.sleep(0.01)
    first.kill()  # SIGKILL, mid-chain, with activations in flight
    first.stop()
    seen_at_kill = len(fake_controller.invocations())
    second = ServiceProcess(argv, tmp_path / "driver2.log", env=env, cwd=ROOT)
    try:
        assert second.proc.wait(timeout=120) == 0, second.log_text()
        assert "shards done 3/3" in second.log_text()
    finally:
        second.stop()
    assert len(fake_controller.invocations()) > seen_at_kill
    # No cursor is skipped. A cursor is sent twice only when the kill hit the one invoke whose
    # reply was still on the wire: at most one per chain, and the PS drops its pushes by `seq`.
    repeats = 0
    for worker, chain in sent_chains(fake_controller).items():
        collapsed, removed = collapse_repeats(chain)
        assert collapsed == expected_chain(3), worker
        assert removed <= 1
        repeats += removed
    assert repeats <= 1


def test_sigkill_of_a_local_driver_kills_its_containers_and_a_restart_retries(tmp_path):
    shards = write_shard_list(tmp_path / "shards.json", 1)
    command = f"{PYTHON} -m commands action serve --port {{port}} --entry tests.wsk.entries:main"
    argv = [PYTHON, "-m", "commands", "train", "--shards", str(shards), "--ps", "http://ps:1", "--job", "j",
            "--invoker", "local", "--action-command", command, "--activations-db", str(tmp_path / "a.db"),
            "--state", str(tmp_path / "s.db"), "--no-progress", "-p", "do", "sleep", "-p", "s", "3"]
    env = {"OWTRAIN_JOB_SECRET": SECRET}
    first = ServiceProcess(argv, tmp_path / "d1.log", env=env, cwd=ROOT)
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not children:  # the container process, once the driver has started it
        assert time.monotonic() < deadline, first.log_text()
        for task in Path(f"/proc/{first.pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
        time.sleep(0.05)
    time.sleep(1.0)  # the activation is now running inside the container
    os.kill(first.pid, signal.SIGKILL)  # the driver only: its container must not outlive it
    first.proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in children):
        assert time.monotonic() < deadline, f"containers {children} outlived the driver"
        time.sleep(0.05)
    first.stop()
    second = ServiceProcess(argv, tmp_path / "d2.log", env=env, cwd=ROOT)
    try:
        assert second.proc.wait(timeout=60) == 0, second.log_text()
        log = second.log_text()
    finally:
        second.stop()
    assert "shards done 1/1" in log and "whisk internal error" in log  # the orphan, retried
    history = DriverState(tmp_path / "s.db").history("ds-train-00000-of-00001.tar.gz")
    assert [h["status"] for h in history] == ["whisk internal error", "success"]
