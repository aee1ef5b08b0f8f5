"""Parameters (seed names) → frozen config; every bad value is a BadRequest naming it."""

from __future__ import annotations

import dataclasses

import pytest

from actions.config import ActionConfig
from owtrain.action_params import training_wire
from owtrain.cursor import Cursor
from owtrain.errors import BadRequest
from owtrain.specs import CompressionSpec

GOOD = {"dataset_url": "http://s3/b/k?sig", "dataset_sha256": "a" * 64, "apihost": "http://ps:1",
        "ps_token": "owt1.x.y", "job": "j", "worker": "w0"}


def test_seed_names_are_translated_with_defaults():
    cfg = ActionConfig.from_params({**GOOD, "batch_sz_train": 64, "epoch_n": 2, "update_intv": 4,
                                    "cursor": {"epoch": 1, "offset": 5, "seed": 2, "seq": 9}},
                                   {"__OW_DEADLINE": "1700000000000", "OWTRAIN_SHARD_CACHE": "/tmp/x"})
    assert (cfg.batch_size, cfg.epochs, cfg.update_intv) == (64, 2, 4)
    assert cfg.cursor == Cursor(1, 5, 2, 9)
    assert cfg.deadline_ms == 1700000000000 and str(cfg.cache_dir) == "/tmp/x"
    assert (cfg.mode, cfg.lr, cfg.compression, cfg.device, cfg.threads) == ("grad", 0.01, CompressionSpec("none"),
                                                                          "auto", 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]
    assert "owt1.x.y" not in repr(cfg) and "sig" not in repr(cfg)


@pytest.mark.parametrize("drop", ["dataset_url", "ps_token", "worker"])
def test_missing_required_parameter(drop):
    params = {k: v for k, v in GOOD.items() if k != drop}
    with pytest.raises(BadRequest, match=f"missing required parameter.*{drop}"):
        ActionConfig.from_params(params, {})


@pytest.mark.parametrize("name,value,need", [
    ("batch_sz_train", "32", "integer"), ("batch_sz_train", 0, "integer >= 1"), ("epoch_n", True, "integer"),
    ("lr", -1, "positive number"), ("mode", "sync", "grad, delta"), ("device", "tpu", "auto, cpu, cuda"),
    ("compression", "zip", "unknown compression"), ("time_budget_s", 0, "positive"), ("job", 5, "string"),
    ("lr_decay", -0.5, "number >= 0"),
])
def test_wrong_types_and_values(name, value, need):
    with pytest.raises(BadRequest, match=need) as info:
        ActionConfig.from_params({**GOOD, name: value}, {})
    assert name in str(info.value)


def test_lr_decay_is_for_delta_mode_only():
    assert ActionConfig.from_params({**GOOD, "mode": "delta", "lr_decay": 1}, {}).lr_decay == 1.0
    with pytest.raises(BadRequest, match="lr_decay.*mode 'delta'"):
        ActionConfig.from_params({**GOOD, "mode": "grad", "lr_decay": 1}, {})


def test_bad_deadline_env():
    with pytest.raises(BadRequest, match="__OW_DEADLINE"):
        ActionConfig.from_params(GOOD, {"__OW_DEADLINE": "soon"})


def test_unknown_names_are_listed_but_platform_extras_are_not():
    assert ActionConfig.unknown({**GOOD, "batch_size": 3, "__ow_headers": {}}) == ["batch_size"]


def test_compression_is_a_string_on_the_wire_and_a_spec_in_the_config():
    cfg = ActionConfig.from_params({**GOOD, "compression": "topk:0.25"}, {})
    assert cfg.compression == CompressionSpec("topk", 0.25)
    assert cfg.to_wire()["compression"] == "topk:0.25"
    assert ActionConfig.from_params(cfg.to_wire(), {}).compression == cfg.compression
    assert training_wire(compression=CompressionSpec("int8")) == {"compression": "int8"}
    for value, need in (("topk:2", r"parameter 'compression': top-k ratio must be in \(0, 1\]"),
                        (5, "parameter 'compression' must be a non-empty string")):
        with pytest.raises(BadRequest, match=need):
            ActionConfig.from_params({**GOOD, "compression": value}, {})
