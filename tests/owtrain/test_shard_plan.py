"""The shard plan: deterministic, size-balanced, big tensors cut by rows, split/join exact inverses."""

from __future__ import annotations

import pytest
import torch

from owtrain.errors import ConfigError
from owtrain.models import build_model, param_spec
from owtrain.ps_urls import parse_urls
from owtrain.shard_plan import PIECES_PER_SHARD, ShardPlanMismatch, check_published, make_plan


@pytest.mark.parametrize("model", ["lenet5", "resnet18"])
@pytest.mark.parametrize("shards", [1, 2, 3, 4, 7])
def test_plan_is_balanced_covers_every_row_once_and_round_trips(model: str, shards: int) -> None:
    net = build_model(model)
    spec = param_spec(net)
    plan = make_plan(spec, shards)
    loads = plan.shard_bytes()
    mean = sum(loads) / shards
    # LPT over pieces of at most mean / PIECES_PER_SHARD: no shard more than one piece above the mean
    assert max(loads) <= mean * (1 + 1 / PIECES_PER_SHARD) + 1
    assert min(loads) > 0
    for name, (shape, _) in spec.items():
        rows = sorted((p.start, p.stop) for p in plan.pieces if p.name == name)
        covered = [r for a, b in rows for r in range(a, b)]
        assert covered == list(range(shape[0] if shape else 0)), name
    tensors = {n: p.detach() for n, p in net.named_parameters()}
    joined = plan.join(plan.split(tensors))
    assert joined.keys() == tensors.keys()
    assert all(torch.equal(joined[n], tensors[n]) for n in tensors)
    for index, part in enumerate(plan.split(tensors)):
        assert {k: (tuple(v.shape), v.dtype) for k, v in part.items()} == plan.shard_spec(index)


def test_one_shard_is_the_plain_model_and_big_layers_are_cut() -> None:
    spec = param_spec(build_model("resnet18"))
    assert {p.key for p in make_plan(spec, 1).pieces} == set(spec)
    biggest = max(spec, key=lambda n: torch.Size(spec[n][0]).numel())
    cut = [p for p in make_plan(spec, 2).pieces if p.name == biggest]
    assert len(cut) > 1 and {p.shard for p in cut} == {0, 1}, "one big layer must not pin a shard"


def test_plan_is_deterministic_and_its_digest_names_model_and_count() -> None:
    spec = param_spec(build_model("lenet5"))
    again = param_spec(build_model("lenet5", seed=7))  # other weights, same shapes: same plan
    assert make_plan(spec, 3) == make_plan(again, 3)
    assert make_plan(spec, 3).digest == make_plan(dict(reversed(list(spec.items()))), 3).digest  # order-free
    digests = {make_plan(spec, 2).digest, make_plan(spec, 3).digest, make_plan(param_spec(build_model("mlp")), 2).digest}
    assert len(digests) == 3


def test_a_shard_publishing_another_plan_is_refused_with_advice() -> None:
    plan = make_plan(param_spec(build_model("lenet5")), 2)
    check_published(plan, 1, {"index": 1, "shards": 2, "digest": plan.digest}, "http://s1")
    with pytest.raises(ShardPlanMismatch, match="shard order"):
        check_published(plan, 0, {"index": 1, "shards": 2, "digest": plan.digest}, "http://s1")
    with pytest.raises(ShardPlanMismatch, match="expects shard 0 of 2"):
        check_published(plan, 0, {"index": 0, "shards": 3, "digest": "x"}, "http://s0")


def test_shard_urls_parse_from_a_list_or_commas() -> None:
    assert parse_urls("http://a:1/, http://b:2") == ("http://a:1", "http://b:2")
    assert parse_urls(["http://a:1"]) == ("http://a:1",)
    for bad in ("", "http://a,,http://b", ["http://a", 3], 5, "http://a,http://a"):
        with pytest.raises(ConfigError):
            parse_urls(bad)  # type: ignore[arg-type]
