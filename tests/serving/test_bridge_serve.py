"""Event-driven inference inside the training bridge: a real `owtrain bridge serve
--predict-repository s3://…` process on Swift S3 predicts the images uploaded under the prefix
(found by its poller and its webhook, deduplicated, paced by the bridge's own rate limiter) and
writes one result beside each; the seam is wsk's `SinkFactory`, filled by serving."""

from __future__ import annotations

import io
import json
import subprocess
import time
import uuid

import numpy as np
import pytest
import requests
from PIL import Image

from dataset_packer.stores.repo_storage import S3Storage
from serving.events import RESULT_SUFFIX
from serving.repository import Repository
from tests.fixtures.common import PYTHON, ROOT, ServiceProcess, free_port, wait_http
from tests.serving.helpers import MNIST, random_images, reference_probs, seeded_state
from tests.wsk.uploads import minio_event, swift_store

pytestmark = pytest.mark.swift
TOKEN = "bridge-token"
N = 6


def png(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(img[0]).save(out, format="PNG")
    return out.getvalue()


def bridge_argv(swift_s3, bucket: str, port: int, tmp_path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "commands", "bridge", "serve", "--port", str(port), "--bucket", bucket,
            "--endpoint", swift_s3.endpoint, "--access-key", swift_s3.access_key,
            "--secret-key", swift_s3.secret_key, "--token", TOKEN, "--ps", "http://127.0.0.1:9",
            "--job", "j", "--secret", "s", "--state", str(tmp_path / "bridge.db"),
            "--activations-db", str(tmp_path / "activations.db"), *extra]


def test_bridge_serve_predicts_uploads_under_its_own_rate_limit(swift_s3, tmp_path):
    bucket = f"bridge{uuid.uuid4().hex[:8]}"
    store = swift_store(swift_s3, bucket)
    objects = S3Storage(store, bucket)
    Repository(S3Storage(store, bucket, "models")).publish("mnist", "lenet5", seeded_state(4), MNIST)
    images = random_images(N, seed=5)
    keys = [f"images/{i}.png" for i in range(N)]
    for key, img in zip(keys, images, strict=True):
        objects.write(key, png(img))
    port = free_port()
    # 3 launches or predictions per 1 s window: the 6 images need at least one full window
    argv = bridge_argv(swift_s3, bucket, port, tmp_path, "--poll", "0.3", "--per-minute", "3", "--rate-window", "1",
                       "--predict-repository", f"s3://{bucket}/models", "--predict-state", str(tmp_path / "p.db"))
    bridge = ServiceProcess(argv, tmp_path / "bridge.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/status", timeout=90, proc=bridge.proc)

        def results() -> list[str]:
            return [k for k in objects.list("images/") if k.endswith(RESULT_SUFFIX)]

        deadline = time.monotonic() + 90
        first_seen = None
        while len(results()) < N:
            assert time.monotonic() < deadline, f"{len(results())} of {N} results; log:\n{bridge.log_text()[-2000:]}"
            if first_seen is None and results():
                first_seen = time.monotonic()
            time.sleep(0.05)
        assert first_seen is not None and time.monotonic() - first_seen >= 0.5, "the limiter did not pace them"
        # MinIO's at-least-once redelivery of a predicted image adds nothing
        reply = requests.post(f"http://127.0.0.1:{port}/events", json=minio_event(bucket, keys[0]), timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 200 and reply.json()["accepted"] == [] and reply.json()["duplicates"] == 1
        time.sleep(0.5)
        assert sorted(results()) == sorted(k + RESULT_SUFFIX for k in keys)
        expected = reference_probs(seeded_state(4), images)
        for key, probs in zip(keys, expected, strict=True):
            result = json.loads(objects.read(key + RESULT_SUFFIX) or b"")
            assert result["input"] == key and result["version"] == 1
            np.testing.assert_allclose(result["probabilities"], probs, rtol=1e-5, atol=1e-6)
        status = requests.get(f"http://127.0.0.1:{port}/status", timeout=10).json()
        assert status["shards"] == 0  # the images went to the sink, not to training
        assert status["sink"] == {"done": N}
    finally:
        bridge.stop()
    assert "Traceback" not in (tmp_path / "bridge.log").read_text()


def test_bridge_serve_refuses_an_empty_repository_before_it_starts(swift_s3, tmp_path):
    (tmp_path / "empty").mkdir()
    argv = bridge_argv(swift_s3, "nobucket", free_port(), tmp_path, "--predict-repository", str(tmp_path / "empty"))
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "--predict-model: the repository holds no model yet" in out.stderr and "Traceback" not in out.stderr
