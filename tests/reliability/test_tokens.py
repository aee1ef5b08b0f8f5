"""The token matrix against a real parameter server (every route × every kind of credential), and
no secret anywhere: neither the job secret nor any token nor a presigned URL's signature appears in
the server's log, in a real activation's result or in the action's log.

The server runs with `--protect-reads`, so that the read routes are in the matrix too.
"""

from __future__ import annotations

import base64
import json
import re
import uuid

import pytest
import requests

from owtrain.tokens import mint_token
from tests.actions.helpers import action_params, open_bucket, upload_shard
from tests.fixtures.action import start_action_server

SECRET = f"job-secret-{uuid.uuid4().hex}"
JOB = "token-job"
WORKER_ROUTES = [("GET", "/getVersion"), ("GET", "/getParameter"), ("GET", "/getAccuracy"), ("GET", "/status"),
                 ("GET", "/api/history"), ("GET", "/metrics"), ("POST", "/registerWorker"),
                 ("POST", "/unregisterWorker"), ("POST", "/putGradient")]
ADMIN_ROUTES = [("POST", "/admin/checkpoint"), ("POST", "/admin/rollback"), ("POST", "/admin/close"),
                ("POST", "/admin/stop")]


def _tamper(token: str, worker: str) -> str:
    """The same signature over a payload that now names another worker (a forged claim)."""
    prefix, payload, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["worker"] = worker
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{prefix}.{forged}.{sig}"


def credentials(ps) -> dict[str, tuple[str | None, int]]:
    """name -> (Authorization header, the status every protected route must answer with it)."""
    worker = ps.token("w0")
    return {
        "missing": (None, 401),
        "not bearer": (f"Basic {worker}", 401),
        "malformed": ("Bearer not-a-token", 401),
        "non-ASCII": ("Bearer owt1.\xe9\xff.sig", 401),
        "forged signature": (f"Bearer {mint_token('another-secret', JOB, 'w0', 3600)}", 401),
        "tampered claims": (f"Bearer {_tamper(worker, 'admin')}", 401),
        "expired": (f"Bearer {mint_token(SECRET, JOB, 'w0', -1)}", 401),
        "other job": (f"Bearer {mint_token(SECRET, 'another-job', 'w0', 3600)}", 403),
    }


@pytest.fixture(scope="module")
def ps(ps_server_module):
    return ps_server_module(model="mlp", job=JOB, secret=SECRET, extra=["--protect-reads"])


@pytest.mark.parametrize("route", WORKER_ROUTES + ADMIN_ROUTES, ids=lambda r: r[1])
@pytest.mark.parametrize("credential", ["missing", "not bearer", "malformed", "non-ASCII", "forged signature",
                                        "tampered claims", "expired", "other job"])
def test_a_bad_credential_is_refused_on_every_route(ps, route, credential):
    header, status = credentials(ps)[credential]
    headers = {"Authorization": header} if header is not None else {}
    resp = requests.request(route[0], ps.url + route[1], json={}, headers=headers, timeout=10)
    assert resp.status_code == status, (route, credential, resp.text[:200])
    assert resp.json()["reason"] == ("unauthorized" if status == 401 else "forbidden")


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=lambda r: r[1])
def test_a_worker_token_is_forbidden_on_admin_calls(ps, route):
    resp = requests.post(ps.url + route[1], json={"version": 0, "reason": "x"}, timeout=10,
                         headers={"Authorization": f"Bearer {ps.token('w0')}"})
    assert resp.status_code == 403 and "admin token" in resp.json()["error"]


def test_a_worker_cannot_speak_for_another(ps):
    headers = {"Authorization": f"Bearer {ps.token('w0')}"}
    for path in ("/registerWorker", "/unregisterWorker"):
        resp = requests.post(ps.url + path, json={"worker": "w1"}, headers=headers, timeout=10)
        assert resp.status_code == 403, resp.text


@pytest.mark.parametrize("route", WORKER_ROUTES, ids=lambda r: r[1])
def test_a_valid_worker_token_passes_auth_everywhere(ps, route):
    resp = requests.request(route[0], ps.url + route[1], json={"worker": "w0"}, timeout=10,
                            headers={"Authorization": f"Bearer {ps.token('w0')}"})
    # past auth: 2xx, or 400 when the route wants a body this one is not (an empty push)
    assert resp.status_code in (200, 400), (route, resp.status_code, resp.text[:200])
    assert resp.status_code == 200 or route[1] == "/putGradient"


@pytest.fixture(scope="module")
def activation(ps, swift_s3, tmp_path_factory):
    """One real activation of the training action against the server (its result and its log)."""
    bucket = open_bucket(swift_s3, f"tok{uuid.uuid4().hex[:8]}")
    shard = upload_shard(bucket, tmp_path_factory.mktemp("tok-shard"), "train/tok-0.tar.gz", 40)
    server = start_action_server(tmp_path_factory.mktemp("tok-action"), env={"OWTRAIN_LOG": "DEBUG"})
    try:
        assert server.init().status_code == 200
        params = action_params(ps, shard, batch_sz_train=8, epoch_n=1)
        status, result = server.run(params)
        yield params, status, result, server.log_text()
    finally:
        server.stop()


def test_no_secret_in_any_log_or_result(ps, activation):
    params, status, result, action_log = activation
    assert status == 200 and "error" not in result and result["samples"] == 40, result
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", params["dataset_url"]).group(1)
    admin = ps.admin_token()
    secrets = {"job secret": SECRET, "worker token": params["ps_token"], "URL signature": signature,
               "admin token": admin}
    # the admin stop ends the server cleanly, so its log is complete when it is read
    resp = requests.post(ps.url + "/admin/stop", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
    assert resp.status_code == 200
    ps.proc.proc.wait(timeout=30)
    places = {"parameter server log": ps.log_text(), "activation result": json.dumps(result),
              "action log": action_log}
    for what, secret in secrets.items():
        for where, text in places.items():
            assert secret not in text, f"the {what} appears in the {where}"
    # the token's signature part alone is a credential too
    assert params["ps_token"].rsplit(".", 1)[1] not in places["parameter server log"] + action_log
