"""Whole jobs, all parts real: Swift S3, the parameter server, `owtrain action serve` containers run by
the local invoker, and the driver (`owtrain train`) or the event bridge (`owtrain bridge serve`)
as their own processes. Tiny learnable shards keep each job well under a minute.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import timedelta

from dataset_packer.presign import presign_all, write_json
from tests.actions.helpers import open_bucket, upload_shard
from tests.fixtures.common import PYTHON, ROOT
from wsk.activations import ActivationStore
from wsk.state import DriverState

# Enough batches that a 0.4 s budget ends every chain's first activation early, however fast the machine.
SAMPLES, EPOCHS = 1024, 2
TRAINING = ["-p", "batch_sz_train", "32", "-p", "update_intv", "2", "-p", "time_budget_s", "0.4",
            "-p", "threads", "1", "-p", "device", "cpu"]


def owtrain(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "commands", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_driver_runs_a_whole_job_through_the_local_invoker(ps_server, swift_s3, tmp_path):
    ps = ps_server(strategy="async", lr=0.05)
    store = open_bucket(swift_s3, f"job{uuid.uuid4().hex[:8]}")
    for i in range(2):
        upload_shard(store, tmp_path, f"learn-train-{i:05d}-of-00002.tar.gz", SAMPLES, seed=i)
    shard_list = tmp_path / "shards.json"
    write_json(shard_list, presign_all(store, timedelta(minutes=30)))
    db, state = tmp_path / "activations.db", tmp_path / "state.db"
    result = owtrain("train", "--shards", str(shard_list), "--ps", ps.url, "--job", ps.job, "--secret", ps.secret,
                     "--workers", "2", "--epochs", str(EPOCHS), "--invoker", "local", "--activations-db", str(db),
                     "--state", str(state), "--no-progress", *TRAINING)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"shards done 2/2, failed 0, samples {2 * SAMPLES * EPOCHS}" in result.stdout
    chains = DriverState(state)
    for shard in chains.shards():
        history = chains.history(shard.key)
        assert history[0]["cursor"] is None and all(h["status"] == "success" for h in history)
        # Each activation starts where the previous one's returned cursor points.
        assert [h["cursor"] for h in history[1:]] == [h["cursor"] for h in history[1:] if h["cursor"]]
    status = ps.client("w1").status()
    assert status["version"] > 0
    records = ActivationStore(db).list(limit=200)
    assert len(records) == sum(len(chains.history(s.key)) for s in chains.shards())
    assert len(records) > 2, "the 0.4 s time budget should have made the chains continue"
    assert all(r["response"]["status"] == "success" for r in records)
    listed = owtrain("activation", "list", "--activations-db", str(db), "-l", "3")
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 3
    logs = owtrain("activation", "logs", "--last", "--activations-db", str(db))
    assert logs.returncode == 0 and "XXX_THE_END" not in logs.stdout


def test_event_driven_job_upload_to_bridge_to_activations(ps_server, swift_s3, bridge_process, tmp_path):
    ps = ps_server(strategy="async", lr=0.05)
    bucket = f"evt{uuid.uuid4().hex[:8]}"
    store = open_bucket(swift_s3, bucket)
    bridge = bridge_process(
        ["--token", "t0k", "--bucket", bucket, "--endpoint", swift_s3.endpoint, "--access-key", swift_s3.access_key,
         "--secret-key", swift_s3.secret_key, "--poll", "0.3", "--ps", ps.url, "--job", ps.job, "--secret", ps.secret,
         "--workers", "2", "--epochs", "1", "--invoker", "local", "--activations-db", str(tmp_path / "act.db"),
         *TRAINING], env={})
    assert bridge.status()["shards"] == 0
    for i in range(2):  # the upload is the event: nothing else tells the bridge
        upload_shard(store, tmp_path, f"up/learn-train-{i:05d}-of-00002.tar.gz", SAMPLES, seed=i)
    deadline = time.monotonic() + 120
    while bridge.status()["done"] < 2:
        status = bridge.status()
        assert status["failed"] == 0, bridge.log_text()[-3000:]
        assert time.monotonic() < deadline, json.dumps(status)
        time.sleep(0.5)
    status = bridge.status()
    assert status["samples"] == 2 * SAMPLES and status["counts"]["accepted"] == 2
    assert ps.client("w1").status()["version"] > 0
