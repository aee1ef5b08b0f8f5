"""Admission control, TLS, background evaluation and the `owtrain ps` sub-commands, each against a
real server process."""

from __future__ import annotations

import datetime
import ipaddress
import time

import numpy as np
import pytest
import requests

from dataset_packer.shard import ShardInfo, read_shard, write_shard
from owtrain.codec import CONTENT_TYPE, encode_tensors
from owtrain.errors import ServerUnavailable
from owtrain.ps_client import PSClient
from owtrain.retry import RetryPolicy
from param_server.evaluator import evaluate
from tests.param_server.helpers import batch, grads, lenet, meta


def test_rate_limits_answer_429_with_retry_after_and_lose_nothing(ps_server):
    ps = ps_server(extra=["--worker-rate", "2", "--worker-burst", "2"])
    _, params = ps.client("w").pull(None)
    g = grads(lenet(params), *batch(4))
    headers = {"Authorization": f"Bearer {ps.token('w')}", "Content-Type": CONTENT_TYPE}
    codes = []
    for seq in range(3):
        resp = requests.post(f"{ps.url}/putGradient", data=encode_tensors(g, meta("w", seq, 0)), headers=headers,
                             timeout=10)
        codes.append(resp.status_code)
    assert codes == [200, 200, 429]
    assert resp.headers["Retry-After"] == "1" and resp.json()["reason"] == "throttled"
    client = ps.client("w", policy=RetryPolicy(attempts=10))  # honours Retry-After and gets through
    for seq in range(2, 6):
        assert client.push(g, meta("w", seq, 0)).status == "applied"
    assert ps.client("other").push(g, meta("other", 0, 0)).status == "applied"  # own bucket
    status = client.status()
    assert status["version"] == 7 and status["updates"]["applied"] == 7  # every accepted push applied
    assert status["updates"]["rejected"]["throttled"] >= 1


def _self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_tls_and_protected_reads(ps_server, tmp_path):
    ps = ps_server(tls=_self_signed(tmp_path), extra=["--protect-reads"])
    assert ps.url.startswith("https://")
    cert = str(ps.tls[0])
    assert requests.get(f"{ps.url}/status", timeout=10, verify=cert).status_code == 401
    assert ps.client("w").status()["version"] == 0
    client = ps.client("w")  # verifies against the test's certificate
    version, params = client.pull(None)
    assert client.push(grads(lenet(params), *batch(4)), meta("w", 0, version)).status == "applied"
    untrusting = PSClient(ps.url, ps.token("w"), policy=RetryPolicy(attempts=1))
    with pytest.raises(ServerUnavailable, match="certificate"):
        untrusting.version()
    with pytest.raises(requests.ConnectionError):
        requests.get(ps.url.replace("https", "http") + "/getVersion", timeout=5)


def test_background_evaluation_reports_the_true_accuracy(ps_server, tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64).astype(np.int64)
    info = ShardInfo(dataset="tiny", split="test", index=0, num_shards=1, sample_range=(0, 64),
                     classes=tuple(str(i) for i in range(10)), mean=(0.1307,), std=(0.3081,), scale=255.0)
    shard = tmp_path / "test-0.tar.gz"
    write_shard(shard, x, y, info)
    ps = ps_server(eval_shard=shard, extra=["--eval-interval", "0.2", "--eval-every", "1"])
    client = ps.client("w")
    _, params = client.pull(None)
    client.push(grads(lenet(params), *batch(8)), meta("w", 0, 0))
    deadline = time.monotonic() + 20
    acc = client.accuracy()
    while time.monotonic() < deadline and acc["evaluated_version"] != 1:
        time.sleep(0.1)
        acc = client.accuracy()
    assert acc["evaluated_version"] == 1 and acc["version"] == 1
    xt, yt = read_shard(shard).to_tensors()
    loss, accuracy = evaluate(lenet(client.pull(None)[1]), xt, yt, batch=1000)
    assert acc["accuracy"] == pytest.approx(accuracy) and acc["loss"] == pytest.approx(loss, rel=1e-5)
    assert "owtrain_ps_accuracy" in requests.get(f"{ps.url}/metrics", timeout=10).text
