"""Checkpoints with a real process: SIGKILL and restart resumes model, optimiser and exactly-once
bookkeeping from the last checkpoint; checkpoints also go to an S3 bucket (moto server)."""

from __future__ import annotations

import time

import pytest
import torch

from param_server.checkpoint import list_checkpoints, read_checkpoint
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http
from tests.param_server.helpers import batch, grads, lenet, max_diff, meta


def test_sigkill_then_restart_recovers_every_acknowledged_update(ps_server, tmp_path):
    """Checkpoint + journal replay: the versions after the last checkpoint come back too, and the
    model equals uninterrupted training (momentum buffers from the checkpoint, steps replayed)."""
    lr = 0.05
    ck = tmp_path / "ck"
    ps = ps_server(lr=lr, checkpoint_dir=ck, extra=["--momentum", "0.9", "--checkpoint-every", "2",
                                                   "--checkpoint-interval", "3600"])
    client = ps.client("w")
    reference = lenet()
    opt = torch.optim.SGD(reference.parameters(), lr=lr, momentum=0.9)

    def step(seq: int) -> None:
        version, params = client.pull(None)
        x, y = batch(8, seed=seq)
        client.push(grads(lenet(params), x, y), meta("w", seq, version))

    def reference_step(seq: int) -> None:
        x, y = batch(8, seed=seq)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        opt.step()

    for seq in range(5):  # versions 1..5; checkpoints at 2 and 4; version 5 only in the journal
        step(seq)
    _, before_kill = client.pull(None)
    assert [v for v, _ in list_checkpoints(ck)] == [2, 4]
    ps.kill()
    ps.restart()
    client = ps.client("w")
    assert client.version() == 5  # replayed from the journal
    assert ps.client("w").status()["replayed"] == 1
    _, params = client.pull(None)
    assert all(torch.equal(params[k], before_kill[k]) for k in params)  # bit-identical
    g = grads(lenet(params), *batch(8, seed=4))
    assert client.push(g, meta("w", 4, 4)).status == "duplicate"  # seq 4 made version 5: remembered
    for seq in range(5):
        reference_step(seq)
    for seq in range(5, 7):
        step(seq)
        reference_step(seq)
    version, params = client.pull(None)
    assert version == 7
    assert max_diff(params, dict(reference.named_parameters())) < 1e-6
    assert ps.client("admin").admin("stop")["version"] == 7  # a clean stop writes a final checkpoint
    assert ps.proc.proc.wait(timeout=30) == 0
    assert [v for v, _ in list_checkpoints(ck)][-1] == 7
    ps.restart()
    assert ps.client("w").version() == 7


def test_without_journal_a_restart_never_reuses_a_lost_version(ps_server, tmp_path):
    """`--no-journal`: updates after the last checkpoint are lost, but their version numbers are skipped,
    so a worker holding one never gets 304 for other weights."""
    ck = tmp_path / "ck"
    ps = ps_server(checkpoint_dir=ck, extra=["--no-journal", "--checkpoint-every", "2",
                                             "--checkpoint-interval", "3600"])
    client = ps.client("w")
    for seq in range(5):  # versions 1..5, checkpoints at 2 and 4
        version, params = client.pull(None)
        client.push(grads(lenet(params), *batch(8, seed=seq)), meta("w", seq, version))
    assert not (ck / "journal").exists()
    ps.kill()
    ps.restart()
    client = ps.client("w")
    assert client.version() == 6  # 4 + checkpoint_every: past every number version 5 could have had
    pulled = client.pull(5)  # the old version 5 is not current: full parameters, not 304
    assert pulled is not None and pulled[0] == 6
    _, ckpt = read_checkpoint(list_checkpoints(ck)[-1][1])
    assert ckpt["version"] == 4


def test_time_based_checkpoint_and_sync_round_survive_kill(ps_server, tmp_path):
    ps = ps_server(strategy="sync:k=2", checkpoint_dir=tmp_path / "ck",
                   extra=["--checkpoint-every", "0", "--checkpoint-interval", "0.3"])
    a, b = ps.client("a"), ps.client("b")
    _, params = a.pull(None)
    g = grads(lenet(params), *batch(4))
    assert a.push(g, meta("a", 0, 0)).status == "accepted"
    time.sleep(0.1)
    assert a.push(g, meta("a", 0, 0)).status == "duplicate"
    assert b.push(g, meta("b", 0, 0)).status == "applied"
    a.push(g, meta("a", 1, 1))  # pending in round 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _pending_in_checkpoint(tmp_path / "ck") != 1:
        time.sleep(0.1)  # the time-based checkpoint must also save a round that is only pending
    assert [v for v, _ in list_checkpoints(tmp_path / "ck")] == [1]
    ps.kill()
    ps.restart()
    b = ps.client("b")
    assert b.version() == 1
    assert b.push(g, meta("b", 1, 1)).status == "applied"  # completes the round a started before the kill


def _pending_in_checkpoint(folder) -> int | None:
    found = list_checkpoints(folder)
    if not found:
        return None
    _, state = read_checkpoint(found[-1][1])
    return len(state["strategy"]["pending"])


@pytest.fixture
def moto_s3(tmp_path):
    port = free_port()
    proc = ServiceProcess([str(PYTHON).replace("python", "moto_server"), "-p", str(port), "-H", "127.0.0.1"],
                          tmp_path / "moto.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc=proc.proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()  # moto_server takes seconds to honour SIGTERM; it holds nothing worth keeping
        proc.stop()


def test_checkpoints_are_uploaded_to_s3(moto_s3, ps_server, tmp_path, monkeypatch):  # moto outlives the server
    from minio import Minio

    monkeypatch.setenv("OWTRAIN_S3_ACCESS_KEY", "testing")
    monkeypatch.setenv("OWTRAIN_S3_SECRET_KEY", "testing")
    s3 = Minio(moto_s3, access_key="testing", secret_key="testing", secure=False)
    s3.make_bucket("ckpts")
    ps = ps_server(checkpoint_dir=tmp_path / "ck", extra=["--checkpoint-every", "1", "--s3-endpoint",
                                                          f"http://{moto_s3}", "--s3-bucket", "ckpts"])
    client = ps.client("w")
    _, params = client.pull(None)
    client.push(grads(lenet(params), *batch(4)), meta("w", 0, 0))
    deadline = time.monotonic() + 15
    keys: list[str] = []
    while time.monotonic() < deadline and "checkpoints/ckpt-0000000001.safetensors" not in keys:
        keys = [o.object_name for o in s3.list_objects("ckpts", prefix="checkpoints/")]
        time.sleep(0.2)
    assert "checkpoints/ckpt-0000000001.safetensors" in keys
    local = (tmp_path / "ck" / "ckpt-0000000001.safetensors").read_bytes()
    assert s3.get_object("ckpts", "checkpoints/ckpt-0000000001.safetensors").read() == local
