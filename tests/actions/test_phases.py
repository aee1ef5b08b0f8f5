"""Where an activation's time goes: the action's phases, measured against the activation's wall time
and carried to the parameter server's /status, the driver's records and the run report.

Real processes: a parameter server, the local invoker's `owtrain action serve` containers, Swift S3.
"""

from __future__ import annotations

import json
import math

import pytest
import requests

from localrun.report import PHASES_PNG, RunRecord, write_report
from owtrain.phases import PHASES, sum_phases
from tests.actions.helpers import action_params, open_bucket, upload_shard
from wsk.sqlite import connect
from wsk.state import DriverState

N = 240


@pytest.fixture(scope="module")
def shard(swift_s3, tmp_path_factory):
    bucket = open_bucket(swift_s3, "owtrain-phases")
    return upload_shard(bucket, tmp_path_factory.mktemp("shards"), "train/learnable-0.tar.gz", N)


def covered(phases: dict) -> float:
    return sum(p["s"] for p in phases.values())


@pytest.mark.swift
def test_phases_add_up_to_the_activation_wall_time_and_reach_the_server(ps_server, shard, local_invoker):
    ps = ps_server(model="mlp", strategy="async", lr=0.05)
    invoker = local_invoker()
    # ~2 s of training per activation: many batches, a push every 4, pulls when the server moved on
    params = action_params(ps, shard, batch_sz_train=8, epoch_n=1000, update_intv=4, time_budget_s=2.0)
    results = []
    for cursor in (None, "next"):
        activation = invoker.wait(invoker.invoke("dist-train", {**params, "cursor": cursor and results[-1]["next"]}),
                                  timeout=120)
        assert activation.success, activation.result
        result = activation.result
        phases = result["phases"]
        assert list(phases) == list(PHASES)
        # the record's duration includes a cold container's /init (OpenWhisk's initTime annotation)
        wall = (activation.end - activation.start - int(activation.annotations.get("initTime", 0))) / 1000
        assert wall > 1.5
        assert covered(phases) == pytest.approx(wall, rel=0.10), (phases, wall)
        assert covered(phases) == pytest.approx(result["wall_s"], rel=0.10)
        assert phases["compute"]["n"] == result["steps"] and phases["compute"]["s"] > 0
        assert phases["push"]["n"] == result["pushes"] > 0
        assert phases["register"]["n"] == 1 and phases["pull"]["n"] >= 1
        assert phases["sync_wait"] == {"s": 0.0, "n": 0}  # async: no round to wait for
        results.append(result)
    first, second = (r["phases"] for r in results)
    assert first["download"]["n"] == first["verify"]["n"] == 1
    assert second["download"]["n"] == second["verify"]["n"] == 0  # the warm container kept the shard

    # the server totals what each activation reported, per worker, for /status and the dashboard
    worker = requests.get(ps.url + "/status", timeout=5).json()["workers"]["w0"]
    assert worker["activations"] == 2
    assert worker["wall_s"] == pytest.approx(sum(r["wall_s"] for r in results))
    want = sum_phases([first, second])
    for name in PHASES:
        assert worker["phases"][name]["n"] == want[name]["n"]
        assert worker["phases"][name]["s"] == pytest.approx(want[name]["s"], abs=1e-5)


@pytest.mark.swift
def test_sync_rounds_are_charged_to_sync_wait(ps_server, shard, local_invoker):
    # sync:k=2 with one worker pushing: every round stays open until its timeout closes it
    ps = ps_server(model="mlp", strategy="sync:k=2,timeout=0.3", lr=0.05)
    invoker = local_invoker()
    params = action_params(ps, shard, batch_sz_train=8, epoch_n=1000, update_intv=4, time_budget_s=2.0)
    activation = invoker.wait(invoker.invoke("dist-train", params), timeout=120)
    assert activation.success, activation.result
    phases = activation.result["phases"]
    assert phases["sync_wait"]["n"] >= 1 and phases["sync_wait"]["s"] >= 0.2 * phases["sync_wait"]["n"]
    assert covered(phases) == pytest.approx(activation.result["wall_s"], rel=0.10)


@pytest.mark.swift
def test_an_error_result_also_says_where_its_time_went(ps_server, shard, action_server):
    ps = ps_server(model="mlp")
    assert action_server.init().status_code == 200
    status, result = action_server.run(action_params(ps, shard, dataset_sha256="0" * 64))  # not this shard's
    assert status == 200 and "ShardCorrupt" in result["error"]
    phases = result["phases"]
    assert phases["download"]["n"] == 1 and phases["compute"]["n"] == 0
    assert result["wall_s"] >= phases["download"]["s"] > 0


