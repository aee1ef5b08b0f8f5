"""SIGKILL of the parameter server while it works: what was acknowledged survives, exactly once, and
a version never goes back or names other weights (checkpoint + journal replay, docs/param_server.md).

Each push is a model delta that adds 1.0 to one element of its own (worker, seq), so after recovery
the model itself says which pushes were applied and how often: 1.0 exactly once, never 2.0.
"""

from __future__ import annotations

import hashlib
import threading
import time

import requests
import torch

from owtrain.errors import OwtrainError
from owtrain.retry import RetryPolicy
from param_server.journal import list_segments
from tests.param_server.helpers import batch, grads, lenet, meta

WORKERS = 8
TENSOR = "classifier.1.weight"  # the largest LeNet5 tensor: one element per (worker, seq)
PER_WORKER = 400


def _one_hot(template: dict[str, torch.Tensor], index: int) -> dict[str, torch.Tensor]:
    delta = {k: torch.zeros_like(v) for k, v in template.items()}
    delta[TENSOR].view(-1)[index] = 1.0
    return delta


def _digest(params: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(params):
        h.update(name.encode())
        h.update(params[name].contiguous().numpy().tobytes())
    return h.hexdigest()


def test_sigkill_while_8_clients_push_loses_no_acknowledged_update(ps_server, tmp_path):
    ck = tmp_path / "ck"
    flags = ["--strategy", "async:damping=0", "--server-lr", "1", "--checkpoint-every", "40",
             "--checkpoint-interval", "3600", "--journal-segment-mb", "4"]
    ps = ps_server(checkpoint_dir=ck, extra=flags)
    _, initial = ps.client("probe").pull(None)
    assert initial[TENSOR].numel() >= WORKERS * PER_WORKER
    acked: dict[str, set[int]] = {f"w{i}": set() for i in range(WORKERS)}
    in_flight: dict[str, int | None] = {w: None for w in acked}
    seen: dict[int, str] = {}  # version -> digest of the weights a puller got for it before the kill
    killed = threading.Event()

    def pusher(worker: str, rank: int) -> None:
        client = ps.client(worker, policy=RetryPolicy(attempts=1, base=0.05, cap=0.1))
        for seq in range(PER_WORKER):
            in_flight[worker] = seq
            try:
                answer = client.push(_one_hot(initial, rank * PER_WORKER + seq), meta(worker, seq, 0, kind="delta"))
            except (OwtrainError, OSError, requests.RequestException):
                return  # the server died under us: this seq's fate is unknown until the retry below
            assert answer.status == "applied"
            acked[worker].add(seq)
            in_flight[worker] = None

    def puller() -> None:
        client = ps.client("watcher", policy=RetryPolicy(attempts=1, base=0.05, cap=0.1))
        while not killed.is_set():
            try:
                version, params = client.pull(None)
            except (OwtrainError, OSError, requests.RequestException):
                return
            seen[version] = _digest(params)

    threads = [threading.Thread(target=pusher, args=(w, i)) for i, w in enumerate(acked)]
    threads.append(threading.Thread(target=puller))
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while sum(map(len, acked.values())) < 300 and time.monotonic() < deadline:
        time.sleep(0.02)
    ps.kill()  # SIGKILL, mid-stream
    killed.set()
    for t in threads:
        t.join(timeout=60)
    acknowledged = sum(map(len, acked.values()))
    assert 300 <= acknowledged < WORKERS * PER_WORKER, "the kill did not land mid-stream"
    assert len(list_segments(ck / "journal")) >= 1

    ps.restart()
    status = ps.client("probe").status()
    assert status["replayed"] >= 1
    version, recovered = ps.client("probe").pull(None)
    assert version >= max(seen), f"the version went back: {version} < {max(seen)}; {status}"
    if version in seen:
        assert _digest(recovered) == seen[version], "a version number now names other weights"
    # every acknowledged update is in the model exactly once; unacknowledged ones at most once
    applied = (recovered[TENSOR] - initial[TENSOR]).view(-1)
    for rank, worker in enumerate(acked):
        for seq in acked[worker]:
            assert abs(float(applied[rank * PER_WORKER + seq]) - 1.0) < 1e-4, (worker, seq)
    assert float(applied.max()) < 1.5 and float(applied.min()) > -0.5
    # the version counts every applied update: nothing replayed twice, nothing skipped
    assert version == round(float(applied.sum()))
    # a retry of each in-flight push (the answer was lost with the process) is applied once at most
    for rank, worker in enumerate(acked):
        seq = in_flight[worker]
        if seq is None:
            continue
        answer = ps.client(worker).push(_one_hot(initial, rank * PER_WORKER + seq), meta(worker, seq, 0, kind="delta"))
        assert answer.status in ("applied", "duplicate")
    version, after = ps.client("probe").pull(None)
    final = (after[TENSOR] - initial[TENSOR]).view(-1)
    assert float(final.max()) < 1.5
    assert version == round(float(final.sum()))


def test_kill_at_rest_recovers_bit_identical_model_and_training_goes_on(ps_server, tmp_path):
    """With a deterministic strategy, the model after recovery is bit-identical to the model at the
    moment of the kill, the ledger still knows every (worker, seq), and training continues to learn."""
    ck = tmp_path / "ck"
    ps = ps_server(lr=0.05, checkpoint_dir=ck, extra=["--momentum", "0.9", "--checkpoint-every", "7",
                                                    "--checkpoint-interval", "3600"])
    x, y = batch(64, seed=7)  # one fixed batch: its loss must fall steadily ("the job still learns")
    clients = [ps.client(f"w{i}") for i in range(2)]

    def train(steps: range) -> float:
        loss = 0.0
        for seq in steps:
            for c, worker in zip(clients, ("w0", "w1"), strict=True):
                version, params = c.pull(None)
                model = lenet(params)
                with torch.no_grad():
                    loss = float(torch.nn.functional.cross_entropy(model(x), y))
                c.push(grads(model, x, y), meta(worker, seq, version))
        return loss

    first = train(range(0, 1))
    train(range(1, 10))  # 20 versions: checkpoints at 7 and 14, six versions only in the journal
    version, before = clients[0].pull(None)
    ps.kill()
    ps.restart()
    clients = [ps.client(f"w{i}") for i in range(2)]
    after_version, after = clients[0].pull(None)
    assert after_version == version == 20
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert clients[1].push(grads(lenet(after), x, y), meta("w1", 9, after_version)).status == "duplicate"
    last = train(range(10, 20))
    assert last < first - 0.3, (first, last)  # 2.30 -> about 1.3 in 40 steps; a reset model stays at 2.3


def test_sync_rounds_closed_by_time_out_and_open_rounds_are_replayed(ps_server, tmp_path):
    """A round closed by its time-out is a `tick` record; a round still open is rebuilt from its
    `accepted` records, so the next update completes it as it would have without the crash."""
    ps = ps_server(strategy="sync:k=3,timeout=0.3,min=1", checkpoint_dir=tmp_path / "ck",
                   extra=["--checkpoint-every", "0", "--checkpoint-interval", "3600"])
    a, b, c = ps.client("a"), ps.client("b"), ps.client("c")
    _, params = a.pull(None)
    g = grads(lenet(params), *batch(4))
    assert a.push(g, meta("a", 0, 0)).status == "accepted"
    assert b.push(g, meta("b", 0, 0)).status == "accepted"
    deadline = time.monotonic() + 20
    while a.version() != 1 and time.monotonic() < deadline:  # the time-out closes round 1 with a and b
        time.sleep(0.05)
    _, v1 = a.pull(None)
    g1 = grads(lenet(v1), *batch(4, seed=2))
    assert a.push(g1, meta("a", 1, 1)).status == "accepted"  # round 2 open: a only
    ps.kill()
    ps.restart()
    a, b, c = ps.client("a"), ps.client("b"), ps.client("c")
    version, recovered = a.pull(None)
    assert version == 1 and all(torch.equal(v1[k], recovered[k]) for k in v1)
    assert a.push(g1, meta("a", 1, 1)).status == "duplicate"
    assert b.push(g1, meta("b", 1, 1)).status == "accepted"
    assert c.push(g1, meta("c", 1, 1)).status == "applied"  # k=3: a (replayed), b and c
    assert a.version() == 2
