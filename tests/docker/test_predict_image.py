"""The `predict` web action runs in the action image: a container of the image built from
Dockerfile.action serves `serving.action:main` (as `wsk action create predict --docker IMAGE --main
serving.action:main` asks of it) from a model repository in a real S3 bucket, and answers JSON and
PNG requests with the model's own forward pass."""

from __future__ import annotations

import base64
import io
import uuid

import numpy as np
import pytest
from PIL import Image

from dataset_packer.stores.repo_storage import S3Storage
from serving.repository import Repository
from tests.serving.helpers import MNIST, random_images, reference_probs, seeded_state
from tests.wsk.uploads import swift_store

pytestmark = pytest.mark.swift


def test_the_predict_action_answers_from_an_s3_repository_in_the_image(docker_invoker, swift_s3):
    bucket = f"predict{uuid.uuid4().hex[:8]}"
    repo = Repository(S3Storage(swift_store(swift_s3, bucket), bucket, "models"))
    assert repo.publish("mnist", "lenet5", seeded_state(3), MNIST, {"test": {"accuracy": 0.1, "loss": 2.3}}) == 1
    bound = {"repository": f"s3://{bucket}/models", "s3_endpoint": swift_s3.endpoint,
             "s3_access_key": swift_s3.access_key, "s3_secret_key": swift_s3.secret_key}
    invoker = docker_invoker(entry="serving.action:main", timeout_ms=120_000)
    images = random_images(3, seed=21)
    png = io.BytesIO()
    Image.fromarray(images[0, 0]).save(png, format="PNG")
    requests_ = [
        {**bound, "__ow_method": "post", "__ow_path": "/mnist", "__ow_headers": {"content-type": "application/json"},
         "instances": images.tolist()},
        {**bound, "__ow_method": "post", "__ow_path": "/mnist", "__ow_headers": {"content-type": "image/png"},
         "__ow_body": base64.b64encode(png.getvalue()).decode()},
    ]
    expected = reference_probs(seeded_state(3), images)
    for params, want in zip(requests_, (expected, expected[:1]), strict=True):
        activation = invoker.wait(invoker.invoke("predict", params), 180)
        assert activation.success, activation.result
        result = activation.result
        assert result["statusCode"] == 200 and result["body"]["version"] == 1, result
        got = np.array([p["probabilities"] for p in result["body"]["predictions"]])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
