"""Dispatch by firing an OpenWhisk trigger (rule → action) instead of invoking the action.

Kept for deployments that want the rule to decide what runs. It can lose events: a fire is
accepted (202) before the rule's invoke is admitted, and an invoke rejected by the namespace quota
is dropped, visible only in the trigger activation's logs (reference §7.1). `get` therefore reads
those logs and reports a dropped rule invoke as `whisk internal error`, so the driver retries it —
the best a trigger can do; the default `invoke` dispatch needs no such repair.
"""

from __future__ import annotations

import json
from typing import Any

from owtrain.errors import ConfigError
from wsk.client import OpenWhiskClient
from wsk.invoker.base import Activation, Invoker


class TriggerInvoker(Invoker):
    """`invoke` fires `trigger` with the params; an activation is the trigger's activation."""

    def __init__(self, client: OpenWhiskClient, trigger: str) -> None:
        self.client = client
        self.trigger = trigger

    def invoke(self, action: str, params: dict[str, Any]) -> str:
        trigger_id = self.client.fire_trigger(self.trigger, params)
        if trigger_id is None:
            raise ConfigError(f"trigger {self.trigger} has no active rule: the event would go nowhere")
        return trigger_id

    def get(self, activation_id: str) -> Activation | None:
        record = self.client.activation(activation_id)
        if record is None:
            return None
        rules = [json.loads(line) for line in record.get("logs", []) if line.startswith("{")]
        dropped = [r for r in rules if not r.get("success")]
        if dropped:
            record["response"] = {"status": "whisk internal error", "success": False,
                                  "result": {"error": f"rule invoke dropped: {dropped[0].get('error')}"}}
        else:  # the rule's action runs on its own; the bridge's part is done
            record["response"] = {"status": "success", "success": True, "result": {"done": True, "next": None}}
        return Activation.from_record(record)

    def close(self, grace_s: float | None = None) -> None:
        self.client.close()
