"""The aggregation strategies against plain PyTorch, over real HTTP to a real server process."""

from __future__ import annotations

import pytest
import torch

from owtrain.errors import StaleUpdate
from tests.param_server.helpers import batch, grads, lenet, max_diff, meta

torch.set_num_threads(1)


def test_sync_k_slices_equal_one_full_batch_step(ps_server):
    """K workers pushing the gradients of K equal slices == one PyTorch step on the whole batch."""
    k, lr = 4, 0.1
    ps = ps_server(strategy=f"sync:k={k}", lr=lr, extra=["--momentum", "0.9", "--nesterov", "--weight-decay", "1e-3"])
    clients = [ps.client(f"w{i}") for i in range(k)]
    reference = lenet()
    opt = torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3)
    for step in range(2):  # two rounds so momentum matters
        x, y = batch(32, seed=step)
        version, params = clients[0].pull(None)
        assert version == step
        worker_model = lenet(params)
        results = []
        for i, client in enumerate(clients):
            sl = slice(i * 8, (i + 1) * 8)
            results.append(client.push(grads(worker_model, x[sl], y[sl]), meta(f"w{i}", step, version)))
        assert [r.status for r in results] == ["accepted"] * (k - 1) + ["applied"]
        assert results[-1].version == step + 1
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()
    version, params = clients[0].pull(None)
    assert version == 2
    assert max_diff(params, dict(reference.named_parameters())) < 1e-6


def test_async_one_worker_equals_sequential_sgd(ps_server):
    lr = 0.05
    ps = ps_server(strategy="async", lr=lr, extra=["--momentum", "0.5"])
    client = ps.client("solo")
    reference = lenet()
    opt = torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.5)
    version, params = client.pull(None)
    for step in range(5):
        x, y = batch(16, seed=10 + step)
        result = client.push(grads(lenet(params), x, y), meta("solo", step, version))
        assert (result.status, result.staleness, result.version) == ("applied", 0, step + 1)
        version, params = client.pull(version)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()
    assert max_diff(params, dict(reference.named_parameters())) < 1e-6


def test_bounded_rejects_exactly_updates_older_than_s(ps_server):
    s = 2
    ps = ps_server(strategy=f"bounded:s={s},mode=reject")
    client = ps.client("w")
    _, params = client.pull(None)
    g = grads(lenet(params), *batch(4))
    for seq in range(6):  # reach version 6
        client.push(g, meta("w", seq, seq))
    seq, current, rejected = 100, 6, 0
    for base in [0, 3, 4, 6, 1, 5, 2, 7, 4, 8, 5]:  # a mix around the bound
        if current - base > s:
            with pytest.raises(StaleUpdate) as info:
                client.push(g, meta("w", seq, base))
            assert info.value.current_version == current
            rejected += 1
        else:
            result = client.push(g, meta("w", seq, base))
            assert (result.status, result.staleness) == ("applied", current - base)
            assert result.refresh == (current - base > 0)
            current += 1
        seq += 1
        assert client.version() == current
    assert rejected == 7
    assert client.status()["updates"]["rejected"] == {"stale": rejected}


def test_sync_timeout_applies_a_partial_round_of_deltas_and_rejects_the_straggler(ps_server):
    """Straggler rule over HTTP: after `timeout` s the round is applied with what arrived (>= min);
    the late worker's update, computed on the old version, is refused as stale."""
    ps = ps_server(strategy="sync:k=2,timeout=0.5,min=1")
    fast, slow = ps.client("fast"), ps.client("slow")
    version, p0 = fast.pull(None)
    delta = {n: torch.full_like(t, 0.01) for n, t in p0.items()}
    assert fast.push(delta, meta("fast", 0, version, kind="delta")).status == "accepted"
    pulled = fast.pull(version, wait=10)  # woken when the time-out applies the round
    assert pulled is not None and pulled[0] == 1
    assert max_diff(pulled[1], {n: t + 0.01 for n, t in p0.items()}) < 1e-6  # server_lr 1: p0 + mean delta
    with pytest.raises(StaleUpdate) as info:
        slow.push(delta, meta("slow", 0, version, kind="delta"))
    assert info.value.current_version == 1
