"""A sharded parameter server, for real: S shard processes over loopback HTTP against one server.

Sync with S = 2 gives the same model as one server to 1e-6 for the same pushes; async with one
worker gives sequential SGD; a shard SIGKILLed mid-run and restarted from its journal loses no
acknowledged update while the other shard keeps serving; a worker whose plan differs is refused.
"""

from __future__ import annotations

import threading

import pytest
import requests
import torch
from safetensors.torch import load_file

from owtrain.models import build_model, param_spec
from owtrain.ps_shards import ShardSet
from owtrain.retry import RetryPolicy
from owtrain.shard_plan import ShardPlanMismatch
from tests.param_server.test_http_api import _owtrain

SPEC = param_spec(build_model("lenet5"))
FAST = RetryPolicy(attempts=3, base=0.1, cap=1.0)


def grads(worker: int, step: int) -> dict[str, torch.Tensor]:
    """A reproducible fake gradient for `worker`'s push number `step`."""
    gen = torch.Generator().manual_seed(1000 * worker + step)
    return {n: torch.randn(shape, generator=gen) * 0.01 for n, (shape, _) in SPEC.items()}


def shard_set(shards, worker: str, policy: RetryPolicy = FAST) -> ShardSet:
    return ShardSet([s.url for s in shards], shards[0].token(worker), policy=policy)


def push_all(client: ShardSet, worker: str, seq: int, update: dict[str, torch.Tensor], base: tuple[int, ...]):
    assert client.plan is not None
    return client.push(client.plan.split(update), {"worker": worker, "seq": seq, "kind": "grad"}, base)


def test_every_shard_publishes_the_plan_and_a_disagreeing_worker_is_refused(ps_shards):
    shards = ps_shards(2)
    body = requests.get(f"{shards[1].url}/shardPlan", timeout=5).json()
    assert (body["index"], body["shards"]) == (1, 2) and len(body["digest"]) == 64
    plan = shard_set(shards, "w0").check_plan(SPEC)
    assert plan.digest == body["digest"]
    with pytest.raises(ShardPlanMismatch, match="shard order"):
        ShardSet([shards[1].url, shards[0].url], shards[0].token("w0")).check_plan(SPEC)
    with pytest.raises(ShardPlanMismatch, match="expects shard 0 of 1"):  # one URL of a two-shard job
        ShardSet([shards[0].url], shards[0].token("w0")).check_plan(SPEC)
    with pytest.raises(ShardPlanMismatch):  # a worker built another model
        shard_set(shards, "w0").check_plan(param_spec(build_model("mlp")))


def test_sync_on_two_shards_gives_the_model_of_one_server(ps_server, ps_shards):
    extra = ["--momentum", "0.9", "--weight-decay", "0.001"]
    single = ps_server(strategy="sync:k=2", lr=0.1, extra=extra)
    shards = ps_shards(2, strategy="sync:k=2", lr=0.1, extra=extra)
    one = {w: single.client(w) for w in ("w0", "w1")}
    many = {w: shard_set(shards, w) for w in ("w0", "w1")}
    for c in many.values():
        c.check_plan(SPEC)
    rounds = 6
    for r in range(rounds):
        for i, w in enumerate(("w0", "w1")):
            meta = {"worker": w, "seq": r, "base_version": r, "kind": "grad"}
            assert one[w].push(grads(i, r), meta).status == ("accepted" if i == 0 else "applied")
            reply = push_all(many[w], w, r, grads(i, r), (r, r))
            assert reply.status == ("accepted" if i == 0 else "applied"), reply
    assert many["w0"].versions() == (rounds, rounds)
    versions, whole = many["w0"].pull_whole()
    pulled = one["w0"].pull(None)
    assert pulled is not None and pulled[0] == rounds and versions == (rounds, rounds)
    for name, value in pulled[1].items():
        assert torch.allclose(whole[name], value, atol=1e-6, rtol=0), name
    start = dict(build_model("lenet5").named_parameters())
    assert all(not torch.equal(value, start[name].detach()) for name, value in pulled[1].items()), "it must move"


