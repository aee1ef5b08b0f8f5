"""Event-driven inference through the training event bridge, on a real S3 bucket (Swift): images
uploaded under a prefix get exactly one JSON result beside them, duplicate notifications add
nothing, the poller finds uploads that sent none, an undecodable image gets an error result, and
the bridge's rate limiter paces the predictions."""

from __future__ import annotations

import io
import json
import time
import uuid

import numpy as np
import pytest
from PIL import Image

from dataset_packer.stores.repo_storage import S3Storage
from serving.config import ServeConfig
from serving.events import RESULT_SUFFIX, EventPredictor
from serving.repository import Repository
from serving.server import build
from tests.serving.helpers import MNIST, random_images, reference_probs, seeded_state
from tests.wsk.uploads import minio_event, swift_store
from wsk.bridge import Bridge
from wsk.config import BridgeConfig, DriverConfig
from wsk.driver import Driver
from wsk.sources import bucket_lister
from wsk.state import DriverState

pytestmark = pytest.mark.swift
TOKEN = "hook"
RATE, WINDOW = 3, 1.0


def png(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(img[0]).save(out, format="PNG")
    return out.getvalue()


def test_uploads_are_predicted_once_each_through_the_bridge(swift_s3, local_invoker, tmp_path):
    bucket = f"ev{uuid.uuid4().hex[:8]}"
    store = swift_store(swift_s3, bucket)
    objects = S3Storage(store, bucket)
    Repository(S3Storage(store, bucket, "models")).publish("mnist", "lenet5", seeded_state(1), MNIST)
    stack = build(ServeConfig(poll_s=0), S3Storage(store, bucket, "models"))
    images = random_images(6, seed=4)
    keys = [f"images/{i}.png" for i in range(6)]
    for key, img in zip(keys[:5], images, strict=False):
        objects.write(key, png(img))
    objects.write(keys[5], b"\x89PNG\r\n\x1a\nbroken")
    objects.write("images/notes.txt", b"not an image")

    driver = Driver(local_invoker(), DriverState(tmp_path / "bridge.db"),
                    DriverConfig(job="predict", ps_url="http://unused", secret="s", per_minute=RATE,
                                 rate_window_s=WINDOW))
    sink = EventPredictor(objects, stack.predictor, "mnist", "images/", tmp_path / "events.db", driver.limiter)
    bridge = Bridge(BridgeConfig(token=TOKEN), bucket, driver.state, driver, bucket_lister(store), sink=sink)
    first = [bridge.receive(f"Bearer {TOKEN}", minio_event(bucket, k)) for k in keys[:5]]
    again = [bridge.receive(f"Bearer {TOKEN}", minio_event(bucket, k)) for k in keys[:5]]  # at-least-once
    assert [r["accepted"] for r in first] == [[k] for k in keys[:5]]
    assert all(r["accepted"] == [] and r["duplicates"] == 1 for r in again)
    assert bridge.receive(f"Bearer {TOKEN}", minio_event(bucket, "images/notes.txt"))["ignored"] == 1
    assert bridge.poll_once() == 1  # the broken PNG sent no notification; the poller finds it
    assert bridge.poll_once() == 0

    started = time.monotonic()
    bridge.start()
    try:
        deadline = time.monotonic() + 60
        while sum(sink.counts().get(s, 0) for s in ("done", "failed")) < 6:
            assert time.monotonic() < deadline, sink.counts()
            time.sleep(0.1)
    finally:
        bridge.stop()
    elapsed = time.monotonic() - started
    assert elapsed >= (6 // RATE - 1) * WINDOW  # 6 predictions at 3 per second need over a second
    assert sink.counts() == {"done": 5, "failed": 1} and sink.written == 6

    results = [k for k in objects.list("images/") if k.endswith(RESULT_SUFFIX)]
    assert sorted(results) == sorted(k + RESULT_SUFFIX for k in keys)  # exactly one per input
    expected = reference_probs(seeded_state(1), images[:5])
    for key, probs in zip(keys[:5], expected, strict=True):
        result = json.loads(objects.read(key + RESULT_SUFFIX) or b"")
        assert result["version"] == 1 and result["input"] == key
        assert result["class_index"] == int(probs.argmax())
        np.testing.assert_allclose(result["probabilities"], probs, rtol=1e-5, atol=1e-6)
    broken = json.loads(objects.read(keys[5] + RESULT_SUFFIX) or b"")
    assert "PNG cannot be decoded" in broken["error"]

    # A restarted sink on the same state file: the redelivered notifications change nothing.
    again_sink = EventPredictor(objects, stack.predictor, "mnist", "images/", tmp_path / "events.db",
                                driver.limiter)
    assert not any(again_sink.add(k) for k in keys)
    assert again_sink.step() == 0 and again_sink.written == 0
    stack.live.close()
