"""The REST API over real HTTP: predict by route, version and label, row and columnar bodies, PNG
and .npy instances, version status and metadata, /metrics, the panel; each answer checked against
the model's own forward pass."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image

from tests.serving.helpers import publish_seeded, random_images, reference_probs, seeded_state


def probs_of(reply: requests.Response) -> np.ndarray:
    return np.array([p["probabilities"] for p in reply.json()["predictions"]])


def png_b64(img: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(img[0]).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def npy_bytes(img: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, img)
    return out.getvalue()


@pytest.fixture
def server(tmp_path, serve_process):
    repo = tmp_path / "repo"
    for seed in (1, 2):
        publish_seeded(repo, seed, scores={"validation": {"accuracy": 0.5, "loss": 1.0},
                                           "test": {"accuracy": 0.4, "loss": 1.1}})
    return serve_process(["--repository", str(repo), "--poll-s", "0.3"])


def test_predict_routes_to_the_newest_version_and_matches_the_forward_pass(server):
    images = random_images(5)
    reply = server.predict("mnist", {"instances": images.tolist()})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["version"] == 2 and reply.headers["X-Model-Version"] == "2"
    expected = reference_probs(seeded_state(2), images)
    np.testing.assert_allclose(probs_of(reply), expected, rtol=1e-5, atol=1e-6)
    assert [p["class_index"] for p in body["predictions"]] == expected.argmax(1).tolist()
    assert [p["class"] for p in body["predictions"]] == [str(i) for i in expected.argmax(1)]


def test_versions_inputs_and_binary_forms_agree(server):
    images = random_images(3, seed=5)
    expected = reference_probs(seeded_state(1), images)
    forms = [
        {"instances": images.tolist()},
        {"instances": images[:, 0].tolist()},                                 # (H, W) for one channel
        {"instances": images.transpose(0, 2, 3, 1).tolist()},                 # (H, W, C)
        {"instances": [{"image": i.tolist()} for i in images]},
        {"inputs": images.tolist()},
        {"inputs": {"image": images.tolist()}},
        {"instances": [{"b64": png_b64(i)} for i in images]},
        {"instances": [{"b64": base64.b64encode(npy_bytes(i)).decode()} for i in images]},
        {"inputs": {"image": [{"b64": png_b64(i)} for i in images]}},
    ]
    for body in forms:
        reply = server.predict("mnist/versions/1", body)
        assert reply.status_code == 200, (reply.text, list(body))
        assert reply.json()["version"] == 1
        np.testing.assert_allclose(probs_of(reply), expected, rtol=1e-5, atol=1e-6)
    raw = requests.post(f"{server.url}/v1/models/mnist/versions/1:predict", data=npy_bytes(images[0]),
                        headers={"Content-Type": "application/x-npy"}, timeout=30)
    assert raw.status_code == 200, raw.text
    np.testing.assert_allclose(probs_of(raw), expected[:1], rtol=1e-5, atol=1e-6)


def test_status_metadata_metrics_and_panel(server):
    status = requests.get(f"{server.url}/v1/models/mnist", timeout=10).json()
    assert [r["version"] for r in status["model_version_status"]] == ["1", "2"]
    assert all(r["state"] == "AVAILABLE" for r in status["model_version_status"])
    assert status["model_version_status"][0]["scores"]["test"]["accuracy"] == 0.4
    one = requests.get(f"{server.url}/v1/models/mnist/versions/1", timeout=10).json()
    assert [r["version"] for r in one["model_version_status"]] == ["1"]
    meta = requests.get(f"{server.url}/v1/models/mnist/metadata", timeout=10).json()
    spec = meta["metadata"]["signature_def"]["serving_default"]
    assert spec["inputs"]["image"]["shape"] == [-1, 1, 28, 28] and spec["classes"][7] == "7"
    assert meta["model_spec"] == {"name": "mnist", "version": "2"}
    assert meta["scores"]["validation"]["accuracy"] == 0.5
    server.predict("mnist", {"instances": random_images(2).tolist()})
    server.predict("mnist", {"instances": random_images(2).tolist()})  # the same images: cache hits
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    for name in ("owtrain_serve_requests_total", "owtrain_serve_request_seconds_bucket", "owtrain_serve_batch_size",
                 "owtrain_serve_queue_depth", 'owtrain_serve_cache_total{outcome="hit"} 2.0',
                 'owtrain_serve_instances_total{model="mnist",version="2"} 4.0'):
        assert name in text, name
    stats = requests.get(f"{server.url}/api/stats", timeout=10).json()
    assert stats["cache"]["hits"] == 2 and stats["models"]["mnist"]["model_version_status"]
    panel = requests.get(f"{server.url}/panel", timeout=10)
    assert panel.status_code == 200 and "/api/stats" in panel.text
