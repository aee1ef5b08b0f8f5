"""Per-mode training defaults: `--mode grad` gets gradient mode's own measured lr, momentum and push
interval (bench/mode_defaults.py), declared once in MODE_DEFAULTS; explicit flags still win."""

from __future__ import annotations

import pytest

from commands.main import build_parser
from localrun.cli import config_from_args
from localrun.config import MODE_DEFAULTS, LocalConfig, mode_settings
from owtrain.errors import ConfigError


def _config(tmp_path, *flags: str) -> LocalConfig:
    args = build_parser().parse_args(["local", "--run-dir", str(tmp_path / "run"), *flags])
    return config_from_args(args)


@pytest.mark.parametrize("mode", ["delta", "grad"])
def test_each_mode_gets_its_own_defaults(tmp_path, mode):
    cfg = _config(tmp_path, "--mode", mode)
    want = MODE_DEFAULTS[mode]
    assert (cfg.lr, cfg.momentum, cfg.update_interval) == (want.lr, want.momentum, want.update_interval)
    params = dict(cfg.action_params())
    assert params["mode"] == mode and params["update_intv"] == want.update_interval


def test_grad_defaults_differ_from_delta_and_flags_win(tmp_path):
    grad, delta = MODE_DEFAULTS["grad"], MODE_DEFAULTS["delta"]
    assert (grad.momentum, grad.update_interval) != (delta.momentum, delta.update_interval)
    cfg = _config(tmp_path, "--mode", "grad", "--lr", "0.03", "--update-interval", "8")
    assert (cfg.lr, cfg.momentum, cfg.update_interval) == (0.03, grad.momentum, 8)
    # the dataclass's own defaults are the default mode's
    plain = LocalConfig(run_dir=tmp_path, job="j")
    assert (plain.mode, plain.lr, plain.update_interval) == ("delta", delta.lr, delta.update_interval)


def test_unknown_mode_names_the_choices():
    with pytest.raises(ConfigError, match="delta or grad"):
        mode_settings("adam")
