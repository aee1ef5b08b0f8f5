"""Every way an activation can fail ends in a clear application error (200 + {"error": …})."""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

from owtrain.tokens import mint_token
from tests.actions.helpers import action_params, open_bucket, upload_file, upload_shard
from tests.fixtures.action import start_action_server
from tests.fixtures.common import free_port

pytestmark = pytest.mark.swift


@pytest.fixture(scope="module")
def bucket(swift_s3):
    return open_bucket(swift_s3, "owtrain-action-errors")


@pytest.fixture(scope="module")
def shard(bucket, tmp_path_factory):
    return upload_shard(bucket, tmp_path_factory.mktemp("shards"), "train/errors-0.tar.gz", 64, seed=1)


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """One warm container for all these activations, as OpenWhisk would reuse it."""
    server = start_action_server(tmp_path_factory.mktemp("action"))
    assert server.init().status_code == 200
    try:
        yield server
    finally:
        server.stop()


class NoServer:
    """Parameters for activations that must fail before they talk to a parameter server."""

    url, job, secret = f"http://127.0.0.1:{free_port()}", "test-job", "unused"

    def token(self, worker: str) -> str:
        return "owt1.unused.unused"


def test_expired_url(bucket, tmp_path, worker):
    shard = upload_shard(bucket, tmp_path, "train/expiring.tar.gz", 32, seed=2)
    params = action_params(NoServer(), shard)
    params["dataset_url"] = shard.url(timedelta(seconds=1))
    time.sleep(2.1)
    status, result = worker.run(params)
    assert status == 200
    assert result["error"].startswith("cannot load the shard: UrlExpired")
    assert "X-Amz-Signature" not in result["error"]  # the credential never leaks into the message


def test_tampered_url(shard, worker):
    params = action_params(NoServer(), shard)
    params["dataset_url"] = params["dataset_url"].replace("X-Amz-Signature=", "X-Amz-Signature=0")
    status, result = worker.run(params)
    assert status == 200 and "SignatureMismatch" in result["error"]


def test_corrupt_shard(bucket, tmp_path, worker):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(os.urandom(4096))
    shard = upload_file(bucket, "train/junk.tar.gz", junk)
    status, result = worker.run(action_params(NoServer(), shard))
    assert status == 200 and result["error"].startswith("cannot load the shard: ShardCorrupt")


def test_wrong_sha256(shard, worker):
    params = {**action_params(NoServer(), shard), "dataset_sha256": "0" * 64}
    status, result = worker.run(params)
    assert status == 200 and "ShardCorrupt" in result["error"] and "expected " + "0" * 64 in result["error"]


def test_unauthorized_and_forbidden_tokens(ps_server, shard, worker):
    ps = ps_server(model="mlp")
    forged = {**action_params(ps, shard), "ps_token": mint_token("not-the-secret", ps.job, "w0", 600)}
    status, result = worker.run(forged)
    assert status == 200 and result["error"].startswith("Unauthorized")
    other_job = {**action_params(ps, shard), "ps_token": mint_token(ps.secret, "another-job", "w0", 600)}
    status, result = worker.run(other_job)
    assert status == 200 and result["error"].startswith("Forbidden")


def test_shard_for_another_model(ps_server, shard, worker):
    ps = ps_server(model="cnn32")
    status, result = worker.run(action_params(ps, shard))
    assert status == 200 and "wrong shard for this job" in result["error"]


def test_warm_container_never_serves_a_stale_shard(ps_server, bucket, tmp_path, worker):
    """The same key (and URL path) now holds another shard: the sha256 decides, not the URL."""
    ps = ps_server(model="mlp")
    first = upload_shard(bucket, tmp_path, "train/reused-key.tar.gz", 48, seed=3)
    status, result = worker.run(action_params(ps, first, trace=True))
    assert status == 200 and result["samples"] == 48, result
    second = upload_shard(bucket, tmp_path, "train/reused-key.tar.gz", 80, seed=4)
    status, result = worker.run(action_params(ps, second, worker="w1", trace=True))
    assert status == 200 and result["samples"] == 80 and sorted(result["trace"]) == list(range(80)), result
    # and the first shard is still served from the warm cache by its sha256 after the object changed
    status, result = worker.run(action_params(ps, first, worker="w2"))
    assert status == 200 and result["samples"] == 48, result
