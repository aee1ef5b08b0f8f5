"""`owtrain local --invoker docker`: a whole small job to its target with every activation in a
container of the real image on the real engine."""

from __future__ import annotations

import json
import subprocess
import time

from tests.fixtures.common import PYTHON, ROOT
from wsk.invoker.docker import LABEL


def test_local_job_in_containers_reaches_its_target(docker_engine, tmp_path):
    run_dir = tmp_path / "run"
    since = int(time.time()) - 1
    done = subprocess.run(
        [PYTHON, "-m", "commands", "local", "--run-dir", str(run_dir), "--no-progress", "--eval-interval", "1",
         "--invoker", "docker", "--image", docker_engine.image, "--limit", "2000", "--target-accuracy", "0.8",
         "--max-epochs", "6"],
        cwd=ROOT, env={**docker_engine.env, "PYTHONUNBUFFERED": "1"}, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads((run_dir / "report.json").read_text())
    assert report["target"]["reached"] is True and report["final"]["accuracy"] >= 0.8, done.stdout[-2000:]
    assert report["activations"]["by_status"].get("success", 0) >= 2
    # Every activation ran in a container of the image: the engine started the invoker's containers
    # (one stem cell per worker at least), and none is left.
    events = docker_engine.docker("events", "--since", str(since), "--until", str(int(time.time()) + 1),
                                  "--filter", "type=container", "--filter", "event=start",
                                  "--filter", f"label={LABEL}", "--format", "{{.Actor.Attributes.image}}")
    started = events.stdout.split()
    assert len(started) >= 2 and set(started) == {docker_engine.image}, events
    assert not docker_engine.docker("ps", "-aq", "--filter", f"label={LABEL}").stdout.split()
