"""Property-based fuzzing of the event bridge (`owtrain bridge serve`: `POST /events`, `GET /status`
and anything else), one real process over real HTTP, with real Swift S3 and the fake OpenWhisk
controller behind it.

What must hold: no 5xx; a webhook without the right token is a 401 whatever its bytes; a body
that is not a MinIO notification is a 400; afterwards the bridge accepted exactly the distinct
real shard keys it was sent (in any of the generated notifications), its log holds no traceback
and no ERROR line, and the rejections were logged one line each, rate-limited.
"""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import quote_plus

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fixtures.common import free_port
from tests.reliability.fuzz import (
    CASES,
    FRAMING,
    FUZZ,
    OVERSIZED,
    OVERSIZED_STATUS,
    any_json,
    assert_clean_log,
    check,
    framed,
    hostile_bytes,
    json_values,
    latin1_text,
    raw_exchange,
    raw_requests,
    rejection_lines,
    send_raw_suite,
    status_of,
)
from tests.wsk.fake_controller import serve
from tests.wsk.uploads import minio_event, swift_store, upload_blobs
from wsk.client import OpenWhiskClient
from wsk.config import WskConfig

MODULE = "bridge"
TOKEN = "hook-token"
ROUTES = ["/events", "/status", "/", "/events/x"]


def done_at_once(params: dict) -> tuple[str, dict]:
    return "success", {"samples": 1, "steps": 1, "avg_loss": 0.0, "version": 1, "done": True, "next": None,
                       "worker": params["worker"], "epoch": 1}


class Target:
    def __init__(self, bridge: Any, bucket: str, keys: list[str]) -> None:
        self.bridge, self.bucket, self.keys = bridge, bucket, keys
        self.url, self.port = bridge.url, bridge.port
        self.session = requests.Session()
        self.sent_keys: set[str] = set()
        self.started = time.monotonic()

    def post(self, body: bytes, authorization: str | None) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        return self.session.post(self.url + "/events", data=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def target(bridge_process_module, swift_s3, tmp_path_factory) -> Any:
    controller, server = serve(free_port())
    controller.impl = done_at_once
    folder = tmp_path_factory.mktemp("bridge-fuzz")
    wskprops = folder / "wskprops"
    wskprops.write_text(f"APIHOST={controller.url}\nAUTH={controller.auth}\nNAMESPACE=_\n")
    OpenWhiskClient(WskConfig(apihost=controller.url, auth=controller.auth)).put_action("dist-train", "i:1")
    bucket = f"f{uuid.uuid4().hex[:10]}"
    keys = [f"jobs/fz-train-{i:05d}-of-00004.tar.gz" for i in range(4)]
    upload_blobs(swift_store(swift_s3, bucket), folder, keys)
    args = ["--token", TOKEN, "--bucket", bucket, "--endpoint", swift_s3.endpoint,
            "--access-key", swift_s3.access_key, "--secret-key", swift_s3.secret_key,
            "--ps", "http://127.0.0.1:1", "--job", "fuzz", "--invoker", "openwhisk", "--workers", "4",
            "--per-minute", "600"]
    bridge = bridge_process_module(args, {"WSK_CONFIG_FILE": str(wskprops), "OWTRAIN_JOB_SECRET": "s"})
    yield Target(bridge, bucket, keys)
    server.shutdown()
    server.server_close()
    assert not controller.violations, controller.violations


authorizations = st.one_of(st.none(), st.just(f"Bearer {TOKEN}"), st.just(f"bearer {TOKEN}"),
                           latin1_text, latin1_text.map(lambda t: "Bearer " + t))


@settings(FUZZ, max_examples=500)
@given(hostile_bytes, authorizations)
def test_any_body_with_any_authorization(target, body, authorization):
    resp = check(target.post(body, authorization), MODULE)
    if authorization != f"Bearer {TOKEN}":
        assert resp.status_code == 401, resp.text[:200]
    else:
        assert resp.status_code == 400 or (resp.status_code == 200 and resp.json()["accepted"] == []), \
            resp.text[:200]


def _record(target: Target, data: Any) -> dict:
    """A MinIO-shaped record whose every part may be of the wrong type; real shard keys sometimes."""
    event = minio_event(target.bucket, data.draw(st.sampled_from(target.keys)))["Records"][0]
    bucket = data.draw(st.one_of(st.just(target.bucket), st.text(max_size=8), json_values))
    key = data.draw(st.one_of(st.sampled_from([quote_plus(k) for k in target.keys]),
                              st.text(max_size=30).filter(lambda k: "-train-" not in k), json_values))
    name = data.draw(st.one_of(st.sampled_from(["s3:ObjectCreated:Put", "s3:ObjectRemoved:Delete",
                                                "s3:ObjectCreated:CompleteMultipartUpload"]), json_values))
    size = data.draw(st.one_of(st.integers(0, 2**70), st.integers(max_value=-1), json_values))
    event["eventName"] = name
    event["s3"]["bucket"]["name"] = bucket
    event["s3"]["object"].update({"key": key, "size": size})
    for path in data.draw(st.lists(st.sampled_from(["s3", "s3.object", "s3.bucket", "eventName"]), max_size=2)):
        parent, _, leaf = path.rpartition(".")
        holder = event["s3"] if parent == "s3" else event
        if isinstance(holder, dict) and leaf in holder:  # "s3" itself may have been replaced already
            holder[leaf] = data.draw(json_values)  # a part replaced by any JSON value
    return event


@settings(FUZZ, max_examples=450)
@given(st.data())
def test_notifications_of_any_shape_with_the_token(target, data):
    records = [_record(target, data) for _ in range(data.draw(st.integers(0, 3)))]
    body = {"Records": records, **data.draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2))}
    resp = check(target.post(any_json(body), f"Bearer {TOKEN}"), MODULE)
    assert resp.status_code in (200, 400), resp.text[:200]
    if resp.status_code == 200:
        for key in resp.json()["accepted"]:
            assert key in target.keys, key
            target.sent_keys.add(key)


