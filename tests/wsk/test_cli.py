"""`owtrain activation …` against the (fake) controller, `owtrain train`'s input errors, and the
driver's hooks into the real parameter server."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from owtrain.errors import Unauthorized
from tests.fixtures.common import PYTHON, ROOT
from wsk.client import OpenWhiskClient
from wsk.config import DriverConfig, WskConfig
from wsk.ps_hooks import job_closer


def owtrain(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "commands", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_activation_commands_mirror_wsk_on_openwhisk(fake_controller, wskprops):
    client = OpenWhiskClient(WskConfig(apihost=fake_controller.url, auth=fake_controller.auth))
    client.put_action("dist-train", image="img:1")
    activation_id = client.invoke("dist-train", {"x": 1})
    client.poll(activation_id, timeout=5, interval=0.02)
    env = {"WSK_CONFIG_FILE": str(wskprops)}
    listed = owtrain("activation", "list", "dist-train", "--invoker", "openwhisk", env=env)
    assert listed.returncode == 0 and activation_id in listed.stdout and "success" in listed.stdout
    got = owtrain("activation", "get", activation_id, "--invoker", "openwhisk", env=env)
    assert json.loads(got.stdout)["activationId"] == activation_id
    result = owtrain("activation", "result", "--last", "--invoker", "openwhisk", env=env)
    assert json.loads(result.stdout) == {"echo": {"x": 1}}
    logs = owtrain("activation", "logs", activation_id, "-r", "--invoker", "openwhisk", env=env)
    assert logs.stdout.strip() == "ran"
    missing = owtrain("activation", "get", "0" * 32, "--invoker", "openwhisk", env=env)
    assert missing.returncode == 1 and "still running" in missing.stdout


def test_train_rejects_bad_input_with_a_clear_message(tmp_path):
    bad = tmp_path / "shards.json"
    bad.write_text(json.dumps([{"key": "k", "url": "u"}]))
    args = ["train", "--shards", str(bad), "--ps", "http://ps:1", "--state", str(tmp_path / "s.db"),
            "--activations-db", str(tmp_path / "a.db")]
    no_secret = owtrain(*args, env={"OWTRAIN_JOB_SECRET": ""})
    assert no_secret.returncode == 2 and "job secret" in no_secret.stderr
    malformed = owtrain(*args, "--secret", "s")
    assert malformed.returncode == 2 and "entry 0 lacks size, sha256, expires, split" in malformed.stderr
    help_text = owtrain("train", "--help").stdout
    assert "--target-accuracy" in help_text and "--per-minute" in help_text


def test_job_closer_closes_the_job_with_an_admin_token_minted_from_the_secret(ps_server):
    ps = ps_server()
    job_closer(DriverConfig(job=ps.job, ps_url=ps.url, secret=ps.secret))("target accuracy 0.9 reached: 0.9512")
    assert ps.client("w").status()["closed"] == "target accuracy 0.9 reached: 0.9512"
    with pytest.raises(Unauthorized):
        job_closer(DriverConfig(job=ps.job, ps_url=ps.url, secret="not-the-job-secret"))("x")
