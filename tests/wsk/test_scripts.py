"""scripts/deploy.sh and scripts/fanout.sh, run for real with a recording stand-in `wsk` on PATH."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from owtrain.tokens import verify_token
from tests.fixtures.common import ROOT
from tests.wsk.chains import write_shard_list

SCRIPTS = ("deploy.sh", "fanout.sh")
# Records argv and start/end times, then answers like `wsk action invoke` does.
FAKE_WSK = """#!/usr/bin/env python3
import json, sys, time, uuid
start = time.time()
time.sleep(0.3 if sys.argv[1:3] == ["action", "invoke"] else 0)
params = None
if "--param-file" in sys.argv:
    with open(sys.argv[sys.argv.index("--param-file") + 1]) as f:
        params = json.load(f)
with open(sys.argv[0] + ".log", "a") as log:
    log.write(json.dumps({"argv": sys.argv[1:], "params": params, "start": start, "end": time.time()}) + "\\n")
if sys.argv[1:3] == ["action", "invoke"]:
    print(f"ok: invoked /_/{sys.argv[3]} with id {uuid.uuid4().hex}")
else:
    print("ok: updated")
"""


@pytest.fixture
def fake_wsk(tmp_path: Path) -> tuple[dict[str, str], Path]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    wsk = bindir / "wsk"
    wsk.write_text(FAKE_WSK)
    wsk.chmod(0o755)
    path = os.pathsep.join([str(bindir), str(Path(sys.executable).parent), os.environ["PATH"]])
    return {**os.environ, "PATH": path}, bindir / "wsk.log"


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed")
@pytest.mark.parametrize("script", SCRIPTS)
def test_shellcheck_passes(script):
    result = subprocess.run(["shellcheck", str(ROOT / "scripts" / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_usage_line_without_arguments(script, fake_wsk):
    env, log = fake_wsk
    result = subprocess.run(["bash", str(ROOT / "scripts" / script)], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("usage:")
    assert not log.exists()


def test_deploy_creates_action_trigger_and_rule(fake_wsk):
    env, log = fake_wsk
    env = {**env, "OWTRAIN_PS_URL": "http://ps:8090", "OWTRAIN_JOB": "mnist"}
    result = subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), "you/owtrain-action:0.1.0"], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    argvs = [c["argv"] for c in calls(log)]
    assert argvs[0][:5] == ["action", "update", "dist-train", "--docker", "you/owtrain-action:0.1.0"]
    flat = " ".join(argvs[0])
    assert "--timeout 300000 --memory 512" in flat and "--param apihost http://ps:8090" in flat
    assert "--param job mnist" in flat
    assert argvs[1:] == [["trigger", "update", "shard-uploaded", "--param", "source", "minio"],
                         ["rule", "update", "shard-uploaded-rule", "shard-uploaded", "dist-train"],
                         ["rule", "enable", "shard-uploaded-rule"]]


@pytest.mark.parametrize("image", ["you/owtrain-action", "you/owtrain-action:latest", "host:5000/img"])
def test_deploy_refuses_latest_or_untagged_images(image, fake_wsk):
    env, log = fake_wsk
    result = subprocess.run(["bash", str(ROOT / "scripts/deploy.sh"), image], env=env, capture_output=True, text=True)
    assert result.returncode == 2 and "explicit tag" in result.stderr and not log.exists()


def test_fanout_invokes_each_train_shard_with_bounded_parallelism_and_no_secret_in_argv(fake_wsk, tmp_path):
    from localrun.config import LocalConfig
    from tests.fixtures.common import live_processes

    env, log = fake_wsk
    shards = write_shard_list(tmp_path / "shards.json", 5)
    env = {**env, "OWTRAIN_PS_URL": "http://ps:8090", "OWTRAIN_JOB_SECRET": "sek-" + "x" * 20, "OWTRAIN_JOB": "mnist"}
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/fanout.sh"), str(shards), "2", "--", "-p", "lr", "0.05"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    command_lines = set()
    while proc.poll() is None:  # what every user of the machine sees in the process list meanwhile
        command_lines.update(cmd for _, _, cmd in live_processes())
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ids = out.split()
    assert len(ids) == 5 and all(len(i) == 32 for i in ids)
    recorded = calls(log)
    entries = json.loads(shards.read_text())[:5]
    by_worker = {}
    for call in recorded:
        argv = call["argv"]
        assert argv[:4] == ["action", "invoke", "dist-train", "--param-file"] and len(argv) == 5
        by_worker[call["params"]["worker"]] = call["params"]
    assert sorted(by_worker) == ["w1", "w2", "w3", "w4", "w5"]
    assert any("wsk action invoke dist-train --param-file" in c for c in command_lines), "the scan saw no invoke"
    training = dict(LocalConfig(run_dir=tmp_path, job="mnist").action_params())
    for i, entry in enumerate(entries, start=1):
        params = by_worker[f"w{i}"]
        assert (params["dataset_url"], params["dataset_sha256"]) == (entry["url"], entry["sha256"])
        assert verify_token(env["OWTRAIN_JOB_SECRET"], "mnist", params["ps_token"]).worker == f"w{i}"
        assert params["apihost"] == "http://ps:8090" and params["job"] == "mnist"
        # owtrain local's training parameters, with the override
        assert {k: params[k] for k in training} == {**training, "lr": 0.05}
        for secret in (params["ps_token"], params["dataset_url"], env["OWTRAIN_JOB_SECRET"]):
            assert not any(secret in c for c in command_lines), "a secret was visible in the process list"
    at_once = max(sum(1 for o in recorded if o["start"] <= c["start"] < o["end"]) for c in recorded)
    assert at_once <= 2  # invocations running at the moment each one starts
    assert not any(Path(c["argv"][4]).exists() for c in recorded), "the parameter files must be removed"
