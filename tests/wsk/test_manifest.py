"""wsk/manifest.yaml stays consistent with the action, the platform's limits and the scripts."""

from __future__ import annotations

from pathlib import Path

import yaml

from actions.config import KNOWN, REQUIRED
from wsk import config as c

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict:
    return yaml.safe_load((ROOT / "wsk" / "manifest.yaml").read_text())


def test_action_name_image_and_limits():
    package = load()["packages"]["default"]
    action = package["actions"][c.DEFAULT_ACTION]
    assert action["docker"].startswith("$"), "the image comes from $OWTRAIN_IMAGE (a non-latest tag)"
    limits = action["limits"]
    assert set(limits) <= {"timeout", "memorySize", "logSize"}, "wskdeploy supports only these limit keys"
    assert c.MIN_TIMEOUT_MS <= limits["timeout"] <= c.MAX_TIMEOUT_MS
    assert c.MIN_MEMORY_MB <= limits["memorySize"] <= c.MAX_MEMORY_MB
    assert 0 <= limits["logSize"] <= 10


def test_inputs_cover_what_the_action_needs_and_nothing_it_rejects():
    inputs = load()["packages"]["default"]["actions"][c.DEFAULT_ACTION]["inputs"]
    assert set(REQUIRED) <= set(inputs)
    assert set(inputs) <= KNOWN, f"unknown to the action: {set(inputs) - KNOWN}"


def test_rule_links_the_trigger_to_the_action():
    package = load()["packages"]["default"]
    (rule,) = package["rules"].values()
    assert rule["trigger"] in package["triggers"]
    assert rule["action"] in package["actions"]
    assert rule["trigger"] == c.BridgeConfig(token="t").trigger == "shard-uploaded"
