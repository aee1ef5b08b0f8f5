"""The run's config holds the strategy and the compression parsed (`StrategySpec`, `CompressionSpec`)
from the flags; the saved config.json, the action's parameters and the server's command line carry
their strings."""

from __future__ import annotations

import argparse
import json

import pytest

from commands.main import build_parser
from localrun.cli import config_from_args, register
from localrun.config import CONFIG_FILE, LocalConfig
from owtrain.errors import ConfigError
from owtrain.specs import CompressionSpec, StrategySpec


def _config(tmp_path, *flags: str) -> LocalConfig:
    return config_from_args(build_parser().parse_args(["local", "--run-dir", str(tmp_path / "run"), *flags]))


def test_flags_become_specs_and_the_saved_config_their_strings(tmp_path):
    cfg = _config(tmp_path, "--strategy", "sync:k=2,timeout=5", "--compression", "topk:0.1")
    assert cfg.strategy == StrategySpec("sync", (("k", "2"), ("timeout", "5")))
    assert cfg.compression == CompressionSpec("topk", 0.1)
    assert dict(cfg.action_params())["compression"] == "topk:0.1"
    assert "strategy='sync:k=2,timeout=5'" in repr(cfg)
    cfg.run_dir.mkdir()
    saved = json.loads(cfg.save().read_text())
    assert (saved["strategy"], saved["compression"]) == ("sync:k=2,timeout=5", "topk:0.1")
    assert LocalConfig.load(cfg.run_dir) == cfg


def test_the_defaults_are_specs_shown_as_strings_in_help(tmp_path):
    cfg = _config(tmp_path)
    assert (cfg.strategy, cfg.compression) == (StrategySpec("async"), CompressionSpec("none"))
    subparsers = argparse.ArgumentParser().add_subparsers()
    register(subparsers)
    text = " ".join(subparsers.choices["local"].format_help().split())
    assert "bounded:s=S[,mode=reject|damp] (default: async)" in text and "topk:R (default: none)" in text


@pytest.mark.parametrize(("flags", "message"), [
    (["--strategy", "sync:k"], "--strategy 'sync:k': bad strategy option 'k' for sync; write key=value, e.g. sync:k=4"),
    (["--compression", "topk:2"], "--compression 'topk:2': top-k ratio must be in (0, 1], got 2.0"),
])
def test_a_flag_that_parses_to_nothing_is_a_usage_error_naming_it(tmp_path, flags, message):
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, *flags)
    assert str(info.value) == message


def test_a_saved_config_with_a_bad_compression_is_refused(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"job": "j", "compression": "zip"}))
    with pytest.raises(ConfigError, match="not a valid run configuration: unknown compression 'zip'"):
        LocalConfig.load(tmp_path)