def sequential_sgd(updates: list[dict[str, torch.Tensor]], lr: float) -> dict[str, torch.Tensor]:
    """What one worker's pushes do to the model under plain SGD, one after the other."""
    model = build_model("lenet5")
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for update in updates:
        for name, g in update.items():
            params[name].grad = g.clone()
        opt.step()
    return {n: p.detach() for n, p in params.items()}


def test_async_one_worker_on_two_shards_is_sequential_sgd_and_one_server(ps_server, ps_shards, tmp_path):
    single = ps_server(strategy="async", lr=0.1)
    shards = ps_shards(2, strategy="async", lr=0.1)
    client, plain = shard_set(shards, "w0"), single.client("w0")
    client.check_plan(SPEC)
    updates = [grads(0, s) for s in range(15)]
    for seq, update in enumerate(updates):
        assert push_all(client, "w0", seq, update, (seq, seq)).status == "applied"
        plain.push(update, {"worker": "w0", "seq": seq, "base_version": seq, "kind": "grad"})
    expected = sequential_sgd(updates, 0.1)
    versions, whole = client.pull_whole()
    pulled = plain.pull(None)
    assert versions == (15, 15) and pulled is not None
    for name in expected:
        assert torch.allclose(whole[name], expected[name], atol=1e-6, rtol=0), name
        assert torch.allclose(whole[name], pulled[1][name], atol=1e-6, rtol=0), name
    # export sees the whole model: `owtrain ps export` joins the shards' slices
    out = tmp_path / "model.safetensors"
    urls = ",".join(s.url for s in shards)
    assert "version 15" in _owtrain("export", "--url", urls, "--job", shards[0].job, "--out", str(out))
    exported = load_file(str(out))
    assert exported.keys() == expected.keys() and all(torch.equal(exported[n], whole[n]) for n in expected)
    with pytest.raises(AssertionError, match="shard order"):  # URLs out of order: refused, nothing written
        _owtrain("export", "--url", f"{shards[1].url},{shards[0].url}", "--job", shards[0].job, "--out", str(out))


def test_sigkill_of_one_shard_loses_no_acknowledged_update_and_leaves_the_other_alone(ps_shards, tmp_path):
    shards = ps_shards(2, strategy="async", lr=0.1, checkpoint_root=tmp_path)
    # long enough for the killed shard to restart while its push is retried (alone)
    client = shard_set(shards, "w0", RetryPolicy(attempts=60, base=0.1, cap=0.5))
    client.check_plan(SPEC)
    survivor_pid = shards[0].proc.pid
    updates = [grads(0, s) for s in range(24)]
    restarted = threading.Thread(target=shards[1].restart)
    for seq, update in enumerate(updates):
        reply = push_all(client, "w0", seq, update, (seq, seq))
        assert reply.status == "applied" and reply.versions == (seq + 1, seq + 1), reply
        if seq == 9:  # acknowledged by both; then shard 1 dies without a checkpoint (every 50 versions)
            shards[1].kill()
            restarted.start()  # comes back while the next pushes are retried
    restarted.join()
    # the retry of an update every shard already took is a duplicate everywhere
    assert push_all(client, "w0", 23, updates[23], (23, 23)).status == "duplicate"
    versions, whole = client.pull_whole()
    assert versions == (24, 24)
    expected = sequential_sgd(updates, 0.1)
    for name in expected:
        assert torch.allclose(whole[name], expected[name], atol=1e-6, rtol=0), name
    status = client.status()
    assert shards[0].proc.pid == survivor_pid and shards[0].proc.proc.poll() is None
    assert status["versions"] == [24, 24] and status["version"] == 24
    assert status["shards"][0]["replayed"] == 0, "the surviving shard was not restarted"
    assert status["shards"][1]["replayed"] >= 10, "the killed shard recovered its acknowledged updates from its journal"
