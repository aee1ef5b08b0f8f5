"""wsk/manifest.yaml stays consistent with the action, the platform's limits and the scripts."""

from __future__ import annotations

from pathlib import Path

import yaml

from owtrain.action_params import KNOWN, REQUIRED
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


PER_INVOCATION = {"dataset_url", "dataset_sha256", "ps_token", "worker", "cursor"}


def test_inputs_bind_no_zero_values_and_nothing_the_action_rejects():
    """wskdeploy binds an input declared without a value to its type's zero value ("" or {}) on every
    activation: every declared input has a value, and the per-invocation ones are not declared."""
    inputs = load()["packages"]["default"]["actions"][c.DEFAULT_ACTION]["inputs"]
    assert set(inputs) <= KNOWN, f"unknown to the action: {set(inputs) - KNOWN}"
    assert not set(inputs) & PER_INVOCATION, "per-invocation parameters come with each invocation"
    assert set(REQUIRED) - PER_INVOCATION <= set(inputs)
    for name, value in inputs.items():
        assert value is not None and not isinstance(value, dict), f"input {name} has no plain value"


def test_training_defaults_are_owtrain_locals():
    from localrun.config import LocalConfig

    inputs = load()["packages"]["default"]["actions"][c.DEFAULT_ACTION]["inputs"]
    training = dict(LocalConfig(run_dir=ROOT, job="j").action_params())
    assert {k: inputs[k] for k in training} == training


def test_rule_links_the_trigger_to_the_action():
    package = load()["packages"]["default"]
    (rule,) = package["rules"].values()
    assert rule["trigger"] in package["triggers"]
    assert rule["action"] in package["actions"]
    assert rule["trigger"] == c.BridgeConfig(token="t").trigger == "shard-uploaded"
