"""`owtrain local` as a user runs it: a real process that starts the embedded S3, the parameter
server, the bridge and local action processes, on a small slice of the real MNIST.

Checks the printed accuracy, the report and model files, rollback on the run's server, Ctrl-C
(SIGINT) cleanup with a checkpoint left behind, and `--resume`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import requests
import torch
from safetensors.torch import load_file

from owtrain import supervised
from owtrain.models import build_model
from tests.fixtures.common import PYTHON, ROOT, live_processes

pytestmark = pytest.mark.slow

OWTRAIN = [PYTHON, "-m", "commands"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
ACCURACY_LINE = re.compile(r"^final validation accuracy: ([0-9.]+)$", re.M)
TEST_LINE = re.compile(r"^final test accuracy: ([0-9.]+) \(the saved model", re.M)


def _local(run_dir: Path, *flags: str) -> list[str]:
    return [*OWTRAIN, "local", "--run-dir", str(run_dir), "--no-progress", "--eval-interval", "1", *flags]


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that mention `text` (e.g. the run folder)."""
    return [f"{pid}: {cmd}" for pid, _, cmd in live_processes() if text in cmd]


def test_local_trains_to_target_and_writes_report(tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(_local(run_dir, "--limit", "4000", "--target-accuracy", "0.85", "--max-epochs", "8"),
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/dashboard$", done.stdout, re.M)
    accuracy = float(ACCURACY_LINE.search(done.stdout).group(1))
    assert accuracy >= 0.85

    report = json.loads((run_dir / "report.json").read_text())
    assert report["target"]["reached"] is True
    assert report["final"]["accuracy"] == pytest.approx(accuracy, abs=1e-4)
    # the target was judged on the validation shard; the test set was scored once, on the saved model
    test_accuracy = float(TEST_LINE.search(done.stdout).group(1))
    assert report["test"]["accuracy"] == pytest.approx(test_accuracy, abs=1e-4)
    assert report["test"]["version"] == report["final"]["version"] and report["test"]["samples"] == 4000
    assert all(check["ok"] for check in report["exports"].values()) and set(report["exports"]) == \
        {"model.pt2", "model.onnx"}
    assert (run_dir / "shards" / "mnist-val.tar.gz").exists()
    assert (run_dir / "dashboard.html").stat().st_size > 50_000  # the static copy, with its data
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # every version is an applied update, or the rollback to the first version that reached the target
    restored = report["restored"]
    assert report["updates"]["applied"] + (restored is not None) >= report["final"]["version"] > 0
    if restored is not None:
        assert restored["as_version"] == report["final"]["version"] and restored["accuracy"] >= 0.85
    assert report["activations"]["count"] >= 2 and report["activations"]["by_status"].get("success", 0) >= 2
    # 4000 samples less the 333 held out for validation (min(5000, 4000 // 12))
    assert report["config"]["workers"] == 2 and report["config"]["samples_per_epoch"] == 3667
    assert report["rollback"]["checkpoints"], "a final checkpoint must be on disk"
    for name in ("curves.png", "activity.png"):
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"

    # the model files load without owtrain's server and agree with each other
    model = build_model("lenet5")
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))
    exported = torch.export.load(str(run_dir / "model.pt2")).module()
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(exported(x), model.eval()(x), atol=1e-5)
    assert not _processes_mentioning(str(run_dir))

    # a finished run's folder is not silently reused (stale shards, another job's driver state)
    again = subprocess.run(_local(run_dir), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already holds a run" in again.stderr and "Traceback" not in again.stderr
    assert json.loads((run_dir / "report.json").read_text()) == report


def test_local_with_two_ps_shards_trains_to_target(tmp_path):
    """`--ps-shards 2`: two shard servers on consecutive ports, each with its own checkpoints, shard 0
    evaluating the whole model; the saved model is the whole model joined from both."""
    run_dir = tmp_path / "run"
    done = subprocess.run(_local(run_dir, "--ps-shards", "2", "--limit", "4000", "--target-accuracy", "0.85",
                                 "--max-epochs", "8"), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert float(ACCURACY_LINE.search(done.stdout).group(1)) >= 0.85
    report = json.loads((run_dir / "report.json").read_text())
    assert report["target"]["reached"] is True and report["config"]["ps_shards"] == 2
    assert report["test"]["version"] == report["final"]["version"] > 0
    for folder in ("checkpoints", "checkpoints-shard-1"):
        assert list((run_dir / folder).glob("ckpt-*.safetensors")), folder
    assert (run_dir / "logs" / "ps-shard-1.log").exists()
    model = build_model("lenet5")
    model.load_state_dict(load_file(str(run_dir / "model.safetensors")))  # every parameter, whole
    assert not _processes_mentioning(str(run_dir))


def test_ctrl_c_stops_everything_and_resume_continues(tmp_path):
    run_dir = tmp_path / "run"
    # an unreachable target, so only Ctrl-C (and later the epoch limit) ends the run
    proc = subprocess.Popen(_local(run_dir, "--limit", "40000", "--target-accuracy", "0.999", "--max-epochs", "3"),
                            cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in proc.stdout:
            if m := re.match(r"dashboard: (http://\S+)/dashboard", line):
                url = m.group(1)
                break
        assert url, "owtrain local did not print the dashboard URL"
        deadline = time.monotonic() + 120
        while requests.get(f"{url}/getVersion", timeout=5).json()["version"] < 6:
            assert time.monotonic() < deadline, "no training progress within 120 s"
            time.sleep(0.3)

        # every kept version can be restored on the run's server with the documented command
        config = json.loads((run_dir / "config.json").read_text())
        rollback = subprocess.run([*OWTRAIN, "ps", "rollback", "--url", url, "--job", config["job"],
                                   "--secret-file", str(run_dir / "secret"), "--version", "2"],
                                  cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=60)
        assert rollback.returncode == 0, rollback.stderr
        assert "restored the parameters of version 2" in rollback.stdout

        version_at_stop = requests.get(f"{url}/getVersion", timeout=5).json()["version"]
        children = json.loads((run_dir / "processes.json").read_text())["children"]
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        elapsed = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    # the job is closed first (activations return at their next push), then checkpoint and stop
    assert elapsed < 3.5, f"Ctrl-C took {elapsed:.1f}s"
    assert "owtrain local --resume" in out and "result: interrupted" in out
    assert children and not [c for c in children if supervised.is_running(c["pid"], c["start_ticks"])]
    # the printed final model is the saved one: same version as the checkpoint with the same weights
    printed = int(re.search(r"^final model: version (\d+)", out, re.M).group(1))
    assert printed >= version_at_stop
    saved = load_file(str(run_dir / "model.safetensors"))
    (path,) = [c for c in (run_dir / "checkpoints").glob("ckpt-*.safetensors") if int(c.stem.split("-")[1]) == printed]
    checkpoint = load_file(str(path))
    assert saved and all(torch.equal(saved[k], checkpoint[k]) for k in saved if k in checkpoint)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/getVersion", timeout=2)
    assert not _processes_mentioning(str(run_dir))
    checkpoints = sorted((run_dir / "checkpoints").glob("ckpt-*.safetensors"))
    assert checkpoints and int(checkpoints[-1].stem.split("-")[1]) >= version_at_stop
    interrupted = json.loads((run_dir / "report.json").read_text())
    assert interrupted["interrupted"] is True and interrupted["saved_version"] == printed

    # --resume: same job and server port, the server restarts from the checkpoint, the chains continue
    resumed = subprocess.run([*OWTRAIN, "local", "--resume", str(run_dir), "--no-progress"], cwd=ROOT, env=ENV,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr  # finished its epochs, target not reached
    assert "result: target missed" in resumed.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert report["interrupted"] is False
    assert report["config"]["job"] == config["job"]
    assert report["final"]["version"] > version_at_stop
    # one report for the whole run: both sessions' evaluations and updates
    assert report["sessions"] == 2
    assert min(e["version"] for e in report["evaluations"]) < version_at_stop < report["final"]["version"]
    assert report["updates"]["applied"] > interrupted["updates"]["applied"]
    # every epoch over both shards (40000 samples less 3333 held out for validation), across both sessions
    assert report["activations"]["samples"] >= 3 * 36667
    assert float(ACCURACY_LINE.search(resumed.stdout).group(1)) > 0.5
    assert not _processes_mentioning(str(run_dir))


def test_openwhisk_mode_invokes_the_action_through_the_controller_api(tmp_path, fake_controller, wskprops):
    """`--openwhisk` drives the action through the OpenWhisk REST API (here the swagger-checked
    fake controller, whose activations run the real `actions.main.main` in this process)."""
    from actions.main import main as action_main
    from wsk.client import OpenWhiskClient
    from wsk.config import load_wsk_config

    def run_action(params: dict) -> tuple[str, dict]:
        result = action_main(params)
        return ("application error" if "error" in result else "success"), result

    fake_controller.impl = run_action
    # what scripts/deploy.sh does on a real deployment
    OpenWhiskClient(load_wsk_config({"WSK_CONFIG_FILE": str(wskprops)})).put_action("dist-train", "owtrain/action:test")
    run_dir = tmp_path / "run"
    done = subprocess.run(_local(run_dir, "--openwhisk", "--limit", "2000", "--max-epochs", "1",
                                 "--target-accuracy", "0"),
                          cwd=ROOT, env={**ENV, "WSK_CONFIG_FILE": str(wskprops)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    invoked = fake_controller.invocations("dist-train")
    assert len(invoked) >= 2
    assert {r.body["worker"] for r in invoked} == {"w1", "w2"}
    report = json.loads((run_dir / "report.json").read_text())
    assert report["activations"]["by_status"] == {"success": report["activations"]["count"]}
    assert report["activations"]["samples"] == 2000 - 166  # less the validation samples
    assert report["final"]["version"] > 0
