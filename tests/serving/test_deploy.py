"""The `predict` action's deployment: scripts/deploy.sh (run with the recording stand-in `wsk`)
and wsk/manifest.yaml name the same image, entry, web flag and repository parameter."""

from __future__ import annotations

import subprocess

import yaml

from actions.server import load_entry
from tests.fixtures.common import ROOT
from tests.wsk.test_scripts import calls, fake_wsk  # noqa: F401 (a fixture)


def test_deploy_creates_the_predict_web_action_when_a_repository_is_given(fake_wsk):  # noqa: F811
    env, log = fake_wsk
    env = {**env, "OWTRAIN_SERVING_REPOSITORY": "s3://models/team", "OWTRAIN_S3_ENDPOINT": "https://s3:9000",
           "OWTRAIN_S3_ACCESS_KEY": "ak", "OWTRAIN_S3_SECRET_KEY": "sk"}
    result = subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), "you/owtrain-action:0.1.0"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (predict,) = [c["argv"] for c in calls(log) if c["argv"][:3] == ["action", "update", "predict"]]
    joined = " ".join(predict)
    for part in ("--docker you/owtrain-action:0.1.0", "--main serving.action:main", "--web true",
                 "--param repository s3://models/team", "--param s3_endpoint https://s3:9000"):
        assert part in joined, joined
    without = {k: v for k, v in env.items() if k != "OWTRAIN_SERVING_REPOSITORY"}
    log.unlink()
    subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), "you/owtrain-action:0.1.0"], env=without, check=True,
                   capture_output=True)
    assert not [c for c in calls(log) if c["argv"][:3] == ["action", "update", "predict"]]


def test_the_manifest_declares_the_same_action_and_its_entry_imports():
    action = yaml.safe_load((ROOT / "wsk" / "manifest.yaml").read_text())["packages"]["default"]["actions"]["predict"]
    assert action["docker"] == "$OWTRAIN_IMAGE" and action["web"] is True
    assert action["inputs"]["repository"] == "$OWTRAIN_SERVING_REPOSITORY"
    assert callable(load_entry(action["main"]))
