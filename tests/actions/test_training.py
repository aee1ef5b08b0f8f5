"""The action trains for real: action server process + parameter server process + Swift S3."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from owtrain.models import build_model
from tests.actions.helpers import action_params, mean_loss, open_bucket, run_to_completion, upload_shard
from tests.fixtures.action import start_action_server

pytestmark = pytest.mark.swift
N = 240


@pytest.fixture(scope="module")
def bucket(swift_s3):
    return open_bucket(swift_s3, "owtrain-action")


@pytest.fixture(scope="module")
def shard(bucket, tmp_path_factory):
    return upload_shard(bucket, tmp_path_factory.mktemp("shards"), "train/learnable-0.tar.gz", N)


@pytest.fixture
def worker(tmp_path):
    server = start_action_server(tmp_path)
    assert server.init().status_code == 200
    try:
        yield server
    finally:
        server.stop()


def server_loss(ps, shard) -> float:
    """Mean loss of the server's current parameters (model `mlp`: it learns fast) on the shard."""
    version_params = ps.client("admin").pull(None)
    assert version_params is not None
    model = build_model("mlp")
    model.load_state_dict(version_params[1], strict=False)
    return mean_loss(model, *shard.tensors())


def test_continuation_trains_every_sample_once_and_lowers_the_loss(ps_server, shard, worker):
    ps = ps_server(model="mlp", strategy="async", lr=0.05)
    before = server_loss(ps, shard)
    # 4 epochs of 30 batches, a push per batch: far more than one 0.6 s budget holds
    params = action_params(ps, shard, batch_sz_train=8, epoch_n=4, time_budget_s=0.6, trace=True)
    results = run_to_completion(worker, params, max_activations=200)
    assert len(results) >= 2, "tiny budgets should split the job into several activations"
    # exactly once: the traces of all activations, cut into epochs, are each a permutation of the shard
    trained = [i for r in results for i in r["trace"]]
    assert len(trained) == 4 * N
    for epoch in range(4):
        assert sorted(trained[epoch * N : (epoch + 1) * N]) == list(range(N))
    assert sum(r["samples"] for r in results) == 4 * N
    assert sum(r["steps"] for r in results) == 4 * (N // 8)
    # every push was applied once (async): versions advanced by the number of pushes
    pushes = sum(r["pushes"] for r in results)
    assert results[-1]["version"] == pushes == requests.get(ps.url + "/getVersion", timeout=5).json()["version"]
    assert results[-1]["next"] is None and results[-1]["epoch"] == 4
    assert server_loss(ps, shard) < 0.2 * before


def test_delta_mode_with_topk_compression(ps_server, shard, worker):
    ps = ps_server(model="mlp", strategy="async", lr=0.05)
    before = server_loss(ps, shard)
    params = action_params(ps, shard, mode="delta", lr=0.05, momentum=0.5, batch_sz_train=16, update_intv=3,
                           compression="topk:0.25", epoch_n=2)
    status, result = worker.run(params)
    assert status == 200 and result["done"] and result["samples"] == 2 * N, result
    assert result["version"] == result["pushes"] > 0
    assert server_loss(ps, shard) < 0.2 * before


def test_returns_before_the_deadline_with_a_cursor(ps_server, shard, worker):
    ps = ps_server(model="mlp", strategy="async")
    deadline_ms = int(time.time() * 1000) + 2500
    status, result = worker.run(action_params(ps, shard, batch_sz_train=8, epoch_n=50), deadline_ms=deadline_ms)
    returned_ms = time.time() * 1000
    assert status == 200 and "error" not in result, result
    assert returned_ms < deadline_ms - 50, f"returned {deadline_ms - returned_ms:.0f} ms before the deadline"
    assert result["samples"] > 0 and not result["done"]
    assert result["next"]["seq"] == result["pushes"]
    # the next activation resumes from the cursor
    status, second = worker.run(action_params(ps, shard, batch_sz_train=8, epoch_n=50, time_budget_s=1.0,
                                              cursor=result["next"]))
    assert status == 200 and second["samples"] > 0
    assert second["version"] > result["version"]


def when_version_reaches(ps, version: int, then: Callable[[], object]) -> threading.Thread:
    """A started thread that calls `then()` once the server's version reaches `version`."""

    def watch() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if requests.get(ps.url + "/getVersion", timeout=5).json()["version"] >= version:
                then()
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def test_parameter_server_down_ends_with_partial_progress(ps_server, shard, worker):
    ps = ps_server(model="mlp", strategy="async")
    params = action_params(ps, shard, batch_sz_train=8, epoch_n=100, time_budget_s=60)
    killer = when_version_reaches(ps, 5, ps.kill)
    started = time.monotonic()
    status, result = worker.run(params)
    killer.join()
    assert status == 200
    assert time.monotonic() - started < 30, "the activation hung on a dead server"
    assert "ServerUnavailable" in result["error"] and "progress so far" in result["error"]
    progress = json.loads(result["error"].split("progress so far: ", 1)[1])
    # the push in flight when the server died may have been applied but never acknowledged:
    # it is not counted, and the next activation resends it with the same seq (a duplicate)
    assert progress["pushes"] >= 4 and progress["samples"] == 8 * progress["pushes"]
    assert progress["next"]["seq"] == progress["pushes"]
    assert result["progress"] == progress


def test_a_job_closed_on_the_server_ends_the_activation_at_its_next_push(ps_server, shard, worker):
    ps = ps_server(model="mlp", strategy="async")
    params = action_params(ps, shard, batch_sz_train=8, epoch_n=100, time_budget_s=60, trace=True)
    closer = when_version_reaches(ps, 5, lambda: ps.client("admin").admin("close", {"reason": "target accuracy reached"}))
    started = time.monotonic()
    status, result = worker.run(params)
    closer.join()
    assert status == 200 and "error" not in result, result
    assert time.monotonic() - started < 30, "the activation kept training after the job was closed"
    assert "target accuracy reached" in result["closed"] and not result["done"]
    # only acknowledged pushes count: the refused one's batches are trained again by a resumed job
    version = requests.get(ps.url + "/getVersion", timeout=5).json()["version"]
    assert result["pushes"] == version >= 5 and result["samples"] == 8 * result["pushes"] == len(result["trace"])
    assert result["next"]["seq"] == result["pushes"]
    # a later activation of the closed job returns at once, without training
    status, again = worker.run({**params, "cursor": result["next"]})
    assert status == 200 and again["samples"] == 0 and again["next"] == result["next"] and again["closed"]


def test_bad_parameters_over_http(worker):
    status, result = worker.run({"apihost": "http://127.0.0.1:1"})
    assert status == 200
    assert result["error"].startswith("bad parameters: missing required parameter(s): dataset_url")
    status, result = worker.run({"dataset_url": "u", "dataset_sha256": "a" * 64, "apihost": "h",
                                 "ps_token": "t", "job": "j", "worker": "w", "batch_sz_train": "many"})
    assert "parameter 'batch_sz_train' must be an integer >= 1, got 'many'" in result["error"]


def test_two_workers_in_sync_rounds(ps_server, bucket, tmp_path, worker):
    """sync:k=2 answers `accepted` until both pushed; each worker long-polls for the round's end."""
    ps = ps_server(model="mlp", strategy="sync:k=2")
    second = start_action_server(tmp_path)
    try:
        assert second.init().status_code == 200
        shards = [upload_shard(bucket, tmp_path, f"train/sync-{i}.tar.gz", 64, seed=10 + i) for i in range(2)]
        with ThreadPoolExecutor(2) as pool:
            runs = [pool.submit(server.run, action_params(ps, shard, worker=f"w{i}", batch_sz_train=16,
                                                          compression="fp16"))
                    for i, (server, shard) in enumerate(zip((worker, second), shards, strict=True))]
            results = [run.result()[1] for run in runs]
    finally:
        second.stop()
    for result in results:
        assert "error" not in result and result["done"] and result["samples"] == 64, result
        assert result["stale"] == 0 and result["pushes"] == 4
    # four rounds of two updates each: four versions, and each worker saw the last one
    assert requests.get(ps.url + "/getVersion", timeout=5).json()["version"] == 4
    assert max(r["version"] for r in results) == 4


def test_pulls_only_when_the_server_moved_on(ps_server, shard, tmp_path):
    """One worker alone on an async server: one pull per push (its own update made a new
    version) plus the cold start's first; a warm activation reuses the model and does not pull."""
    ps = ps_server(model="mlp", strategy="async")
    server = start_action_server(tmp_path, env={"OWTRAIN_LOG": "DEBUG"})
    try:
        server.init()
        params = action_params(ps, shard, batch_sz_train=16, update_intv=5, epoch_n=1, compression="int8")
        status, cold = server.run(params)
        assert status == 200 and cold["pushes"] == 3, cold  # 15 batches, a push every 5
        assert server.log_text().count("pulled version") == 1 + 3
        status, warm = server.run({**params, "epoch_n": 2, "cursor": {"epoch": 1, "offset": 0, "seq": 3}})
        assert status == 200 and warm["pushes"] == 3, warm
        assert server.log_text().count("pulled version") == 1 + 3 + 3
    finally:
        server.stop()
