"""The local invoker against real `owtrain action serve` containers: limits, warm reuse, logs, records."""

from __future__ import annotations

import os
import time

import pytest

from owtrain.errors import ObjectMissing, PayloadTooLarge, Throttled
from tests.fixtures.common import live_processes
from wsk.activations import ORPHANED, ActivationStore
from wsk.invoker import protocol as p

ENTRY = "tests.wsk.entries:main"


def test_success_warm_reuse_and_logs_split_at_the_sentinel(local_invoker):
    invoker = local_invoker(ENTRY)
    first = invoker.wait(invoker.invoke("dist-train", {"n": 1}), timeout=60)
    second = invoker.wait(invoker.invoke("dist-train", {"n": 2}), timeout=60)
    assert first.success and first.result["echo"] == {"n": 1}
    assert second.result["pid"] == first.result["pid"], "the warm container was not reused"
    assert "initTime" in first.annotations and "initTime" not in second.annotations
    assert int(first.result["deadline"]) - first.start == pytest.approx(60_000, abs=2_000)
    # Each activation's logs hold its own lines and nothing of the other's.
    assert any(f"stdout: stdout line of {first.activation_id}" in line for line in first.logs)
    assert any(f"stderr: stderr line of {first.activation_id}" in line for line in first.logs)
    assert not any(second.activation_id in line for line in first.logs)
    assert [line for line in second.logs if "line of" in line] == [
        line for line in second.logs if second.activation_id in line] and len(second.logs) >= 2
    assert not any(p.SENTINEL in line for line in first.logs + second.logs)
    listed = invoker.activations(name="dist-train")
    assert [a["activationId"] for a in listed] == [second.activation_id, first.activation_id]


def test_application_error_keeps_the_container_developer_error_destroys_it(local_invoker):
    invoker = local_invoker(ENTRY)
    warm = invoker.wait(invoker.invoke("a", {}), 60).result["pid"]
    failed = invoker.wait(invoker.invoke("a", {"do": "fail"}), 60)
    assert failed.status == "application error" and failed.result == {"error": "ValueError: bad input"}
    assert invoker.wait(invoker.invoke("a", {}), 60).result["pid"] == warm
    crashed = invoker.wait(invoker.invoke("a", {"do": "crash"}), 60)
    assert crashed.status == "action developer error" and crashed.result == {"error": p.EXITED_MSG}
    assert crashed.logs[-1].endswith(p.LOGS_MISSING_MSG)
    after = invoker.wait(invoker.invoke("a", {}), 60)
    assert after.success and after.result["pid"] != warm


def test_timeout_kills_the_container_at_the_deadline(local_invoker):
    invoker = local_invoker(ENTRY, timeout_ms=1500)
    invoker.wait(invoker.invoke("a", {}), 60)  # warm up: the deadline then covers only the run
    t0 = time.monotonic()
    timed_out = invoker.wait(invoker.invoke("a", {"do": "sleep", "s": 30}), 60)
    assert time.monotonic() - t0 < 6
    assert timed_out.status == "action developer error"
    assert timed_out.result == {"error": "The action exceeded its time limits of 1500 milliseconds."}
    assert timed_out.annotations["timeout"] is True


def test_memory_limit_kills_the_container(local_invoker):
    invoker = local_invoker(ENTRY, memory_mb=120)
    hog = invoker.wait(invoker.invoke("a", {"do": "hog", "mb": 200}), 60)
    assert hog.status == "action developer error"
    assert hog.result == {"error": "The action exhausted its memory and was aborted."}
    assert invoker.wait(invoker.invoke("a", {}), 60).success  # a fresh container serves the next one


def test_quota_concurrency_rate_and_payload(local_invoker):
    invoker = local_invoker(ENTRY, concurrent=1, per_minute=2, rate_window_s=3)
    running = invoker.invoke("a", {"do": "sleep", "s": 1})
    with pytest.raises(Throttled, match="concurrent"):
        invoker.invoke("a", {})
    invoker.wait(running, 60)
    invoker.wait(invoker.invoke("a", {}), 60)
    with pytest.raises(Throttled, match="last minute") as info:
        invoker.invoke("a", {})
    assert 0 < info.value.retry_after <= 3
    with pytest.raises(PayloadTooLarge):
        invoker.invoke("a", {"x": "y" * (1024 * 1024)})
    time.sleep(info.value.retry_after + 0.05)
    big = invoker.wait(invoker.invoke("a", {"do": "big", "n": 1_100_000}), 60)
    assert big.status == "application error" and "exceeded the allowed length" in big.result["error"]


def test_unknown_id_and_orphans_of_a_dead_invoker(tmp_path, local_invoker):
    db = tmp_path / "orphans.db"
    store = ActivationStore(db)
    store.create("deadbeef" * 4, "a")
    store.conn.execute("UPDATE activations SET owner=? WHERE id=?", (2**22 + 12345, "deadbeef" * 4))
    store.close()
    invoker = local_invoker(ENTRY, db=db)
    orphan = invoker.get("deadbeef" * 4)
    assert orphan.status == "whisk internal error" and orphan.result == {"error": ORPHANED}
    with pytest.raises(ObjectMissing):
        invoker.get("0" * 32)
    assert os.path.exists(db)


def _action_server_children() -> set[int]:
    """Pids of this process's children that run `owtrain action serve` (the local containers)."""
    return {pid for pid, ppid, cmd in live_processes() if ppid == os.getpid() and "action serve" in cmd}


def test_prewarmed_stem_cells_serve_the_first_activations(local_invoker):
    before = _action_server_children()
    invoker = local_invoker(ENTRY, prewarm=2)
    deadline = time.monotonic() + 60
    while len(stem_cells := _action_server_children() - before) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(stem_cells) == 2, "two containers must start before any invocation"
    ids = [invoker.invoke("a", {"do": "sleep", "s": 0.5}) for _ in range(2)]
    done = [invoker.wait(i, 60) for i in ids]
    assert all(a.success for a in done)
    assert {a.result["pid"] for a in done} == stem_cells, "the activations must run in the stem cells"
    assert all("initTime" in a.annotations for a in done), "a stem cell is initialised on its first activation"
    assert _action_server_children() - before == stem_cells, "no container was started cold"
    again = invoker.wait(invoker.invoke("a", {}), 60)
    assert again.result["pid"] in stem_cells and "initTime" not in again.annotations
