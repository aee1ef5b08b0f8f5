"""Property-based fuzzing of the action server (`owtrain action serve`: `/init`, `/run` and whatever
else a client asks for), as real processes over real HTTP with keep-alive sessions.

Two servers: one is never initialised, so every `/init` it gets reaches the body's parsing (each
generated init carries a defect and must be a 400); the other is initialised once, then gets any
`/run` body: context fields of any name and value, parameters of any shape, real parameter names
with wrong values. What must hold: no 5xx, `/run` answers 400 or an application error object,
the logs hold no traceback and no ERROR line, and the servers still work afterwards.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from owtrain.action_params import REQUIRED
from owtrain.parse import json_object
from tests.fixtures.action import ActionServer, start_action_server
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
    raw_exchange,
    raw_requests,
    rejection_lines,
    send_raw_suite,
    status_of,
)

MODULE = "action_server"
ROUTES = ["/init", "/run", "/", "/health"]


class Pair:
    """The two servers and a keep-alive session to each."""

    def __init__(self, cold: ActionServer, warm: ActionServer) -> None:
        self.cold, self.warm = cold, warm
        self.cold_session, self.warm_session = requests.Session(), requests.Session()
        self.started = time.monotonic()


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> Any:
    folder = tmp_path_factory.mktemp("action-fuzz")
    cold = start_action_server(folder)
    warm = start_action_server(folder)
    try:
        assert warm.init().status_code == 200
        yield Pair(cold, warm)
    finally:
        cold.stop()
        warm.stop()


env_names = st.one_of(st.text(max_size=10), st.sampled_from(["A=B", "X\x00", "", "=", "PATH\x00"]))
bad_env = st.one_of(
    json_values.filter(lambda v: bool(v) and not isinstance(v, dict)),  # falsy means "no env"
    st.dictionaries(env_names, json_values, min_size=1, max_size=3).filter(
        lambda env: any(not k or "=" in k or "\x00" in k for k in env)),
    st.dictionaries(st.text(min_size=1, max_size=6).filter(lambda k: "=" not in k and "\x00" not in k),
                    st.text(max_size=6).map(lambda v: v + "\x00"), min_size=1, max_size=2),
)


def _would_init(body: bytes) -> bool:
    """Whether `body` is a well-formed init (the cold server must only ever get defective ones)."""
    obj = json_object(body)
    value = obj.get("value", {}) if obj is not None else None
    env = (value.get("env") or {}) if isinstance(value, dict) else None
    return isinstance(env, dict) and all(k and "=" not in k and "\x00" not in k and "\x00" not in str(v)
                                         for k, v in env.items())


@settings(FUZZ, max_examples=300)
@given(st.one_of(hostile_bytes.filter(lambda b: not _would_init(b)),
                 st.builds(lambda env, extra: any_json({"value": {"env": env, **extra}}), bad_env,
                           st.dictionaries(st.sampled_from(["name", "main", "code", "binary"]), json_values,
                                           max_size=2)),
                 json_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: any_json({"value": v}))))
def test_init_parses_any_body_and_refuses_defects(pair, body):
    resp = check(pair.cold_session.post(pair.cold.url + "/init", data=body, timeout=30), MODULE)
    assert resp.status_code == 400, (body[:200], resp.text[:200])


context_names = st.one_of(st.sampled_from(["namespace", "action_name", "activation_id", "deadline", "api_key",
                                           "transaction_id"]), st.text(max_size=12), st.just("A=B"),
                          st.just("X\x00Y"))
parameter_names = st.one_of(st.sampled_from(REQUIRED + ("cursor", "batch_sz_train", "epoch_n", "lr", "mode",
                                                        "compression", "seed", "device", "threads")),
                            st.text(max_size=10))
run_bodies = st.builds(
    lambda context, value: {**context, "value": value},
    st.dictionaries(context_names.filter(lambda k: k != "value"), json_values, max_size=4),
    st.one_of(st.dictionaries(parameter_names, json_values, max_size=8), json_values))


@settings(FUZZ, max_examples=600)
@given(run_bodies)
def test_run_with_any_context_and_parameters(pair, body):
    resp = check(pair.warm_session.post(pair.warm.url + "/run", data=any_json(body), timeout=60), MODULE)
    assert resp.status_code == 200, resp.text[:200]
    assert "error" in resp.json(), resp.text[:300]  # nothing here can be a real activation


@settings(FUZZ, max_examples=300)
@given(hostile_bytes, st.sampled_from(["/run", "/init"]))
def test_run_and_reinit_with_hostile_bytes(pair, body, path):
    resp = check(pair.warm_session.post(pair.warm.url + path, data=body, timeout=60), MODULE)
    assert resp.status_code in (200, 400, 403)


@settings(FUZZ, max_examples=250)
@given(st.sampled_from(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]), st.sampled_from(ROUTES),
       st.binary(max_size=64))
def test_other_methods_and_paths(pair, method, path, body):
    check(pair.warm_session.request(method, pair.warm.url + path, data=body, timeout=30), MODULE)


@settings(FUZZ, max_examples=200)
@given(raw_requests(ROUTES))
def test_raw_requests_always_get_a_status(pair, data):
    CASES[MODULE] += 1
    send_raw_suite(pair.warm.port, data)


@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_oversized_heads_get_a_status_not_a_reset(pair, case):
    CASES[MODULE] += 1
    assert status_of(raw_exchange(pair.warm.port, OVERSIZED[case]())) == OVERSIZED_STATUS[case]


@pytest.mark.parametrize("path", ["/init", "/run"])
@pytest.mark.parametrize("framing", sorted(FRAMING))
def test_bad_framing_of_a_read_body_is_a_4xx(pair, path, framing):
    server = pair.cold if path == "/init" else pair.warm
    answer = raw_exchange(server.port, framed(path, framing))
    CASES[MODULE] += 1
    assert 400 <= (status_of(answer) or 0) < 500, answer[:300]


def test_the_servers_survived(pair):
    """Both still answer as the protocol says, and their logs are clean and rate-limited."""
    assert pair.cold.init().status_code == 200  # every fuzzed init was refused: the first good one is taken
    assert pair.warm.init().status_code == 403
    status, result = pair.warm.run({"job": "j"})
    assert status == 200 and "missing required parameter" in result["error"]
    for server in (pair.cold, pair.warm):
        text = server.log_text()
        assert_clean_log(text)
        assert rejection_lines(text) <= 20 + 5 * (time.monotonic() - pair.started) + 5
    print(f"{MODULE}: {CASES[MODULE]} generated cases")  # quoted in docs/reliability.md
    assert CASES[MODULE] >= 1200, CASES
