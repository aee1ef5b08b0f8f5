"""Every setting's default is declared once, in its config dataclass (owtrain/settings.py).

Two checks: (1) the options derived from each config round-trip to exactly the dataclass defaults;
(2) no command-line module writes a literal default for an option that a config dataclass declares
(by the option's destination name, with or without a unit suffix) — that is the drift this prevents
(`--time-budget` 15 in the CLI and 50 in the dataclass, two bridge key patterns, three learning rates).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
from pathlib import Path

import pytest

from actions.config import ActionConfig
from localrun.config import LocalConfig
from owtrain.action_params import ActionParams
from owtrain.settings import add_options, options, values
from param_server.config import PSConfig
from serving.config import BridgePredictConfig, EventsConfig, ServeConfig
from wsk.config import BridgeConfig, DockerConfig, DriverConfig, LocalInvokerConfig, WskConfig

ROOT = Path(__file__).resolve().parents[1]
DERIVED = (PSConfig, LocalConfig, DriverConfig, BridgeConfig, LocalInvokerConfig, ServeConfig, EventsConfig,
           BridgePredictConfig)
CONFIGS = (*DERIVED, ActionParams, ActionConfig, DockerConfig, WskConfig)
CLI_MODULES = sorted([*ROOT.glob("*/cli.py"), *ROOT.glob("commands/*.py")])
UNIT_SUFFIXES = ("_s", "_ms", "_bytes", "_mb")
# a literal default in a CLI module is fine for these: not a field of any config (what the value means)
EMPTY = (None, False, "", (), [])
# an option that shares a name with a config field but is not a setting: why
NOT_SETTINGS = {("wsk/cli.py", "limit"): "`owtrain activation list`'s page size, a query, like `wsk activation list -l`"}


@pytest.mark.parametrize("cls", DERIVED, ids=lambda c: c.__name__)
def test_derived_options_round_trip_to_the_dataclass_defaults(cls):
    parser = argparse.ArgumentParser()
    add_options(parser, cls)
    parsed = values(cls, parser.parse_args([]))
    declared = {f.name: f.default for f in options(cls)}
    assert parsed == declared
    assert options(cls), f"{cls.__name__} declares no command-line settings"


def _field_names() -> set[str]:
    names = set()
    for cls in CONFIGS:
        for f in dataclasses.fields(cls):
            names.add(f.name)
            for suffix in UNIT_SUFFIXES:
                if f.name.endswith(suffix):
                    names.add(f.name[: -len(suffix)])
    return names


def _literal_defaults(path: Path) -> list[tuple[int, str, object]]:
    """(line, destination, value) of each `add_argument(..., default=<literal>)` in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in
                ("add_argument", "a")):
            continue
        flags = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        kw = {k.arg: k.value for k in node.keywords}
        if "default" not in kw or not flags:
            continue
        try:
            value = ast.literal_eval(kw["default"])
        except ValueError:
            continue  # a name: the default is taken from where it is declared
        if value in EMPTY:
            continue
        dest = kw["dest"].value if "dest" in kw and isinstance(kw["dest"], ast.Constant) else \
            max(flags, key=len).lstrip("-").replace("-", "_")
        found.append((node.lineno, str(dest), value))
    return found


def test_no_command_line_module_declares_a_config_default_again():
    fields = _field_names()
    twice = [f"{path.relative_to(ROOT)}:{line}: --{dest.replace('_', '-')} default {value!r} is also declared "
             "in a config dataclass" for path in CLI_MODULES for line, dest, value in _literal_defaults(path)
             if dest in fields and (str(path.relative_to(ROOT)), dest) not in NOT_SETTINGS]
    assert not twice, "\n".join(twice)


def test_the_scan_sees_the_cli_modules():
    names = {p.parent.name for p in CLI_MODULES}
    assert {"param_server", "localrun", "wsk", "serving", "dataset_packer", "actions", "commands"} <= names
