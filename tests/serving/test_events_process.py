"""Event-driven inference in a real `owtrain serve --events-bucket` process on Swift S3: SIGKILL it
while it works through a burst of uploads, start it again on the same state file, redeliver
every notification: each input ends with exactly one result object, and every result is whole."""

from __future__ import annotations

import io
import json
import signal
import sqlite3
import time
import uuid

import numpy as np
import pytest
import requests
from PIL import Image

from dataset_packer.stores.repo_storage import S3Storage
from serving.events import RESULT_SUFFIX
from serving.repository import Repository
from tests.serving.helpers import MNIST, random_images, reference_probs, seeded_state
from tests.wsk.uploads import minio_event, swift_store

pytestmark = pytest.mark.swift
TOKEN = "hook-token"
N = 30


def png(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(img[0]).save(out, format="PNG")
    return out.getvalue()


def test_sigkill_mid_burst_leaves_exactly_one_result_per_input(swift_s3, serve_process, tmp_path):
    bucket = f"kill{uuid.uuid4().hex[:8]}"
    store = swift_store(swift_s3, bucket)
    objects = S3Storage(store, bucket)
    Repository(S3Storage(store, bucket, "models")).publish("mnist", "lenet5", seeded_state(1), MNIST)
    images = random_images(N, seed=21)
    keys = [f"images/{i:03d}.png" for i in range(N)]
    for key, img in zip(keys, images, strict=True):
        objects.write(key, png(img))
    env = {"OWTRAIN_S3_ACCESS_KEY": swift_s3.access_key, "OWTRAIN_S3_SECRET_KEY": swift_s3.secret_key,
           "OWTRAIN_EVENTS_TOKEN": TOKEN}
    args = ["--repository", f"s3://{bucket}/models", "--s3-endpoint", swift_s3.endpoint, "--events-bucket", bucket,
            "--events-poll-s", "0.3", "--events-per-minute", "6", "--events-window-s", "1",
            "--events-state", str(tmp_path / "events.db")]

    def results() -> list[str]:
        return [k for k in objects.list("images/") if k.endswith(RESULT_SUFFIX)]

    first = serve_process(args, env=env)
    deadline = time.monotonic() + 90
    while len(results()) < 5:
        assert time.monotonic() < deadline, "no results appeared"
        time.sleep(0.1)
    first.service.kill(signal.SIGKILL)
    done_before = len(results())
    assert done_before < N, "the burst finished before the kill; slow the limiter down"

    second = serve_process(args, env=env)
    for key in keys:  # MinIO redelivers at least once: every notification again
        reply = requests.post(f"{second.url}/events", json=minio_event(bucket, key), timeout=10,
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert reply.status_code == 200 and reply.json()["accepted"] == [], reply.text
    assert requests.post(f"{second.url}/events", json=minio_event(bucket, keys[0]), timeout=10).status_code == 401
    deadline = time.monotonic() + 120
    while len(results()) < N:
        assert time.monotonic() < deadline, f"{len(results())} of {N} results"
        time.sleep(0.2)
    time.sleep(1.0)  # a late duplicate would show up here
    assert sorted(results()) == sorted(k + RESULT_SUFFIX for k in keys)
    expected = reference_probs(seeded_state(1), images)
    for key, probs in zip(keys, expected, strict=True):
        result = json.loads(objects.read(key + RESULT_SUFFIX) or b"")
        assert result["input"] == key and result["class_index"] == int(probs.argmax())
    rows = sqlite3.connect(tmp_path / "events.db").execute(
        "SELECT status, COUNT(*) FROM inputs GROUP BY status").fetchall()
    assert rows == [("done", N)]
