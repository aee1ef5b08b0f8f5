"""The action against a sharded parameter server: action server + two shard servers + Swift S3.

Every push reaches both shards with the same (worker, seq); the whole model learns; shard 0's
evaluator scores the assembled model at the job's version (the minimum over the shards).
"""

from __future__ import annotations

import time

import pytest
import torch

from owtrain.models import build_model
from owtrain.ps_shards import ShardSet
from param_server.evaluator import evaluate
from tests.actions.helpers import action_params, mean_loss, open_bucket, run_to_completion, upload_shard
from tests.fixtures.action import start_action_server

pytestmark = pytest.mark.swift
N = 240


@pytest.fixture(scope="module")
def shard(swift_s3, tmp_path_factory):
    store = open_bucket(swift_s3, "owtrain-sharded")
    return upload_shard(store, tmp_path_factory.mktemp("shards"), "train/learnable-0.tar.gz", N)


def whole_model(shards) -> tuple[tuple[int, ...], torch.nn.Module]:
    client = ShardSet([s.url for s in shards], shards[0].admin_token())
    versions, tensors = client.pull_whole()
    model = build_model("mlp")
    model.load_state_dict(tensors, strict=False)
    return versions, model


@pytest.mark.parametrize("mode", ["grad", "delta"])
def test_action_trains_on_two_shards_and_shard0_evaluates_the_whole_model(ps_shards, shard, tmp_path, mode):
    shards = ps_shards(2, model="mlp", strategy="async", lr=0.05,
                       extra=["--eval-shard", str(shard.path), "--eval-every", "1", "--eval-interval", "0.2"])
    _, start = whole_model(shards)
    before = mean_loss(start, *shard.tensors())
    worker = start_action_server(tmp_path)
    try:
        assert worker.init().status_code == 200
        delta = {"lr": 0.05, "momentum": 0.5, "batch_sz_train": 16, "update_intv": 3, "compression": "topk:0.25"}
        params = action_params(shards[0], shard, epoch_n=2, time_budget_s=2.0, mode=mode,
                               **(delta if mode == "delta" else {"batch_sz_train": 8}))
        params["apihost"] = [s.url for s in shards]  # a list of shard URLs, shard 0 first
        results = run_to_completion(worker, params, max_activations=100)
        if mode == "grad":  # the shard URLs out of order: refused before any push, with what to fix
            status, refused = worker.run({**params, "apihost": f"{shards[1].url},{shards[0].url}"})
            assert status == 200 and "ShardPlanMismatch" in refused["error"] and "shard order" in refused["error"]
            assert refused["progress"]["pushes"] == 0
    finally:
        worker.stop()
    pushes = sum(r["pushes"] for r in results)
    versions, model = whole_model(shards)
    assert versions == (pushes, pushes), "every push reached both shards exactly once"
    assert results[-1]["version"] == pushes  # the job's version: the minimum over the shards
    assert mean_loss(model, *shard.tensors()) < 0.3 * before
    # shard 0 evaluates the assembled parameters at the job's version
    client = shards[0].client("admin")
    deadline = time.monotonic() + 30
    while (acc := client.accuracy()).get("evaluated_version") != pushes and time.monotonic() < deadline:
        time.sleep(0.2)
    assert acc["evaluated_version"] == pushes, acc
    loss, accuracy = evaluate(model, *shard.tensors(), 1000)
    assert acc["accuracy"] == pytest.approx(accuracy) and acc["loss"] == pytest.approx(loss, abs=1e-4)
    # shard 0's /status (its dashboard) carries the job's version as its evaluator saw the shards
    shard_view = client.status()["shard"]
    assert (shard_view["index"], shard_view["shards"]) == (0, 2)
    assert shard_view["versions"] == [pushes, pushes] and shard_view["job_version"] == pushes
