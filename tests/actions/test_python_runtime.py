"""The action as OpenWhisk's Python runtime runs it: its launcher imports the entry and calls
`main` in a process where nothing configured logging. The action's INFO and WARNING lines must
still reach the activation's logs (the process's stdout/stderr) in the CLI's format."""

from __future__ import annotations

import json
import subprocess
import time

from tests.fixtures.common import PYTHON, ROOT

# What the runtime's launcher does, in short: import the action's module, call main, print the result.
LAUNCHER = "import json, sys\nfrom actions.main import main\nprint(json.dumps(main(json.loads(sys.argv[1]))))\n"


def test_log_lines_reach_the_logs_without_any_logging_configured(tmp_path):
    params = {"dataset_url": "http://127.0.0.1:9/shard.tar.gz", "dataset_sha256": "0" * 64,
              "apihost": "http://127.0.0.1:9", "ps_token": "owt1.x.y", "job": "j", "worker": "w0",
              "time_budget_s": 1, "no_such_parameter": 1}
    env = {"PATH": "/usr/bin:/bin", "__OW_ACTIVATION_ID": "a" * 32, "OWTRAIN_SHARD_CACHE": str(tmp_path),
           "__OW_DEADLINE": str(int(time.time() * 1000) + 5000)}
    done = subprocess.run([PYTHON, "-c", LAUNCHER, json.dumps(params)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "cannot load the shard" in json.loads(done.stdout.splitlines()[-1])["error"]
    logs = done.stdout + done.stderr
    assert f" INFO actions.main: activation {'a' * 32}:" in logs, logs
    assert " WARNING actions.main: ignoring unknown parameter(s): no_such_parameter" in logs, logs
