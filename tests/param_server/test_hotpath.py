"""The thin WSGI hot path for push and pull (param_server/hotpath.py), the batched apply thread
and the journal-size checkpoint trigger, on real servers over loopback HTTP."""

from __future__ import annotations

import json
import socket
import threading

import gevent
import requests
import torch

from owtrain.codec import CONTENT_TYPE, encode_tensors
from owtrain.specs import StrategySpec
from owtrain.tokens import Claims
from param_server.checkpoint import list_checkpoints
from param_server.config import PSConfig
from param_server.routes.push_pull import decode_update
from param_server.runtime import Runtime
from tests.param_server.helpers import batch, grads, lenet, max_diff, meta


def _raw_request(port: int, head: bytes, body: bytes = b"", half_close: bool = False) -> tuple[int, bytes]:
    """Send bytes as they are (a body shorter than its Content-Length, say) and read the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head_part, _, rest = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head_part.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return int(head_part.split()[1]), rest


def _chunked(body: bytes) -> bytes:
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"


def test_hot_path_and_flask_route_refuse_bad_pushes_alike_without_a_traceback(ps_server):
    """Each bad push gets the same status and reason on the hot path (Content-Length) as through
    Flask (a chunked body, which the hot path hands on), and the model does not move."""
    ps = ps_server(extra=["--max-body-mb", "1"])
    token = ps.token("w")
    _, params = ps.client("w").pull(None)
    good = grads(lenet(params), *batch(4))
    overlapping = bytearray(encode_tensors({"a": torch.zeros(4), "b": torch.zeros(4)}, meta("w", 1, 0)))
    overlapping = overlapping.replace(b'"data_offsets":[16,32]', b'"data_offsets":[0 ,16]')
    cases = {
        "garbage": (b"not safetensors at all", 400, "bad_request"),
        "header past the end": (b"\xff" * 8 + b"{}", 400, "bad_request"),
        "overlapping tensors": (bytes(overlapping), 400, "bad_request"),
        "nan": (encode_tensors({k: v * float("nan") for k, v in good.items()}, meta("w", 1, 0)), 400, "bad_tensor"),
        "stale metadata": (encode_tensors(good, meta("w", 1, 5)), 400, "bad_request"),
        "too large": (b"\0" * (1024 * 1024 + 1), 413, "too_large"),
    }
    auth = f"Authorization: Bearer {token}\r\nContent-Type: {CONTENT_TYPE}\r\n".encode()
    for case, (body, status, reason) in cases.items():
        hot = requests.post(f"{ps.url}/putGradient", data=body, timeout=10,
                            headers={"Authorization": f"Bearer {token}", "Content-Type": CONTENT_TYPE})
        flask_status, flask_body = _raw_request(
            ps.port, b"POST /putGradient HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth
            + b"Transfer-Encoding: chunked\r\n\r\n", _chunked(body))
        assert (hot.status_code, hot.json()["reason"]) == (status, reason), (case, hot.text)
        assert (flask_status, json.loads(flask_body)) == (status, hot.json()), (case, flask_body)
    # a body shorter than its Content-Length: 400, the connection's next request is not confused
    status, body = _raw_request(ps.port, b"POST /putGradient HTTP/1.1\r\nHost: x\r\n" + auth
                                + b"Content-Length: 5000\r\n\r\n", b"x" * 100, half_close=True)
    assert status == 400 and b"cut short" in body, body
    # no token: 401 before the body is read, on both paths
    assert requests.post(f"{ps.url}/putGradient", data=b"x" * 10, timeout=10).status_code == 401
    assert ps.client("w").pull(None)[0] == 0
    assert "Traceback" not in ps.proc.log_text()


def test_hot_path_pull_answers_as_before(ps_server):
    """200 with the cached payload and X-Owtrain-Version, 304 for `have`, 400 for a bad query,
    401 without a token; HEAD (handed to Flask) answers the same headers."""
    ps = ps_server()
    token = {"Authorization": f"Bearer {ps.token('w')}"}
    full = requests.get(f"{ps.url}/getParameter", headers=token, timeout=10)
    assert full.status_code == 200 and full.headers["X-Owtrain-Version"] == "0"
    assert full.headers["Content-Type"] == CONTENT_TYPE and len(full.content) == int(full.headers["Content-Length"])
    again = requests.get(f"{ps.url}/getParameter?have=0&wait=0.2", headers=token, timeout=10)
    assert again.status_code == 304 and again.headers["X-Owtrain-Version"] == "0" and again.content == b""
    bad = requests.get(f"{ps.url}/getParameter?have=x", headers=token, timeout=10)
    assert bad.status_code == 400 and bad.json()["reason"] == "bad_request"
    assert requests.get(f"{ps.url}/getParameter", timeout=10).status_code == 401
    head = requests.head(f"{ps.url}/getParameter", headers=token, timeout=10)
    assert head.status_code == 200 and head.headers["X-Owtrain-Version"] == "0"
    assert requests.post(f"{ps.url}/getParameter", headers=token, timeout=10).status_code == 405
    assert "Traceback" not in ps.proc.log_text()


def test_queued_pushes_are_applied_in_one_batch_like_sequential_steps(tmp_path):
    """Pushes that queue while the apply thread is busy run as one batch (one snapshot is
    published for it), and the model equals the same updates applied one by one to 1e-6."""
    cfg = PSConfig(job="j", secret="s", strategy=StrategySpec.parse("async:damping=0"), lr=0.05, momentum=0.9,
                   checkpoint_dir=tmp_path / "ck", checkpoint_interval_s=3600)
    rt = Runtime(cfg)
    try:
        reference = lenet()
        opt = torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9)
        updates = [grads(lenet(), *batch(8, seed=i)) for i in range(6)]
        bodies = [bytearray(encode_tensors(g, meta(f"w{i}", 0, 0))) for i, g in enumerate(updates)]
        release = threading.Event()
        busy = gevent.spawn(rt.apply, release.wait, 30)
        gevent.sleep(0.05)  # the apply thread is now inside release.wait
        batches_before = rt.apply_thread.batches
        pushes = [gevent.spawn(rt.push, body, lambda raw, w=f"w{i}": decode_update(raw, Claims("j", w, 0), rt.spec))
                  for i, body in enumerate(bodies)]
        gevent.sleep(0.05)  # every push is queued behind the busy job
        release.set()
        gevent.joinall([busy, *pushes], timeout=30, raise_error=True)
        assert rt.apply_thread.batches - batches_before == 2  # the busy job's batch, then all six pushes
        assert sorted(p.value[1]["version"] for p in pushes) == [1, 2, 3, 4, 5, 6]
        assert rt.core.versions.versions() == [0, 6]  # one snapshot for the batch, not one per version
        assert rt.latest().version == 6
        order = [int(p.value[0].worker[1:]) for p in sorted(pushes, key=lambda p: p.value[1]["version"])]
        for i in order:
            opt.zero_grad()
            for name, param in reference.named_parameters():
                param.grad = updates[i][name].clone()
            opt.step()
        assert max_diff(rt.latest().tensors, dict(reference.named_parameters())) < 1e-6
    finally:
        rt.close(final_checkpoint=False)


def test_with_the_journal_checkpoints_follow_its_size_not_the_version_count(ps_server, tmp_path):
    """`--checkpoint-journal-mb 0.5`: a LeNet5 push journals ~248 kB, so a checkpoint follows every
    third push; no count trigger (the default with a journal) and no time trigger (an hour)."""
    ck = tmp_path / "ck"
    ps = ps_server(checkpoint_dir=ck, extra=["--checkpoint-journal-mb", "0.5", "--checkpoint-interval", "3600"])
    client = ps.client("w")
    for seq in range(7):
        version, params = client.pull(None)
        client.push(grads(lenet(params), *batch(4, seed=seq)), meta("w", seq, version))
    assert [v for v, _ in list_checkpoints(ck)] == [3, 6]


def test_a_pull_right_after_an_acknowledged_push_sees_its_version(ps_server, tmp_path):
    """Read your writes: once a push is answered, its version is what a pull gets, also when the
    pull follows at once on the same keep-alive connection (the push's greenlet may read that next
    request before the loop runs anything else), with the journal on."""
    ps = ps_server(checkpoint_dir=tmp_path / "ck")
    client = ps.client("w")
    version, params = client.pull(None)
    update = grads(lenet(params), *batch(4))
    stale = []
    for seq in range(150):
        reply = client.push(update, meta("w", seq, version))
        pulled = client.pull(have=version)  # no wait: a 304 here would hand the worker old weights
        if pulled is None or pulled[0] < reply.version:
            stale.append((seq, reply.version, None if pulled is None else pulled[0]))
        else:
            version = pulled[0]
    assert not stale, f"pulls right after their push saw an older version: {stale[:5]} ({len(stale)} of 150)"