def test_report_phases_refuses_malformed_bodies_with_400(ps_server):
    ps = ps_server()
    url, auth = ps.url + "/reportPhases", {"Authorization": f"Bearer {ps.token('w0')}"}
    good = {"worker": "w0", "wall_s": 1.0, "phases": {"compute": {"s": 0.5, "n": 3}}}
    bad_bodies = [
        {**good, "phases": {"nap": {"s": 1.0, "n": 1}}},
        {**good, "phases": {"compute": {"s": -1.0, "n": 1}}},
        {**good, "phases": {"compute": {"s": 1e12, "n": 1}}},
        {**good, "phases": {"compute": {"s": 1.0, "n": 1.5}}},
        {**good, "phases": {"compute": {"s": True, "n": 1}}},
        {**good, "phases": {"compute": {"s": 1.0}}},
        {**good, "phases": [1, 2]},
        {**good, "wall_s": "1"},
        {k: v for k, v in good.items() if k != "wall_s"},
        [1, 2, 3],
    ]
    for body in bad_bodies:
        resp = requests.post(url, json=body, headers=auth, timeout=5)
        assert resp.status_code == 400, (body, resp.text)
        assert resp.json()["error"]
    nan = json.dumps({**good, "wall_s": math.nan})  # Python's json writes NaN, which JSON has not
    resp = requests.post(url, data=nan, headers={**auth, "Content-Type": "application/json"}, timeout=5)
    assert resp.status_code == 400
    assert requests.post(url, json={**good, "worker": "w1"}, headers=auth, timeout=5).status_code == 403
    assert requests.post(url, json=good, timeout=5).status_code == 401
    assert requests.post(url, json=good, headers=auth, timeout=5).json() == {"ok": True}
    assert requests.get(ps.url + "/status", timeout=5).json()["workers"]["w0"]["phases"]["compute"] == \
        {"s": 0.5, "n": 3}
    assert "Traceback" not in ps.log_text()


def test_driver_records_keep_phases_and_old_state_files_gain_the_column(tmp_path):
    path = tmp_path / "driver.db"
    old = connect(path, "CREATE TABLE history (activation_id TEXT PRIMARY KEY, shard TEXT NOT NULL, cursor TEXT, "
                        "status TEXT, samples INTEGER, started REAL NOT NULL, ended REAL);")
    old.close()
    state = DriverState(path)  # a state file written before phases existed
    state.add("train/0")
    shard = state.shards()[0]
    state.started(shard, "a1")
    phases = {"compute": {"s": 1.5, "n": 10}, "push": {"s": 0.25, "n": 3}}
    state.advanced(state.shards()[0], "success", 80, {"epoch": 0, "offset": 80, "seed": 0, "seq": 3}, 0, False,
                   phases=phases)
    state.started(state.shards()[0], "a2")
    state.failed(state.shards()[0], "application error", "boom", None)
    rows = state.history("train/0")
    assert [r["phases"] for r in rows] == [phases, None]
    state.close()


def test_the_run_report_totals_phases_per_worker_and_plots_them(tmp_path):
    def act(worker: str, start: float, compute: float) -> dict:
        phases = {p: {"s": 0.0, "n": 0} for p in PHASES}
        phases.update(compute={"s": compute, "n": 20}, push={"s": 0.5, "n": 5}, download={"s": 0.25, "n": 1})
        return {"worker": worker, "status": "success", "start": start, "end": start + compute + 1.0, "samples": 64,
                "phases": phases}

    acts = [act("w0", 100.0, 2.0), act("w1", 100.0, 3.0), act("w0", 104.0, 2.0),
            {"worker": "w1", "status": "interrupted", "start": 110.0, "end": None, "samples": 0, "phases": None}]
    record = RunRecord(config={}, points=[], activations=acts, updates_applied=15, rejected={}, started=100.0,
                       finished=120.0, target_accuracy=None)
    report = write_report(tmp_path, record, None)
    phases = report["phases"]
    assert phases["activations"] == 3 and phases["busy_s"] == 10.0
    assert phases["total"]["compute"] == {"s": 7.0, "n": 60}
    assert phases["total"]["push"] == {"s": 1.5, "n": 15}
    assert phases["by_worker"]["w0"]["phases"]["compute"] == {"s": 4.0, "n": 40}
    assert phases["by_worker"]["w1"] == {"activations": 1, "busy_s": 4.0, "phases": sum_phases([acts[1]["phases"]])}
    assert report["files"]["phases.png"] == PHASES_PNG
    assert (tmp_path / PHASES_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
