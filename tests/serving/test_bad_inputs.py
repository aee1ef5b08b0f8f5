"""Bad input over real HTTP: each is a 4xx with a precise message, one log line, no traceback.

A bad instance fails its whole request *before it joins a batch* (validation is complete before
`Batcher.submit`), so good requests batched at the same moment get their own right answers:
`test_bad_requests_do_not_disturb_good_ones_in_the_same_batches` sends both at once.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from PIL import Image

from tests.serving.helpers import publish_seeded, random_images, reference_probs, seeded_state

GOOD = random_images(1).tolist()[0]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.serving.conftest import ServeProcess

    root = tmp_path_factory.mktemp("bad")
    publish_seeded(root / "repo", 1)
    proc = ServeProcess(["--repository", str(root / "repo"), "--max-instances", "8", "--max-body-bytes", "200000",
                         "--anon-rate", "0", "--max-wait-ms", "20"], root / "serve.log")
    yield proc
    proc.stop()
    text = proc.service.log_path.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert "rejected POST /v1/models/mnist:predict -> 400" in text


CASES = [
    ({"instances": []}, 400, "instances is empty"),
    ({"instances": [GOOD] * 9}, 400, "9 instances; at most 8"),
    ({}, 400, 'exactly one of "instances"'),
    ({"instances": [GOOD], "inputs": [GOOD]}, 400, 'exactly one of "instances"'),
    ({"instances": "nope"}, 400, "instances must be a list"),
    ({"instances": [[[1, 2, 3]]]}, 400, "instances[0]: shape [1, 3] does not match the model's input (1, 28, 28)"),
    ({"instances": [GOOD, [[0] * 28] * 27]}, 400, "instances[1]: shape [27, 28]"),
    ({"instances": [[["a"] * 28] * 28]}, 400, "instances[0]: values must be numbers, found str"),
    ({"instances": [[[True] * 28] * 28]}, 400, "values must be numbers, found bool"),
    ({"instances": [[[None] * 28] * 28]}, 400, "found NoneType"),
    ({"instances": [[[0] * 28] * 27 + [[0] * 27]]}, 400, "ragged"),
    ({"instances": [[[300] * 28] * 28]}, 400, "pixel values must be in [0, 255], found [300, 300]"),
    ({"instances": [[[-1] * 28] * 28]}, 400, "found [-1, -1]"),
    ({"instances": [{"b64": "!!!"}]}, 400, "instances[0].b64 is not valid base64"),
    ({"instances": [{"b64": b64(b"GIF89a....")}]}, 400, "neither a PNG nor a .npy file"),
    ({"instances": [{"b64": b64(png(30, 28))}]}, 400, "the PNG is 30x28, the model takes 28x28"),
    ({"instances": [{"b64": b64(png(28, 28)[:40])}]}, 400, "the PNG cannot be decoded"),
    ({"instances": [{"b64": b64(b"\x93NUMPY\x01\x00garbage")}]}, 400, "the .npy file cannot be read"),
    ({"instances": [{"pixels": GOOD}]}, 400, "expected the single input 'image'"),
    ({"instances": [{"b64": 5}]}, 400, "b64 must be a base64 string"),
]


@pytest.mark.parametrize(("body", "status", "message"), CASES, ids=[c[2][:40] for c in CASES])
def test_each_bad_body_is_a_precise_4xx(server, body, status, message):
    reply = server.predict("mnist", body)
    assert reply.status_code == status, reply.text
    assert message in reply.json()["error"], reply.json()
    assert reply.json()["reason"] == "bad_request"


def test_nan_object_dtype_npy_and_non_json(server):
    nan = requests.post(f"{server.url}/v1/models/mnist:predict", data=b'{"instances": [[[NaN]]]}', timeout=10)
    assert nan.status_code == 400 and "NaN and Infinity are not JSON numbers" in nan.json()["error"]
    inf = requests.post(f"{server.url}/v1/models/mnist:predict", data=b'{"instances": [[[1e309]]]}', timeout=10)
    assert inf.status_code == 400 and "values must be finite, found inf" in inf.json()["error"]
    assert requests.post(f"{server.url}/v1/models/mnist:predict", data=b"\xff\xfe", timeout=10).status_code == 400
    out = io.BytesIO()
    np.save(out, np.zeros((28, 28), dtype=np.int64))
    wrong = server.predict("mnist", {"instances": [{"b64": b64(out.getvalue())}]})
    assert wrong.status_code == 400 and "dtype must be uint8, float32 or float64" in wrong.json()["error"]
    raw = requests.post(f"{server.url}/v1/models/mnist:predict", data=b"not an image", timeout=10,
                        headers={"Content-Type": "image/png"})
    assert raw.status_code == 400 and "body is neither a PNG nor a .npy file" in raw.json()["error"]


def test_unknown_model_version_label_and_paths(server):
    cases = [
        ("nope", 404, "model 'nope' is not served here; models: ['mnist']"),
        ("mnist/versions/7", 404, "model 'mnist' has no version 7 loaded; loaded: [1]"),
        ("mnist/versions/x", 400, "a version is a positive integer, got 'x'"),
        ("mnist/labels/stable", 404, "model 'mnist' has no 'stable' label set"),
        ("mnist/labels/blue", 404, "unknown label 'blue'; labels are stable, canary"),
    ]
    for path, status, message in cases:
        reply = server.predict(path, {"instances": [GOOD]})
        assert reply.status_code == status and message in reply.json()["error"], (path, reply.text)
    assert requests.get(f"{server.url}/v1/models/mnist/versions/7", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/v1/models/mnist:predict", timeout=10).status_code == 400
    assert requests.get(f"{server.url}/v1/models/a/b/c", timeout=10).status_code == 404
    assert requests.get(f"{server.url}/nothing", timeout=10).status_code == 404


def test_oversized_body_is_413_and_a_bad_token_401(server):
    huge = requests.post(f"{server.url}/v1/models/mnist:predict", data=b"[" + b"0," * 200_000 + b"0]",
                         headers={"Content-Type": "application/json"}, timeout=30)
    assert huge.status_code == 413 and "over this server's limit of 200000 bytes" in huge.json()["error"]
    forged = server.predict("mnist", {"instances": [GOOD]}, headers={"Authorization": "Bearer owt1.x.y"})
    assert forged.status_code == 401 and "takes no tokens" in forged.json()["error"]


def test_bad_requests_do_not_disturb_good_ones_in_the_same_batches(server):
    images = random_images(40, seed=9)
    expected = reference_probs(seeded_state(1), images)
    bad = {"instances": [GOOD, [[[1e3] * 28] * 28]]}

    def good(i: int) -> tuple[int, int, list]:
        reply = server.predict("mnist", {"instances": [images[i].tolist()]})
        return i, reply.status_code, reply.json()["predictions"][0]["probabilities"]

    def one_bad(_: int) -> int:
        return server.predict("mnist", bad).status_code

    with ThreadPoolExecutor(16) as pool:
        goods = [pool.submit(good, i) for i in range(40)]
        bads = [pool.submit(one_bad, i) for i in range(40)]
        results = [f.result() for f in goods]
        assert all(f.result() == 400 for f in bads)
    for i, status, probs in results:
        assert status == 200
        np.testing.assert_allclose(probs, expected[i], rtol=1e-5, atol=1e-6)
    sizes = requests.get(f"{server.url}/metrics", timeout=10).text
    assert "owtrain_serve_batch_size_count" in sizes
