"""A repository in a real S3 bucket (Swift): publish there, serve `s3://bucket/prefix`, pick up a
version published while serving, and move labels with the CLI against the same bucket."""

from __future__ import annotations

import os
import subprocess
import uuid

import numpy as np
import pytest

from dataset_packer.stores.repo_storage import S3Storage
from serving.repository import Repository
from tests.fixtures.common import PYTHON, ROOT
from tests.serving.helpers import MNIST, publish_seeded, random_images, reference_probs, seeded_state
from tests.wsk.uploads import swift_store

pytestmark = pytest.mark.swift


def test_serve_an_s3_repository_and_follow_it(swift_s3, serve_process):
    bucket = f"models{uuid.uuid4().hex[:8]}"
    repo = Repository(S3Storage(swift_store(swift_s3, bucket), bucket, "team/models"))
    assert repo.publish("mnist", "lenet5", seeded_state(1), MNIST, {"test": {"accuracy": 0.1, "loss": 2.3}}) == 1
    assert repo.versions("mnist") == [1] and repo.models() == ["mnist"]
    env = {"OWTRAIN_S3_ACCESS_KEY": swift_s3.access_key, "OWTRAIN_S3_SECRET_KEY": swift_s3.secret_key}
    where = ["--repository", f"s3://{bucket}/team/models", "--s3-endpoint", swift_s3.endpoint]
    server = serve_process([*where, "--poll-s", "0.3"], env=env)
    images = random_images(4, seed=3)
    reply = server.predict("mnist", {"instances": images.tolist()})
    assert reply.status_code == 200 and reply.json()["version"] == 1
    got = np.array([p["probabilities"] for p in reply.json()["predictions"]])
    np.testing.assert_allclose(got, reference_probs(seeded_state(1), images), rtol=1e-5, atol=1e-6)
    assert repo.publish("mnist", "lenet5", seeded_state(2), MNIST) == 2
    server.wait_for(lambda s: len(s["model_version_status"]) == 2, "mnist")
    assert server.predict("mnist", {"instances": images.tolist()}).json()["version"] == 2
    out = subprocess.run([PYTHON, "-m", "commands", "serve", "canary", *where, "--model", "mnist",
                          "--version", "1", "--percent", "100"], cwd=ROOT, env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    server.wait_for(lambda s: s["labels"]["canary"] == 1, "mnist")
    assert server.predict("mnist", {"instances": images.tolist()}).json()["version"] == 1


def test_publish_copies_a_run_version_into_an_s3_repository(swift_s3, tmp_path):
    publish_seeded(tmp_path / "run" / "models", 1)
    publish_seeded(tmp_path / "run" / "models", 2)
    bucket = f"copy{uuid.uuid4().hex[:8]}"
    target = Repository(S3Storage(swift_store(swift_s3, bucket), bucket, "shared"))
    env = {**os.environ, "OWTRAIN_S3_ACCESS_KEY": swift_s3.access_key, "OWTRAIN_S3_SECRET_KEY": swift_s3.secret_key}
    out = subprocess.run([PYTHON, "-m", "commands", "serve", "publish", "--run-dir", str(tmp_path / "run"),
                          "--model", "mnist", "--to", f"s3://{bucket}/shared", "--s3-endpoint", swift_s3.endpoint],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert '"version": 1' in out.stdout
    meta = target.meta("mnist", 1)
    assert meta.source["seed"] == 2 and meta.source["copied_from"].endswith("/mnist/2")
    weights = target.weights("mnist", 1, meta)
    assert all(np.array_equal(weights[k], v) for k, v in seeded_state(2).items())
