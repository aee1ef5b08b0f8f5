"""The `predict` web action under the real action server (the Docker-action protocol): web-shaped
parameters in, `{"statusCode", "headers", "body"}` out; the same predictions as the model's own
forward pass; OpenWhisk's 1 MB payload limit as a clear 413; bad input 4xx; a spent time limit."""

from __future__ import annotations

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image

from tests.fixtures.action import start_action_server
from tests.serving.helpers import publish_seeded, random_images, reference_probs, seeded_state


def web(path: str, **params) -> dict:
    """Parameters as OpenWhisk passes a web action's request (JSON body fields merged in)."""
    return {"__ow_method": "post", "__ow_path": path,
            "__ow_headers": {"content-type": "application/json", "x-forwarded-for": "10.0.0.7"}, **params}


@pytest.fixture(scope="module")
def action(tmp_path_factory):
    root = tmp_path_factory.mktemp("action")
    for seed in (1, 2):
        publish_seeded(root / "repo", seed)
    # The image's server with its default entry; the action names its own, as `wsk action create
    # predict --docker IMAGE --main serving.action:main` makes OpenWhisk's /init do.
    server = start_action_server(root, env={"OWTRAIN_SERVING_REPOSITORY": str(root / "repo")})
    assert server.init({"name": "predict", "main": "serving.action:main", "env": {}}).status_code == 200
    yield server
    server.stop()
    assert "Traceback" not in server.service.log_path.read_text()


def test_predictions_match_the_forward_pass(action):
    images = random_images(4, seed=11)
    status, result = action.run(web("/mnist", instances=images.tolist()))
    assert status == 200 and result["statusCode"] == 200, result
    assert result["body"]["version"] == 2 and result["headers"]["X-Model-Version"] == "2"
    got = np.array([p["probabilities"] for p in result["body"]["predictions"]])
    np.testing.assert_allclose(got, reference_probs(seeded_state(2), images), rtol=1e-5, atol=1e-6)
    status, one = action.run(web("/mnist/versions/1", inputs={"image": images.tolist()}))
    assert one["statusCode"] == 200 and one["body"]["version"] == 1
    np.testing.assert_allclose([p["probabilities"] for p in one["body"]["predictions"]],
                               reference_probs(seeded_state(1), images), rtol=1e-5, atol=1e-6)
    _, default = action.run({"instances": images[:1].tolist()})  # plain invoke: the only model
    assert default["statusCode"] == 200 and default["body"]["model"] == "mnist"


def test_a_raw_png_body(action):
    img = random_images(1, seed=12)
    out = io.BytesIO()
    Image.fromarray(img[0, 0]).save(out, format="PNG")
    params = {"__ow_method": "post", "__ow_path": "/mnist", "__ow_headers": {"content-type": "image/png"},
              "__ow_body": base64.b64encode(out.getvalue()).decode()}
    _, result = action.run(params)
    assert result["statusCode"] == 200, result
    np.testing.assert_allclose(result["body"]["predictions"][0]["probabilities"],
                               reference_probs(seeded_state(2), img)[0], rtol=1e-5, atol=1e-6)


def test_bad_input_limits_and_deadline(action):
    cases = [
        (web("/mnist", instances=[]), 400, "instances is empty"),
        (web("/mnist", instances=[[[1, 2]]]), 400, "shape [1, 2] does not match"),
        (web("/nope", instances=random_images(1).tolist()), 404, "model 'nope' is not served here"),
        (web("/mnist/versions/9", instances=random_images(1).tolist()), 404, "no version 9 loaded"),
        (web("/mnist/labels/canary", instances=random_images(1).tolist()), 404, "no 'canary' label set"),
        (web("/a/b/c"), 404, "no such path"),
        (web("/mnist"), 400, 'send {"instances"'),
        (web("/mnist", instances=random_images(64).tolist() * 7), 413, "an OpenWhisk action takes at most 1048576"),
    ]
    for params, status, message in cases:
        code, result = action.run(params)
        assert code == 200 and result["statusCode"] == status, (message, result)
        assert message in result["body"]["error"], result
    spent = int(time.time() * 1000)  # the activation's deadline is now: no forward pass may start
    _, late = action.run(web("/mnist", instances=random_images(1).tolist()), deadline_ms=spent)
    assert late["statusCode"] == 429 and "time limit" in late["body"]["error"] and late["headers"]["Retry-After"]
