"""Property-based fuzzing of every parameter-server endpoint, against one real `owtrain ps` process
over real HTTP (keep-alive sessions), with every kind of token, valid ones included so that auth
does not hide the parsing behind it.

What must hold for every generated case: no 5xx; a push with any defect is refused with a 4xx (with
a valid token too); afterwards the parameters are bit-identical and the version unchanged (nothing
hostile was applied), the log holds no traceback and no ERROR line, and the rejections were logged
one line each, rate-limited.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save as st_save

from owtrain.codec import decode_tensors
from owtrain.tokens import mint_token
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

MODULE = "param_server"
GET_ROUTES = ["/getVersion", "/getParameter", "/getAccuracy", "/status", "/api/history", "/metrics", "/dashboard",
              "/dashboard/static/dashboard.js"]
POST_ROUTES = ["/putGradient", "/registerWorker", "/unregisterWorker", "/reportPhases", "/admin/checkpoint",
               "/admin/rollback", "/admin/close", "/admin/stop"]
# Admin calls that would change the job when they succeed: only hostile bodies reach them with the admin token.
STATEFUL_ADMIN = ("/admin/rollback", "/admin/close", "/admin/stop")
DEFECTS = ("seq", "base_version", "future_base", "kind", "compression", "samples", "worker", "missing",
           "shape", "dtype", "nan", "extra", "truncate", "header_length", "no_meta")


class Target:
    """The shared server, its tokens, the parameters as first pulled, and one keep-alive session."""

    def __init__(self, ps: Any) -> None:
        self.ps, self.url, self.port = ps, ps.url, ps.port
        self.session = requests.Session()
        self.worker = ps.token("w0")
        self.admin = ps.admin_token()
        self.tokens = {
            "none": None, "worker": self.worker, "admin": self.admin,
            "forged": mint_token("not-the-secret", ps.job, "w0", 3600),
            "other_job": mint_token(ps.secret, "another-job", "w0", 3600),
            "expired": mint_token(ps.secret, ps.job, "w0", -10),
        }
        self.version, self.params = self.pull()
        self.spec = {k: (tuple(v.shape), v.dtype) for k, v in self.params.items()}
        self.zeros = {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in self.spec.items()}
        self.started = time.monotonic()

    def pull(self) -> tuple[int, dict[str, torch.Tensor]]:
        resp = requests.get(f"{self.url}/getParameter", headers={"Authorization": f"Bearer {self.worker}"},
                            timeout=30)
        assert resp.status_code == 200
        tensors, _ = decode_tensors(resp.content)
        return int(resp.headers["X-Owtrain-Version"]), tensors

    def send(self, method: str, path: str, token: str | None, body: bytes | None = None,
             headers: dict[str, str] | None = None, params: Any = None) -> requests.Response:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return self.session.request(method, self.url + path, data=body, headers=h, params=params, timeout=30)


@pytest.fixture(scope="module")
def target(ps_server_module) -> Target:
    # the async strategy applies every valid push at once: if any hostile one got through, it shows
    return Target(ps_server_module(strategy="async", lr=1.0))


tokens = st.sampled_from(["none", "worker", "admin", "forged", "other_job", "expired"])
header_token = st.one_of(tokens, latin1_text.map(lambda t: "raw:" + t),  # any bytes, and token-shaped ones
                         st.builds(lambda a, b: f"raw:owt1.{a}.{b}", latin1_text, latin1_text))


def _auth(target: Target, choice: str) -> str | None:
    return choice[4:] if choice.startswith("raw:") else target.tokens[choice]


@settings(FUZZ, max_examples=800)
@given(st.data())
def test_every_get_route_with_any_query_and_token(target, data):
    path = data.draw(st.sampled_from(GET_ROUTES))
    query = data.draw(st.dictionaries(st.sampled_from(["have", "wait", "since", "x"]),
                                      st.one_of(st.integers(-5, 10**30).map(str), latin1_text,
                                                st.sampled_from(["١", "+1", " 1", "1_0", "0x1", "1e3", "nan",
                                                                 "inf", "-0", "9" * 5000, ""])),
                                      max_size=3))
    if path == "/getParameter":  # a long poll would only slow the suite down; wait's parse is tested below
        query["wait"] = data.draw(st.sampled_from(["0", "-1", "abc", "nan", "", "0x0"]))
    check(target.send("GET", path, _auth(target, data.draw(header_token)), params=query), MODULE)


@pytest.mark.parametrize(("query", "status"), [
    ({"wait": "nan"}, 400), ({"wait": "inf"}, 400), ({"wait": "1e999"}, 400), ({"wait": "abc"}, 400),
    ({"have": "+0"}, 400), ({"have": " 0"}, 400), ({"have": "0_0"}, 400), ({"have": "\u0660"}, 400),
    ({"have": "-1"}, 400), ({"have": "9" * 20}, 400), ({"have": "0", "wait": "-1"}, 304), ({"have": "0"}, 304),
])
def test_query_numbers_are_parsed_strictly(target, query, status):
    resp = check(target.send("GET", "/getParameter", target.worker, params={"wait": "0", **query}), MODULE)
    assert resp.status_code == status, resp.text[:200]


@settings(FUZZ, max_examples=700)
@given(st.data())
def test_every_post_route_with_any_body_and_token(target, data):
    path = data.draw(st.sampled_from(POST_ROUTES))
    token = data.draw(header_token)
    body = data.draw(hostile_bytes)
    if token == "admin" and path in STATEFUL_ADMIN:
        token = "worker"  # a valid admin call with a good body would really stop, close or roll back
    content_type = data.draw(st.sampled_from(["application/json", "application/octet-stream", "text/plain", ""]))
    check(target.send("POST", path, _auth(target, token), body, headers={"Content-Type": content_type}), MODULE)


@settings(FUZZ, max_examples=150)
@given(st.data())
def test_admin_bodies_with_the_admin_token(target, data):
    """Rollback to versions that do not exist or are not integers, close with bad reasons."""
    path = data.draw(st.sampled_from(["/admin/rollback", "/admin/close"]))
    if path == "/admin/rollback":
        version = data.draw(st.one_of(st.integers(target.version + 1, 2**70), st.integers(max_value=-1),
                                      st.sampled_from([True, None, "0", 0.0, [0], {"v": 0}]), json_values))
        body: dict[str, Any] = {"version": version}
    else:
        body = {"reason": data.draw(st.one_of(st.just(""), st.integers(), st.lists(st.text()), st.none()))}
    resp = check(target.send("POST", path, target.admin, any_json(body),
                             headers={"Content-Type": "application/json"}), MODULE)
    assert 400 <= resp.status_code < 500


def _push_body(target: Target, defects: list[str], meta_noise: dict[str, str], data: Any) -> bytes:
    """A push from worker w0 that is valid but for `defects` (at least one)."""
    tensors = dict(target.zeros)  # defects replace entries, never change these tensors in place
    meta = {"worker": "w0", "seq": str(data.draw(st.integers(0, 10**6))), "base_version": str(target.version),
            "kind": "grad", "samples": "1", "loss": "0.5", **meta_noise}
    names = sorted(tensors)
    for defect in defects:
        if defect == "seq":
            meta["seq"] = data.draw(st.sampled_from(["-1", "+1", " 1", "1_0", "١", "1.0", "", "9" * 40]))
        elif defect == "base_version":
            meta["base_version"] = data.draw(st.sampled_from(["-1", "x", "0x0", "9" * 30, "²"]))
        elif defect == "future_base":
            meta["base_version"] = str(target.version + data.draw(st.integers(1, 2**40)))
        elif defect == "kind":
            meta["kind"] = data.draw(st.text(max_size=10).filter(lambda k: k not in ("grad", "delta")))
        elif defect == "compression":
            meta["compression"] = data.draw(st.text(max_size=10).filter(
                lambda c: c not in ("none", "fp16", "bf16", "int8", "topk")))
        elif defect == "samples":
            meta["samples"] = data.draw(st.sampled_from(["-5", str(10**9 + 1), "1e3", "many"]))
        elif defect == "worker":
            meta["worker"] = data.draw(st.text(max_size=10).filter(lambda w: w != "w0"))
        elif defect == "missing":
            tensors.pop(data.draw(st.sampled_from(names)), None)
        elif defect == "shape":
            name = data.draw(st.sampled_from(names))
            tensors[name] = torch.zeros(tensors[name].numel() + 1) if name in tensors else torch.zeros(3)
        elif defect == "dtype":
            name = data.draw(st.sampled_from(names))
            tensors[name] = torch.zeros(target.spec[name][0], dtype=data.draw(
                st.sampled_from([torch.float64, torch.float16, torch.int64, torch.uint8, torch.bool])))
        elif defect == "nan":
            name = data.draw(st.sampled_from(names))
            t = torch.zeros(target.spec[name][0])
            t.view(-1)[0] = data.draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
            tensors[name] = t
        elif defect == "extra":
            tensors[data.draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in target.spec))] = \
                torch.zeros(2)
        elif defect == "no_meta":
            meta = {}
    body = st_save(tensors, metadata=meta)
    if "truncate" in defects:
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    if "header_length" in defects and len(body) >= 8:  # any other header length cannot frame the same body
        i = data.draw(st.integers(0, 7))
        body = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1:]
    return body


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_defective_pushes_are_refused_even_with_a_valid_token(target, data):
    defects = data.draw(st.lists(st.sampled_from(DEFECTS), min_size=1, max_size=3, unique=True))
    noise = data.draw(st.dictionaries(st.text(max_size=6).filter(
        lambda k: k not in ("worker", "seq", "base_version", "kind", "samples", "compression")),
        st.text(max_size=12), max_size=2))
    body = _push_body(target, defects, noise, data)
    resp = check(target.send("POST", "/putGradient", target.worker, body,
                             headers={"Content-Type": "application/vnd.owtrain.safetensors"}), MODULE)
    assert 400 <= resp.status_code < 500, (defects, resp.status_code, resp.text[:200])


@settings(FUZZ, max_examples=400)
@given(st.binary(max_size=4096), tokens)
def test_arbitrary_push_bytes(target, body, token):
    if body[:8] and len(body) >= 8:  # a plausible header length so that the JSON parser is reached too
        body = len(body[8:]).to_bytes(8, "little") + body[8:]
    check(target.send("POST", "/putGradient", target.tokens[token], body), MODULE)


@settings(FUZZ, max_examples=250)
@given(raw_requests(GET_ROUTES + POST_ROUTES))
def test_raw_requests_always_get_a_status(target, data):
    CASES[MODULE] += 1
    send_raw_suite(target.port, data)


@pytest.mark.parametrize("case", sorted(OVERSIZED))
def test_oversized_heads_get_a_status_not_a_reset(target, case):
    answer = raw_exchange(target.port, OVERSIZED[case]())
    CASES[MODULE] += 1
    assert status_of(answer) == OVERSIZED_STATUS[case], answer[:200]
    assert b'"reason"' in answer


@pytest.mark.parametrize("path", ["/putGradient", "/registerWorker", "/admin/rollback"])
@pytest.mark.parametrize("framing", sorted(FRAMING))
def test_bad_framing_of_a_read_body_is_a_4xx(target, path, framing):
    token = target.admin if path.startswith("/admin") else target.worker
    answer = raw_exchange(target.port, framed(path, framing, f"Authorization: Bearer {token}\r\n".encode()))
    CASES[MODULE] += 1
    assert 400 <= (status_of(answer) or 0) < 500, answer[:300]


def test_non_ascii_authorization_is_401(target):
    request = b"GET /getParameter HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer owt1.\xe9\xff.x\r\n" \
              b"Connection: close\r\n\r\n"
    CASES[MODULE] += 1
    assert status_of(raw_exchange(target.port, request)) == 401


def test_the_server_survived_unchanged(target):
    """After every case above: same version, bit-identical parameters, a clean, rate-limited log."""
    version, params = target.pull()
    assert version == target.version
    assert params.keys() == target.params.keys()
    for name, tensor in params.items():
        assert tensor.dtype == target.params[name].dtype and torch.equal(tensor, target.params[name]), name
    text = target.ps.log_text()
    assert_clean_log(text)
    elapsed = time.monotonic() - target.started
    lines = rejection_lines(text)
    assert 0 < lines <= 20 + 5 * elapsed + 5, (lines, elapsed)
    print(f"{MODULE}: {CASES[MODULE]} generated cases")  # quoted in docs/reliability.md
    assert CASES[MODULE] >= 2400, CASES
