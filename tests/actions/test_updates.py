"""Accumulation: a grouped push is the mean over its batches, and nothing leaks into the next."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from actions.updates import LocalOptimizer, UpdateGroup, decayed_lr, load_params
from owtrain.errors import BadTensor
from owtrain.models import build_model


def batches(k: int, size: int = 8):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(size, 1, 28, 28, generator=g), torch.randint(0, 10, (size,), generator=g))
            for _ in range(k)]


def test_grad_update_is_the_mean_over_the_group():
    model = build_model("mlp")
    data = batches(3)
    group = UpdateGroup(model, "grad", None)
    for x, y in data:
        group.train_batch(x, y)
    update = group.take()
    # the reference: the gradient of the mean of the three batch losses, in a fresh model
    ref = build_model("mlp")
    (sum(F.cross_entropy(ref(x), y) for x, y in data) / 3).backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(update[name], p.grad)


def test_gradients_are_zeroed_after_every_push():
    model = build_model("mlp")
    group = UpdateGroup(model, "grad", None)
    (x1, y1), (x2, y2) = batches(2)
    group.train_batch(x1, y1)
    group.take()
    assert all(p.grad is None for p in model.parameters())
    group.train_batch(x2, y2)
    second = group.take()
    ref = build_model("mlp")
    F.cross_entropy(ref(x2), y2).backward()
    for name, p in ref.named_parameters():
        torch.testing.assert_close(second[name], p.grad)


def test_delta_update_is_local_minus_base():
    model = build_model("mlp")
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = LocalOptimizer("sgd", list(model.parameters()), lr=0.1, momentum=0.0)
    group = UpdateGroup(model, "delta", opt)
    for x, y in batches(2):
        group.train_batch(x, y)
    delta = group.take()
    for name, p in model.named_parameters():
        torch.testing.assert_close(delta[name], p.detach() - base[name])
    assert any(float(d.abs().max()) > 0 for d in delta.values())
    # the next group's base is where the first left off
    group.train_batch(*batches(1)[0])
    after = {n: p.detach().clone() for n, p in model.named_parameters()}
    second = group.take()
    for name in delta:
        torch.testing.assert_close(second[name], after[name] - (base[name] + delta[name]))


def test_load_params_rejects_a_wrong_shape():
    model = build_model("mlp")
    tensors = {n: p.detach().clone() for n, p in model.named_parameters()}
    name = next(iter(tensors))
    tensors[name] = torch.zeros(3)
    try:
        load_params(model, tensors)
    except BadTensor as exc:
        assert exc.name == name
    else:
        raise AssertionError("a wrong shape was accepted")


@pytest.mark.parametrize("name,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)])
def test_local_optimizer_matches_torch_optim(name, momentum):
    ours, ref = build_model("mlp"), build_model("mlp")
    local = LocalOptimizer(name, list(ours.parameters()), lr=0.05, momentum=momentum)
    torch_opt = (torch.optim.SGD(ref.parameters(), lr=0.05, momentum=momentum) if name == "sgd"
                 else torch.optim.Adam(ref.parameters(), lr=0.05))
    for x, y in batches(3):
        for model, step in ((ours, local.step), (ref, torch_opt.step)):
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            step()
    for (name_a, a), (_, b) in zip(ours.named_parameters(), ref.named_parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name_a)


def test_lr_decay_is_inverse_time_in_the_workers_epochs():
    assert decayed_lr(0.1, 0.0, 3.0) == 0.1
    assert decayed_lr(0.1, 1.0, 1.0) == pytest.approx(0.05)
    assert decayed_lr(0.1, 2.0, 0.5) == pytest.approx(0.05)
