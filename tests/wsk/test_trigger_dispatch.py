"""Dispatch by trigger: the trap (accepted fire, dropped rule invoke) is seen and repaired by retries."""

from __future__ import annotations

import json
import threading

from owtrain.retry import RetryPolicy
from tests.wsk.chains import write_shard_list
from wsk.client import OpenWhiskClient
from wsk.config import DriverConfig, WskConfig
from wsk.driver import Driver
from wsk.invoker.trigger import TriggerInvoker
from wsk.shardlist import load_train_shards
from wsk.state import DriverState


def test_dropped_rule_invokes_are_detected_and_fired_again(fake_controller, tmp_path, monkeypatch):
    client = OpenWhiskClient(WskConfig(apihost=fake_controller.url, auth=fake_controller.auth),
                             RetryPolicy(attempts=3, base=0.05))
    client.put_action("dist-train", image="img:1")
    client.put_trigger("shard-uploaded")
    client.put_rule("shard-uploaded-rule", "shard-uploaded", "dist-train")
    fake_controller.impl = lambda p: ("success", {"trained": p["worker"]})
    fake_controller.force_429 = 3  # the first three rule invokes are throttled after their fire was accepted
    monkeypatch.setattr("wsk.driver.RETRY_POLICY", RetryPolicy(base=0.3, cap=0.6))
    state = DriverState(tmp_path / "state.db")
    for entry in load_train_shards(write_shard_list(tmp_path / "shards.json", 6)):
        state.add(entry["key"], entry["url"], entry["sha256"])
    config = DriverConfig(job="j", ps_url="http://ps:1", secret="s", workers=6, max_retries=10, poll_interval_s=0.02)
    summary = Driver(TriggerInvoker(client, "shard-uploaded"), state, config).run(threading.Event())
    assert summary.done == 6
    fires = [r for r in fake_controller.activations.values() if r["name"] == "shard-uploaded"]
    rule_results = [json.loads(line) for r in fires for line in r["logs"]]
    assert sum(not r["success"] for r in rule_results) == 3  # accepted fires whose rule invoke was dropped
    trained = {r["response"]["result"]["trained"] for r in fake_controller.activations.values()
               if r["name"] == "dist-train"}
    assert trained == {f"w{i}" for i in range(1, 7)}
