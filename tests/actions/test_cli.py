"""`owtrain action …` from the installed console script."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from commands.main import build_parser
from tests.fixtures.common import PYTHON, ROOT

OWTRAIN = str(Path(PYTHON).parent / "owtrain")


def test_run_prints_the_result_and_fails_on_an_error(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"dataset_url": "http://127.0.0.1:9/x", "epoch_n": 0}))
    done = subprocess.run([OWTRAIN, "action", "run", str(params)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"].startswith("bad parameters: missing required parameter(s): "
                                                       "dataset_sha256")


def test_help_explains_every_option():
    parser = build_parser()
    action = subparsers(parser)["action"]
    for name, sub in subparsers(action).items():
        for option in sub._actions:
            assert option.help, f"owtrain action {name}: {option.dest} has no help"


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    group = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(group.choices)
