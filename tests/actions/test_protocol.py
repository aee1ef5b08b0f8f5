"""The Docker-action protocol over real HTTP against the real server process (reference §1.2–1.5)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from actions.server import REINIT_ERROR, SENTINEL
from tests.fixtures.action import start_action_server


@pytest.fixture
def echo_server(tmp_path):
    server = start_action_server(tmp_path, entry="tests.actions.entries:echo")
    try:
        yield server
    finally:
        server.stop()


def test_init_once_then_403(echo_server):
    first = echo_server.init({"name": "dist-train", "main": "main", "env": {"INIT_SECRET": "s3cr3t"}})
    assert first.status_code == 200
    second = echo_server.init()
    assert second.status_code == 403
    assert second.json() == {"error": REINIT_ERROR}


def test_run_exports_context_and_init_env(echo_server):
    echo_server.init({"name": "dist-train", "env": {"INIT_SECRET": "s3cr3t", "INIT_N": 3}})
    status, result = echo_server.run({"x": 1}, deadline_ms=1234567890123, activation_id="a" * 32)
    assert status == 200
    assert result["args"] == {"x": 1}
    env = result["env"]
    assert env["INIT_SECRET"] == "s3cr3t" and env["INIT_N"] == "3"
    assert env["__OW_ACTIVATION_ID"] == "a" * 32
    assert env["__OW_DEADLINE"] == "1234567890123"
    assert env["__OW_ACTION_NAME"] == "/guest/dist-train"
    assert env["__OW_NAMESPACE"] == "guest"
    assert "__OW_VALUE" not in env


def test_context_fields_absent_from_a_later_run_are_removed(echo_server):
    echo_server.init()
    body = {"value": {}, "activation_id": "1" * 32, "api_key": "uuid:key", "deadline": "1"}
    first = requests.post(echo_server.url + "/run", json=body, timeout=30).json()
    assert first["env"]["__OW_API_KEY"] == "uuid:key"
    del body["api_key"]
    second = requests.post(echo_server.url + "/run", json=body, timeout=30).json()
    assert "__OW_API_KEY" not in second["env"]


def test_sentinels_on_both_streams_after_each_activation(echo_server):
    echo_server.init()
    for tag in ("one", "two"):
        echo_server.run({"tag": tag})
    lines = echo_server.log_text().splitlines()
    # stdout and stderr share the log file: each activation ends with two sentinels after its lines
    assert lines.count(SENTINEL) == 4
    last_one = max(i for i, line in enumerate(lines) if line.endswith("for one"))
    first_two = min(i for i, line in enumerate(lines) if line.endswith("for two"))
    assert lines[last_one + 1 : first_two].count(SENTINEL) == 2


def test_application_error_is_200_with_error(echo_server):
    echo_server.init()
    status, result = echo_server.run({"raise": "boom"})
    assert status == 200
    assert result == {"error": "ValueError: asked to fail: boom"}
    assert "Traceback" in echo_server.log_text()


@pytest.mark.parametrize("value", [[1, 2], "text", 3, None])
def test_non_object_result_is_never_returned(echo_server, value):
    echo_server.init()
    status, result = echo_server.run({"return": value})
    assert status == 200
    assert isinstance(result, dict) and "not a JSON object" in result["error"]


def test_non_object_parameters_are_an_application_error(echo_server):
    echo_server.init()
    reply = requests.post(echo_server.url + "/run", json={"value": [1, 2]}, timeout=30)
    assert reply.status_code == 200
    assert "must be a JSON object" in reply.json()["error"]


def test_malformed_bodies_get_400(echo_server):
    bad_init = requests.post(echo_server.url + "/init", data=b"not json", timeout=30)
    assert bad_init.status_code == 400 and "error" in bad_init.json()
    assert echo_server.init().status_code == 200  # a rejected init did not count as the one init
    bad_run = requests.post(echo_server.url + "/run", data=json.dumps([1]), timeout=30)
    assert bad_run.status_code == 400 and "error" in bad_run.json()


def test_run_before_init_is_an_error(echo_server):
    status, result = echo_server.run({})
    assert status == 200 and "POST /init first" in result["error"]


def test_unknown_entry_fails_init_with_502(tmp_path):
    server = start_action_server(tmp_path, entry="tests.actions.entries:missing")
    try:
        reply = server.init()
        assert reply.status_code == 502
        assert "has no function 'missing'" in reply.json()["error"]
        assert SENTINEL in server.log_text()
    finally:
        server.stop()


def test_one_activation_at_a_time(tmp_path):
    server = start_action_server(tmp_path, entry="tests.actions.entries:sleepy")
    try:
        server.init()
        with ThreadPoolExecutor(3) as pool:
            replies = list(pool.map(lambda _: server.run({"seconds": 0.3}), range(3)))
        spans = sorted((r["start"], r["end"]) for status, r in replies if status == 200)
        assert len(spans) == 3
        assert all(prev_end <= start for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False))
    finally:
        server.stop()
