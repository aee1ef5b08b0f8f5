"""64 concurrent pushers, each on its own keep-alive connection, against a real parameter server
whose admission limits are set low: beyond them the server answers 429 with Retry-After (nothing
taken), and every push it acknowledged is applied exactly once.

Each worker pushes model deltas whose every entry is the same power of two, with server lr 1 and no
staleness damping, so the model the server ends with is exactly (bit for bit) its first parameters
plus that constant added once per acknowledged push, whatever the order the pushes arrived in.
"""

from __future__ import annotations

import threading
import time

import requests
import torch

from owtrain.codec import CONTENT_TYPE, decode_tensors, encode_tensors

WORKERS, PUSHES = 64, 8
STEP = 2.0**-12  # exact in float32; 512 of them move a weight by 0.125
LIMITS = ["--worker-rate", "4", "--worker-burst", "2", "--global-rate", "150", "--global-burst", "40"]


def pull(ps) -> tuple[int, dict[str, torch.Tensor]]:
    resp = requests.get(f"{ps.url}/getParameter", headers={"Authorization": f"Bearer {ps.admin_token()}"},
                        timeout=30)
    tensors, _ = decode_tensors(resp.content)
    return int(resp.headers["X-Owtrain-Version"]), tensors


def test_64_pushers_over_the_limits_acknowledged_equals_applied(ps_server):
    # the fixture turns admission off; these flags come later on the command line and win
    ps = ps_server(strategy="async:damping=0", lr=1.0, extra=LIMITS)
    version0, params0 = pull(ps)
    delta = {name: torch.full_like(t, STEP) for name, t in params0.items()}
    throttles: list[str] = []
    acknowledged: list[tuple[str, int, str]] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(WORKERS)

    def pusher(i: int) -> None:
        worker = f"w{i}"
        session = requests.Session()  # one keep-alive connection per pusher
        session.headers.update({"Authorization": f"Bearer {ps.token(worker)}", "Content-Type": CONTENT_TYPE})
        bodies = [encode_tensors(delta, {"worker": worker, "seq": seq, "base_version": version0, "kind": "delta",
                                         "samples": 1}) for seq in range(PUSHES)]
        start.wait()
        seq = 0
        while seq < PUSHES:
            resp = session.post(f"{ps.url}/putGradient", data=bodies[seq], timeout=60)
            if resp.status_code == 429:
                with lock:
                    throttles.append(resp.headers.get("Retry-After", ""))
                time.sleep(float(resp.headers["Retry-After"]))
                continue  # the same seq again: nothing of it was taken
            if resp.status_code != 200:
                with lock:
                    failures.append(f"{worker} seq {seq}: {resp.status_code} {resp.text[:200]}")
                return
            with lock:
                acknowledged.append((worker, seq, resp.json()["status"]))
            seq += 1

    threads = [threading.Thread(target=pusher, args=(i,)) for i in range(WORKERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    elapsed = time.monotonic() - t0
    assert not failures, failures[:5]

    # beyond the limits: 429 with a whole-second Retry-After
    assert throttles, "64 pushers over a 150/s server-wide limit must be throttled"
    assert all(value.isdigit() and int(value) >= 1 for value in throttles), set(throttles)

    # every acknowledged push is applied exactly once
    assert len(acknowledged) == WORKERS * PUSHES == len(set(acknowledged))
    assert {status for _, _, status in acknowledged} == {"applied"}
    status = requests.get(f"{ps.url}/status", timeout=10).json()
    assert status["updates"]["applied"] == len(acknowledged)
    assert status["updates"]["duplicate"] == 0
    assert status["updates"]["rejected"].get("throttled", 0) == len(throttles)
    version, params = pull(ps)
    assert version - version0 == len(acknowledged)
    for name, p0 in params0.items():
        expected = p0.clone()
        for _ in range(len(acknowledged)):
            expected += STEP  # the same float32 additions the server made, in any order
        assert torch.equal(params[name], expected), name
    print(f"{WORKERS} pushers: {len(acknowledged)} acknowledged and applied, {len(throttles)} throttled, "
          f"{elapsed:.1f} s")
