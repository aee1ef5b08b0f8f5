"""`owtrain local` hands the shards it uploaded to the driver instead of waiting for a bucket
listing to find them (`wsk.job.start_job(uploaded=...)`): real embedded S3 (moto over HTTP), a real
driver state file and the local invoker."""

from __future__ import annotations

from localrun.embedded_s3 import embedded_s3
from owtrain.naming import TRAIN_KEY_PATTERN
from tests.fixtures.common import free_port
from wsk.config import BridgeConfig, DriverConfig
from wsk.job import start_job

TRAIN = ["job-1/mnist-train-00000-of-00002.tar.gz", "job-1/mnist-train-00001-of-00002.tar.gz"]


def test_uploaded_train_shards_are_queued_before_the_bridge_lists_the_bucket(tmp_path, local_invoker):
    uploaded = [*TRAIN, "job-1/mnist-val.tar.gz", "job-1/mnist-test.tar.gz", "job-2/mnist-train-00000-of-00001.tar.gz"]
    # no poller at all (poll interval 0): the hand-off is the only way a shard reaches the driver
    bridge_cfg = BridgeConfig(token="t", key_pattern=TRAIN_KEY_PATTERN, poll_interval_s=0.0)
    driver_cfg = DriverConfig(ps_url=f"http://127.0.0.1:{free_port()}", secret="s" * 32, job="job-1", workers=2)
    with embedded_s3(free_port(), "owtrain-handoff") as store, \
            start_job(driver_cfg, bridge_cfg, local_invoker(prewarm=0), store, tmp_path / "driver.db",
                      prefix="job-1/", drain_s=1.0, uploaded=uploaded) as job:
        assert [t.name for t in job.bridge.threads] == ["bridge-dispatch"]
        assert [s.key for s in job.state.shards()] == TRAIN  # the train shards of this job, in upload order
        assert job.chain_states().keys() <= {"pending", "running", "failed"}