@settings(FUZZ, max_examples=150)
@given(st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD"]), st.sampled_from(ROUTES), st.binary(max_size=64))
def test_other_methods_and_paths(target, method, path, body):
    check(target.session.request(method, target.url + path, data=body, timeout=30), MODULE)


@settings(FUZZ, max_examples=200)
@given(raw_requests(ROUTES))
def test_raw_requests_always_get_a_status(target, data):
    CASES[MODULE] += 1
    send_raw_suite(target.port, data)


@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_oversized_heads_get_a_status_not_a_reset(target, case):
    CASES[MODULE] += 1
    assert status_of(raw_exchange(target.port, OVERSIZED[case]())) == OVERSIZED_STATUS[case]


@pytest.mark.parametrize("framing", sorted(FRAMING))
def test_bad_framing_of_a_read_body_is_a_4xx(target, framing):
    answer = raw_exchange(target.port, framed("/events", framing, f"Authorization: Bearer {TOKEN}\r\n".encode()))
    CASES[MODULE] += 1
    assert 400 <= (status_of(answer) or 0) < 500, answer[:300]


def test_the_bridge_survived(target):
    """It counted exactly the distinct real shard keys, and its log is clean and rate-limited."""
    status = requests.get(target.url + "/status", timeout=10).json()
    assert target.sent_keys, "no generated notification reached the state: the fuzzing missed the accept path"
    assert status["counts"]["accepted"] == len(target.sent_keys) == status["shards"]
    text = target.bridge.log_text()
    assert_clean_log(text)
    assert rejection_lines(text) <= 20 + 5 * (time.monotonic() - target.started) + 5
    print(f"{MODULE}: {CASES[MODULE]} generated cases")  # quoted in docs/reliability.md
    assert CASES[MODULE] >= 1300, CASES
