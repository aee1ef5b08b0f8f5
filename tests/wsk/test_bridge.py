"""The event bridge as a real process: real Swift S3, the fake controller as the OpenWhisk behind it.

Burst with duplicates → exactly one activation per distinct shard, never over the rate; SIGKILL
mid-burst and restart → nothing lost; wrong token → 401; a poller for stores without notifications.
"""

from __future__ import annotations

import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from tests.wsk.uploads import minio_event, swift_store, upload_blobs
from wsk.client import OpenWhiskClient
from wsk.config import WskConfig

TOKEN = "hook-token"
RATE, WINDOW = 10, 2.0


def done_at_once(params: dict) -> tuple[str, dict]:
    return "success", {"samples": 1, "steps": 1, "avg_loss": 0.0, "version": 1, "done": True, "next": None,
                       "worker": params["worker"], "epoch": 1}


@pytest.fixture
def setup(fake_controller, wskprops, swift_s3, tmp_path):
    """A bucket with `n` shards in Swift, the action deployed, and the bridge's command line."""

    def make(n: int, extra: tuple[str, ...] = ()) -> tuple[list[str], list[str], dict[str, str], object]:
        bucket = f"b{uuid.uuid4().hex[:10]}"
        store = swift_store(swift_s3, bucket)
        keys = [f"jobs/ds-train-{i:05d}-of-{n:05d}.tar.gz" for i in range(n)]
        upload_blobs(store, tmp_path, keys)
        fake_controller.impl = done_at_once
        OpenWhiskClient(WskConfig(apihost=fake_controller.url, auth=fake_controller.auth)).put_action("dist-train",
                                                                                                        "i:1")
        args = ["--token", TOKEN, "--bucket", bucket, "--endpoint", swift_s3.endpoint,
                "--access-key", swift_s3.access_key, "--secret-key", swift_s3.secret_key,
                "--ps", "http://ps:1", "--job", "job1", "--invoker", "openwhisk", "--workers", "30",
                "--per-minute", str(RATE), "--rate-window", str(WINDOW), *extra]
        env = {"WSK_CONFIG_FILE": str(wskprops), "OWTRAIN_JOB_SECRET": "s"}
        return args, keys, env, bucket

    return make


def invoked_keys(controller) -> list[str]:
    return [urlsplit(r.body["dataset_url"]).path.split("/", 2)[2] for r in controller.invocations()]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def assert_rate(controller) -> None:
    times = sorted(r.time for r in controller.invocations())
    # Sliding window on the controller's clock, a little shorter than the bridge's for jitter.
    worst = max(sum(1 for t in times if s <= t < s + WINDOW - 0.1) for s in times)
    assert worst <= RATE, f"{worst} invocations within {WINDOW}s, allowed {RATE}"


def test_wrong_token_is_401_a_bad_body_400_a_huge_one_413(setup, bridge_process, fake_controller):
    args, keys, env, bucket = setup(1)
    bridge = bridge_process(args, env)
    event = minio_event(bucket, keys[0])
    assert bridge.post(event, token="wrong").status_code == 401
    assert bridge.post(event).status_code == 401
    assert requests.post(bridge.url + "/events", data=b"not json", timeout=5,
                         headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 400
    huge = {"Records": [], "pad": "x" * (2 * 1024 * 1024)}
    assert bridge.post(huge, token=TOKEN).status_code == 413
    assert bridge.status()["shards"] == 0
    reply = bridge.post(event, token=TOKEN)
    assert reply.status_code == 200 and reply.json()["accepted"] == [keys[0]]
    assert bridge.post(minio_event(bucket, "jobs/ds-test.tar.gz"), token=TOKEN).json()["ignored"] == 1
    wait_for(lambda: bridge.status()["done"] == 1, 30, "the activation")
    body = fake_controller.invocations()[0].body
    assert body["dataset_sha256"] and "X-Amz-Signature" in body["dataset_url"]


def burst(keys: list[str], bucket: str, copies: int) -> list[dict]:
    events = [minio_event(bucket, k, etag=f"{i:032x}") for k in keys for i in range(copies)]
    random.Random(7).shuffle(events)
    return events


def test_burst_with_duplicates_gives_one_activation_per_shard_within_the_rate(setup, bridge_process,
                                                                              fake_controller):
    args, keys, env, bucket = setup(25)
    bridge = bridge_process(args, env)
    events = burst(keys, bucket, 40)  # 1,000 notifications
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda e: bridge.post(e, token=TOKEN).status_code, events))
    assert codes == [200] * len(events)
    wait_for(lambda: bridge.status()["done"] == len(keys), 60, "all shards dispatched")
    assert sorted(invoked_keys(fake_controller)) == sorted(keys)
    assert bridge.status()["counts"] == {"accepted": 25, "duplicates": 975, "ignored": 0}
    assert_rate(fake_controller)


def test_sigkill_mid_burst_and_restart_loses_nothing(setup, bridge_process, fake_controller):
    args, keys, env, bucket = setup(20)
    bridge = bridge_process(args, env)
    events = burst(keys, bucket, 25)  # 500 notifications
    undelivered = []
    for i, event in enumerate(events):
        if i == 150:
            bridge.kill()  # SIGKILL while notifications arrive and activations are being started
        try:
            if bridge.post(event, token=TOKEN, timeout=2).status_code != 200:
                undelivered.append(event)
        except requests.RequestException:
            undelivered.append(event)  # MinIO (with queue_dir) keeps it and retries
    assert len(undelivered) >= len(events) - 150
    bridge.start()  # same state file
    for event in undelivered:
        assert bridge.post(event, token=TOKEN).status_code == 200
    wait_for(lambda: bridge.status()["done"] == len(keys), 60, "all shards dispatched after the restart")
    invoked = invoked_keys(fake_controller)
    assert set(invoked) == set(keys)
    # At most the one invoke in flight at the kill can be repeated (and the PS dedupes its pushes).
    assert len(invoked) <= len(keys) + 1


def test_poller_finds_uploads_without_notifications(setup, bridge_process, fake_controller, swift_s3, tmp_path):
    args, keys, env, bucket = setup(3, extra=("--poll", "0.2"))
    upload_blobs(swift_store(swift_s3, bucket), tmp_path, ["jobs/ds-test.tar.gz"], split="test")
    upload_blobs(swift_store(swift_s3, bucket), tmp_path, ["jobs/readme.txt"])
    bridge = bridge_process(args, env)
    wait_for(lambda: bridge.status()["done"] == 3, 30, "the poller's shards")
    late = "jobs/ds-train-00009-of-00010.tar.gz"
    upload_blobs(swift_store(swift_s3, bucket), tmp_path, [late])
    wait_for(lambda: bridge.status()["done"] == 4, 30, "the late upload")
    assert sorted(invoked_keys(fake_controller)) == sorted([*keys, late])
