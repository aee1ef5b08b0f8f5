"""Exports of the final model: each file loads back without owtrain and agrees with the safetensors
weights on real MNIST test images (same argmax, logits within rounding)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from dataset_packer.fetch import fetch_dataset
from dataset_packer.sources import load_source
from owtrain.exports import MODEL_FILE, ONNX_FILE, PT2_FILE, export_model, load_exports, verify_exports
from owtrain.models import build_model


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    folder = tmp_path_factory.mktemp("datasets")
    fetch_dataset("mnist", folder, offline=True)
    return load_source("mnist", folder, offline=True)


def _tensors(x: np.ndarray, ds) -> torch.Tensor:
    return ((torch.from_numpy(x).float() / ds.scale) - ds.mean[0]) / ds.std[0]


@pytest.fixture(scope="module")
def trained(mnist):
    """LeNet5 after 150 SGD steps on real MNIST (about 90 % accurate: the argmax check means something)."""
    torch.manual_seed(0)
    model = build_model("lenet5", seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.5)
    x, y = _tensors(mnist.train_x[:9600], mnist), torch.from_numpy(mnist.train_y[:9600])
    for i in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i * 64 % 9600:][:64]), y[i * 64 % 9600:][:64]).backward()
        opt.step()
    return model.eval()


def test_each_export_matches_the_safetensors_model_on_real_test_images(tmp_path, mnist, trained):
    files = export_model(tmp_path, trained, (1, 28, 28))
    assert set(files) == {MODEL_FILE, PT2_FILE, ONNX_FILE}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # no temp files left behind

    reference = build_model("lenet5", seed=1)  # other initial weights: everything comes from the file
    reference.load_state_dict(load_file(str(tmp_path / MODEL_FILE)))
    x, y = _tensors(mnist.test_x[:1000], mnist), torch.from_numpy(mnist.test_y[:1000])
    with torch.no_grad():
        expected = reference.eval()(x)
    assert float((expected.argmax(1) == y).float().mean()) > 0.8  # a model that learned something

    runners = load_exports(tmp_path)
    assert set(runners) == {PT2_FILE, ONNX_FILE}
    for name, forward in runners.items():
        with torch.no_grad():
            got = forward(x)
        assert got.shape == (1000, 10), name
        assert torch.equal(got.argmax(1), expected.argmax(1)), name
        assert torch.allclose(got, expected, atol=1e-4), name
        with torch.no_grad():  # the batch dimension is dynamic
            assert forward(x[:3]).shape == (3, 10), name

    checks = verify_exports(tmp_path, reference, x)
    assert set(checks) == {PT2_FILE, ONNX_FILE}
    assert all(c["ok"] and c["argmax_equal"] and c["images"] == 1000 for c in checks.values())


def test_a_wrong_export_is_reported_not_passed(tmp_path, mnist, trained):
    export_model(tmp_path, trained, (1, 28, 28))
    other = build_model("lenet5", seed=3).eval()
    checks = verify_exports(tmp_path, other, _tensors(mnist.test_x[:200], mnist))
    assert checks and not any(c["ok"] for c in checks.values())


def test_model_without_input_shape_gets_the_weights_only(tmp_path, trained):
    assert set(export_model(tmp_path, trained, None)) == {MODEL_FILE}
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_FILE]


def test_the_onnx_stack_is_installed_by_the_project():
    """requirements.txt pins onnx and onnxscript, requirements-dev.txt onnxruntime: CI must not skip ONNX."""
    assert all(importlib.util.find_spec(n) for n in ("onnx", "onnxscript", "onnxruntime"))
