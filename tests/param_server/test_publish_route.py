"""`POST /admin/publish` (`owtrain ps publish`): a real parameter server writes its current
parameters as the next numbered version of a model repository — a folder, or a prefix of a real
S3 bucket (Swift) that `owtrain serve` then serves — with the eval shard's signature and the
scores of exactly the published weights; on a sharded job shard 0 publishes the whole model."""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from dataset_packer.pack import pack
from dataset_packer.shard import read_shard
from dataset_packer.sources import load_source
from dataset_packer.stores.repo_storage import S3Storage
from owtrain.model_repository_layout import LocalStorage
from owtrain.model_signature import Signature
from owtrain.models import build_model
from owtrain.ps_shards import ShardSet
from param_server.evaluator import evaluate
from serving.repository import Repository
from tests.fixtures.common import PYTHON, ROOT
from tests.param_server.test_shards import SPEC, grads, push_all
from tests.serving.conftest import ServeProcess
from tests.serving.helpers import random_images
from tests.wsk.uploads import swift_store


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small real MNIST shards: a test shard of 300 images and a validation shard of 100."""
    tmp = tmp_path_factory.mktemp("shard")
    ds = load_source("mnist", tmp / "data", offline=True)
    ds = replace(ds, train_x=ds.train_x[:300], train_y=ds.train_y[:300], test_x=ds.test_x[:300],
                 test_y=ds.test_y[:300])
    pack(ds, 1, tmp / "shards", test_shard=True, val_size=100)
    return tmp / "shards"


@pytest.fixture(scope="module")
def test_shard(shards: Path) -> Path:
    return next(shards.glob("*-test.tar.gz"))


@pytest.fixture(scope="module")
def val_shard(shards: Path) -> Path:
    return next(shards.glob("*-val.tar.gz"))


def publish(ps, body: dict | None = None, token: str | None = None) -> requests.Response:
    return requests.post(f"{ps.url}/admin/publish", json=body if body is not None else {}, timeout=60,
                         headers={"Authorization": f"Bearer {token or ps.admin_token()}"})


def expected_scores(state: dict[str, torch.Tensor], shard: Path) -> tuple[float, float]:
    model = build_model("lenet5")
    model.load_state_dict(state)
    return evaluate(model, *read_shard(shard).to_tensors(), 1000)


def test_publish_into_a_folder_writes_numbered_versions_of_the_current_parameters(ps_server, test_shard, tmp_path):
    repo_dir = tmp_path / "repo"
    ps = ps_server(eval_shard=test_shard, extra=["--model-repository", str(repo_dir)])
    first = publish(ps)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["model"], body["version"], body["ps_version"]) == ("mnist", 1, 0)
    assert body["location"] == f"{repo_dir}/mnist/1"

    version, state = ps.client("w0").pull(None)
    repo = Repository(LocalStorage(repo_dir))
    meta = repo.meta("mnist", 1)
    weights = repo.weights("mnist", 1, meta)
    assert set(weights) == set(state) and all(torch.equal(weights[k], state[k]) for k in state)
    manifest = read_shard(test_shard).manifest
    assert meta.model == "lenet5" and meta.signature.shape == (1, 28, 28)
    assert list(meta.signature.classes) == [str(c) for c in manifest["classes"]]
    assert list(meta.signature.mean) == manifest["normalisation"]["mean"]
    loss, accuracy = expected_scores(state, test_shard)
    assert meta.scores == {"test": {"accuracy": accuracy, "loss": pytest.approx(loss, rel=1e-6)}}
    assert meta.source == {"kind": "param_server", "job": "test-job", "ps_version": version,
                           "eval_shard": test_shard.name}

    # a second publish (here through the CLI, under another name) is the next number of that name
    env = {**os.environ, "OWTRAIN_JOB_SECRET": ps.secret}
    out = subprocess.run([PYTHON, "-m", "commands", "ps", "publish", "--url", ps.url, "--job", ps.job,
                          "--name", "digits"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "as model digits version 1" in out.stdout and f"owtrain serve --repository {repo_dir}" in out.stdout
    assert publish(ps).json()["version"] == 2
    assert repo.versions("mnist") == [1, 2] and repo.versions("digits") == [1]


def test_a_sharded_job_publishes_the_whole_model_from_shard_0(ps_shards, test_shard, tmp_path):
    repo_dir = tmp_path / "repo"
    # every shard gets the same options, as a StatefulSet's pods do; only shard 0 publishes
    shards = ps_shards(2, eval_shard=test_shard, extra=["--model-repository", str(repo_dir)])
    worker = ShardSet([s.url for s in shards], shards[0].token("w0"))
    worker.check_plan(SPEC)
    for seq in range(3):  # the model moves on both shards
        assert push_all(worker, "w0", seq, grads(0, seq), worker.versions()).status == "applied"

    env = {**os.environ, "OWTRAIN_JOB_SECRET": shards[0].secret}
    out = subprocess.run([PYTHON, "-m", "commands", "ps", "publish", "--url", ",".join(s.url for s in shards),
                          "--job", shards[0].job], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "published parameters version 3 as model mnist version 1" in out.stdout, out.stdout

    versions, whole = worker.pull_whole()
    assert versions == (3, 3)
    repo = Repository(LocalStorage(repo_dir))
    meta = repo.meta("mnist", 1)
    weights = repo.weights("mnist", 1, meta)
    assert set(weights) == set(whole) and all(torch.equal(weights[k], whole[k]) for k in whole)
    assert meta.source["ps_version"] == 3
    loss, accuracy = expected_scores(whole, test_shard)
    assert meta.scores == {"test": {"accuracy": accuracy, "loss": pytest.approx(loss, rel=1e-6)}}
    # shard 1 holds a slice: it refuses, and nothing is written
    reply = publish(shards[1])
    assert reply.status_code == 400 and "publish through shard 0" in reply.json()["error"]
    assert repo.versions("mnist") == [1]
    for shard in shards:
        assert "Traceback" not in shard.log_text()


def test_publish_refuses_what_it_cannot_do_with_a_4xx(ps_server, test_shard, tmp_path):
    ps = ps_server(eval_shard=test_shard, extra=["--model-repository", str(tmp_path / "repo")])
    worker = publish(ps, token=ps.token("w0"))
    assert worker.status_code == 403 and "admin token" in worker.json()["error"]
    assert publish(ps, token="forged.token").status_code == 401
    for bad in ({"name": "a/b"}, {"name": ".hidden"}, {"name": 7}, {"name": ""}):
        reply = publish(ps, bad)
        assert reply.status_code == 400 and "one path segment" in reply.json()["error"], (bad, reply.text)
    raw = requests.post(f"{ps.url}/admin/publish", data=b"[1, 2]", timeout=30,
                        headers={"Authorization": f"Bearer {ps.admin_token()}"})
    assert raw.status_code == 400 and "JSON object" in raw.json()["error"]
    assert not (tmp_path / "repo").exists()  # nothing refused wrote anything

    bare = ps_server()
    reply = publish(bare)
    assert reply.status_code == 400 and "--model-repository" in reply.json()["error"]
    for log in (ps.log_text(), bare.log_text()):
        assert "Traceback" not in log


def test_usage_errors_of_the_repository_options(tmp_path):
    base = [PYTHON, "-m", "commands", "ps", "--job", "j"]
    env = {**os.environ, "OWTRAIN_JOB_SECRET": "s"}
    cases = [(["--model-repository", str(tmp_path)], "--model-repository needs --eval-shard"),
             (["--model-repository", "s3://b/p", "--eval-shard", "x.tar.gz"], "needs --s3-endpoint")]
    for extra, message in cases:
        out = subprocess.run([*base, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.swift
def test_publish_into_an_s3_repository_that_owtrain_serve_serves(ps_server, val_shard, swift_s3, tmp_path,
                                                                  monkeypatch):
    bucket = f"psrepo{uuid.uuid4().hex[:8]}"
    store = swift_store(swift_s3, bucket)
    env_keys = {"OWTRAIN_S3_ACCESS_KEY": swift_s3.access_key, "OWTRAIN_S3_SECRET_KEY": swift_s3.secret_key}
    for key, value in env_keys.items():
        monkeypatch.setenv(key, value)  # the PS process inherits them
    ps = ps_server(eval_shard=val_shard, extra=["--model-repository", f"s3://{bucket}/team/models",
                                                "--s3-endpoint", swift_s3.endpoint])
    reply = publish(ps)
    assert reply.status_code == 200, reply.text
    assert reply.json()["location"] == f"s3://{bucket}/team/models/mnist/1"
    _, state = ps.client("w0").pull(None)
    repo = Repository(S3Storage(store, bucket, "team/models"))
    meta = repo.meta("mnist", 1)
    assert all(torch.equal(v, state[k]) for k, v in repo.weights("mnist", 1, meta).items())
    # a validation shard's scores are filed under "validation", as owtrain local files them
    assert list(meta.scores) == ["validation"]
    assert meta.scores["validation"]["accuracy"] == expected_scores(state, val_shard)[1]

    server = ServeProcess(["--repository", f"s3://{bucket}/team/models", "--s3-endpoint", swift_s3.endpoint],
                          tmp_path / "serve.log", env_keys)
    try:
        images = random_images(5, seed=11)
        answer = server.predict("mnist", {"instances": images.tolist()})
        assert answer.status_code == 200 and answer.json()["version"] == 1
        got = np.array([p["probabilities"] for p in answer.json()["predictions"]])
    finally:
        server.stop()
    np.testing.assert_allclose(got, forward(state, images, meta.signature), rtol=1e-5, atol=1e-6)
    assert "Traceback" not in server.service.log_path.read_text() + ps.log_text()


def forward(state: dict[str, torch.Tensor], raw: np.ndarray, sig: Signature) -> np.ndarray:
    """The model's own forward pass on raw pixels, normalised as the signature says."""
    net = build_model("lenet5")
    net.load_state_dict(state)
    x = (torch.from_numpy(raw.astype(np.float32)) / sig.scale - sig.mean[0]) / sig.std[0]
    with torch.inference_mode():
        return torch.softmax(net.eval()(x), dim=1).numpy()
