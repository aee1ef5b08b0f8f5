"""The HTTP API of a real server process: auth, validation, pulls, exactly-once, observability."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest
import requests
import torch
from safetensors.torch import load_file

from owtrain.codec import CONTENT_TYPE, encode_tensors
from owtrain.compression import make_compressor
from owtrain.errors import BadTensor, Forbidden, JobClosed, PayloadTooLarge, Unauthorized
from owtrain.ps_client import PSClient
from owtrain.tokens import mint_token, verify_token
from tests.fixtures.common import PYTHON, ROOT
from tests.param_server.helpers import batch, grads, lenet, max_diff, meta


def _push_raw(ps, token, body, **headers):
    return requests.post(f"{ps.url}/putGradient", data=body, timeout=10,
                         headers={"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE, **headers})


def test_auth_rules_on_every_protected_call(ps_server):
    ps = ps_server()
    good = ps.token("w")
    calls = [("GET", "/getParameter", None), ("POST", "/registerWorker", {"worker": "w"}),
             ("POST", "/unregisterWorker", {"worker": "w"}), ("POST", "/putGradient", None),
             ("POST", "/admin/checkpoint", None)]
    bad_tokens = {
        None: 401, "garbage": 401, mint_token("wrong-secret", ps.job, "w", 60): 401,
        mint_token(ps.secret, ps.job, "w", -5): 401, mint_token(ps.secret, "other-job", "w", 60): 403,
    }
    for method, path, body in calls:
        for token, code in bad_tokens.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = requests.request(method, ps.url + path, json=body, headers=headers, timeout=10)
            assert resp.status_code == code, (path, token, resp.text)
            assert resp.json()["reason"] in ("unauthorized", "forbidden")
    # a worker token is not an admin token, and may not speak for another worker
    assert requests.post(f"{ps.url}/admin/checkpoint", headers={"Authorization": f"Bearer {good}"},
                         timeout=10).status_code == 403
    with pytest.raises(Forbidden):
        ps.client("w").register("someone-else")
    with pytest.raises(Unauthorized):
        PSClient(ps.url, "nonsense").pull(None)
    # open reads stay open and reveal no weights
    for path in ("/getVersion", "/getAccuracy", "/status", "/metrics", "/api/history"):
        resp = requests.get(ps.url + path, timeout=10)
        assert resp.status_code == 200 and "conv" not in resp.text.split("owtrain_ps")[0]


def test_bad_updates_get_400_naming_the_tensor_and_change_nothing(ps_server):
    ps = ps_server(extra=["--max-body-mb", "1"])
    client = ps.client("w")
    token = ps.token("w")
    version, params = client.pull(None)
    good = grads(lenet(params), *batch(4))
    name = "features.0.weight"
    cases = {
        "nan": {**good, name: torch.full_like(good[name], float("nan"))},
        "shape": {**good, name: torch.zeros(3, 3)},
        "dtype": {**good, name: good[name].double()},
        "unknown": {**good, "evil": torch.zeros(1)},
        "missing": {k: v for k, v in good.items() if k != name},
    }
    for case, tensors in cases.items():
        resp = _push_raw(ps, token, encode_tensors(tensors, meta("w", 1, 0)))
        assert resp.status_code == 400, case
        body = resp.json()
        assert body["reason"] == "bad_tensor" and body["tensor"] in (name, "evil"), (case, body)
    with pytest.raises(BadTensor, match="NaN"):
        client.push(cases["nan"], meta("w", 1, 0))
    for body, fragment in [(b"not safetensors at all", "safetensors"),
                           (encode_tensors(good, {"worker": "w", "seq": "1"}), "base_version"),
                           (encode_tensors(good, {**meta("w", 1, 0), "kind": "magic"}), "kind"),
                           (encode_tensors(good, {**meta("w", 1, 0), "compression": "zip"}), "compression")]:
        resp = _push_raw(ps, token, body)
        assert resp.status_code == 400 and fragment in resp.json()["error"], resp.text
    resp = _push_raw(ps, token, encode_tensors(good, meta("intruder", 1, 0)))
    assert resp.status_code == 403
    resp = _push_raw(ps, token, b"\0" * (1024 * 1024 + 1))
    assert resp.status_code == 413 and resp.json()["reason"] == "too_large"
    with pytest.raises(PayloadTooLarge):
        client.push({name: torch.zeros(300_000)}, meta("w", 1, 0))
    # nothing above changed the model
    assert client.pull(None)[0] == 0 and max_diff(client.pull(None)[1], params) == 0.0
    assert client.status()["updates"]["rejected"]["bad_tensor"] == 6
    # and a compressed valid update is accepted
    wire, cmeta = make_compressor("int8").compress(good)
    assert client.push(wire, {**meta("w", 1, 0), **cmeta}).status == "applied"


def test_pull_not_modified_long_poll_and_duplicates(ps_server):
    ps = ps_server()
    client = ps.client("w")
    assert client.register("w")["input_shape"] == [1, 28, 28]
    version, params = client.pull(None)
    assert client.pull(version) is None
    t0 = time.monotonic()
    assert client.pull(version, wait=0.5) is None
    assert time.monotonic() - t0 >= 0.45
    g = grads(lenet(params), *batch(4))
    woke = {}

    def waiter():
        t = time.monotonic()
        woke["result"] = ps.client("watcher").pull(version, wait=20)
        woke["after"] = time.monotonic() - t

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.5)
    first = client.push(g, meta("w", 7, version))
    thread.join(timeout=20)
    assert woke["result"][0] == 1 and woke["after"] < 5  # woken by the push, not by the timeout
    again = client.push(g, meta("w", 7, version))  # a retried push: acknowledged, not re-applied
    assert (first.status, again.status) == ("applied", "duplicate")
    assert client.version() == 1
    assert client.push(g, meta("w", 8, 1)).version == 2
    resp = requests.get(f"{ps.url}/getParameter?have=2", headers={"Authorization": f"Bearer {ps.token('w')}"},
                        timeout=10)
    assert resp.status_code == 304 and resp.headers["X-Owtrain-Version"] == "2"
    assert requests.get(f"{ps.url}/getParameter?have=x", timeout=10,
                        headers={"Authorization": f"Bearer {ps.token('w')}"}).status_code == 400


def test_a_closed_job_refuses_new_updates_and_still_acknowledges_retries(ps_server):
    ps = ps_server()
    client, admin = ps.client("w"), ps.client("admin")
    version, params = client.pull(None)
    g = grads(lenet(params), *batch(4))
    assert client.push(g, meta("w", 1, version)).status == "applied"
    with pytest.raises(Forbidden):
        client.admin("close", {"reason": "done"})  # a worker token cannot close the job
    assert requests.post(f"{ps.url}/admin/close", json={"reason": 5}, timeout=10,
                         headers={"Authorization": f"Bearer {ps.admin_token()}"}).status_code == 400
    assert admin.admin("close", {"reason": "target reached"}) == {"version": 1, "closed": "target reached"}
    before = client.pull(None)[1]
    resp = _push_raw(ps, ps.token("w"), encode_tensors(g, {k: str(v) for k, v in meta("w", 2, 1).items()}))
    assert resp.status_code == 410 and resp.json()["reason"] == "closed"
    assert "target reached" in resp.json()["error"] and "not applied" in resp.json()["error"]
    with pytest.raises(JobClosed):
        client.push(g, meta("w", 3, 1))
    assert client.push(g, meta("w", 1, version)).status == "duplicate"  # a retry of a taken push
    assert client.version() == 1 and max_diff(client.pull(None)[1], before) == 0.0
    assert client.register("w")["closed"] == "target reached"
    status = client.status()
    assert status["closed"] == "target reached" and status["updates"]["rejected"].get("closed") == 2


def test_status_history_metrics_and_rollback(ps_server, tmp_path):
    ps = ps_server(checkpoint_dir=tmp_path / "ck", extra=["--history-interval", "0.2", "--checkpoint-every", "2"])
    client = ps.client("w")
    client.register("w")
    v0, p0 = client.pull(None)
    for seq in range(3):
        client.push(grads(lenet(client.pull(None)[1]), *batch(4, seed=seq)), meta("w", seq, seq, loss=2.0 - seq / 10))
    p3 = client.pull(None)[1]
    time.sleep(0.6)
    status = client.status()
    assert status["version"] == 3 and status["updates"]["applied"] == 3
    assert status["workers"]["w"]["pushes"] == 3 and status["workers"]["w"]["samples"] == 24
    assert status["staleness_histogram"] == {"0": 3} and status["strategy"]["name"] == "async"
    history = requests.get(f"{ps.url}/api/history?since=0", timeout=10).json()
    assert max(history["version"]) == 3 and len(history["time"]) == len(history["updates_per_s"]) >= 2
    later = requests.get(f"{ps.url}/api/history?since={history['time'][-1]}", timeout=10).json()
    assert len(later["time"]) < len(history["time"])
    metrics = requests.get(f"{ps.url}/metrics", timeout=10).text
    assert "owtrain_ps_version 3.0" in metrics and 'owtrain_ps_updates_total{status="applied"} 3.0' in metrics
    admin = ps.client("admin")
    with pytest.raises(Forbidden):
        client.admin("rollback", {"version": 0})
    result = admin.admin("rollback", {"version": 0})
    assert result == {"version": 4, "restored": 0}
    version, params = client.pull(None)
    assert version == 4 and max_diff(params, p0) == 0.0
    assert requests.post(f"{ps.url}/admin/rollback", json={"version": 999}, timeout=10,
                         headers={"Authorization": f"Bearer {ps.admin_token()}"}).status_code == 404
    assert admin.admin("checkpoint")["path"].endswith("ckpt-0000000004.safetensors")
    # the same through the CLI: a minted token, rollback and export
    token = _owtrain("token", "--job", ps.job, "--worker", "w9").strip()
    assert verify_token(ps.secret, ps.job, token).worker == "w9"
    assert "version 3 as version 5" in _owtrain("rollback", "--url", ps.url, "--job", ps.job, "--version", "3")
    out = tmp_path / "model.safetensors"
    assert "version 5" in _owtrain("export", "--url", ps.url, "--job", ps.job, "--out", str(out))
    assert max_diff(load_file(str(out)), p3) == 0.0


def _owtrain(*args: str, secret: str = "test-secret") -> str:
    """Run `owtrain ps ARGS` (as `python -m param_server`) and return its stdout."""
    out = subprocess.run([PYTHON, "-m", "param_server", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, env={"OWTRAIN_JOB_SECRET": secret, "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_help_explains_every_option():
    help_text = _owtrain("--help")
    for flag in ("--strategy", "--checkpoint-dir", "--tls-cert", "--worker-rate", "--eval-shard", "--max-body-mb"):
        assert flag in help_text
    assert "(default: None)\n" not in help_text.replace(" ", "")  # every option has a sentence of help

