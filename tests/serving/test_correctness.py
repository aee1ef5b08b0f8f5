"""The server's predictions equal the model's own forward pass on the real MNIST test set: a
LeNet5 trained briefly here (seeded), published with its test accuracy, then all 10,000 test
images sent through the batching server (as PNGs, the first 1,000 also as JSON numbers) from
several threads. Same class for every image, probabilities equal to float precision, and the
accuracy identical to the figure the version was published with."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

from dataset_packer.sources import load_source
from owtrain.models import build_model
from serving.repository import publish
from tests.serving.helpers import MNIST, reference_probs


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    return load_source("mnist", tmp_path_factory.mktemp("datasets"), offline=True)


def train_briefly(x: np.ndarray, y: np.ndarray) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    net = build_model("lenet5", seed=0)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.5)
    data = (torch.from_numpy(x).float() / 255.0 - 0.1307) / 0.3081
    target = torch.from_numpy(y).long()
    for start in range(0, len(data), 64):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(data[start:start + 64]), target[start:start + 64]).backward()
        opt.step()
    return net.state_dict()


def png(img: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(img[0]).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def test_server_predictions_equal_the_forward_pass_on_the_mnist_test_set(mnist, tmp_path, serve_process):
    state = train_briefly(mnist.train_x[:6000], mnist.train_y[:6000])
    test_x, test_y = mnist.test_x, mnist.test_y
    expected = reference_probs(state, test_x)
    accuracy = float((expected.argmax(1) == test_y).mean())
    assert accuracy > 0.8  # a real, if brief, training
    publish(tmp_path / "repo", "mnist", "lenet5", state, MNIST, {"test": {"accuracy": accuracy, "loss": None}})
    server = serve_process(["--repository", str(tmp_path / "repo"), "--anon-rate", "0", "--slo-ms", "50"])

    def chunk(start: int, as_json: bool) -> tuple[int, np.ndarray]:
        part = test_x[start:start + 64]
        body = {"instances": part.tolist()} if as_json else {"instances": [{"b64": png(i)} for i in part]}
        reply = server.predict("mnist", body)
        assert reply.status_code == 200, reply.text
        return start, np.array([p["probabilities"] for p in reply.json()["predictions"]])

    with ThreadPoolExecutor(6) as pool:
        pngs = list(pool.map(lambda s: chunk(s, False), range(0, len(test_x), 64)))
        jsons = list(pool.map(lambda s: chunk(s, True), range(0, 1000, 64)))
    served = np.concatenate([p for _, p in sorted(pngs, key=lambda t: t[0])])
    assert served.shape == expected.shape
    np.testing.assert_array_equal(served.argmax(1), expected.argmax(1))
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-6)
    assert float((served.argmax(1) == test_y).mean()) == accuracy
    for start, probs in jsons:
        np.testing.assert_allclose(probs, expected[start:start + 64], rtol=1e-4, atol=1e-6)
    meta = server.wait_for(lambda s: True, "mnist")["model_version_status"][0]["scores"]
    assert meta["test"]["accuracy"] == accuracy
