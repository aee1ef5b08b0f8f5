"""The OpenWhisk backend: activations run on a real controller through its REST API."""

from __future__ import annotations

from typing import Any

from wsk.client import OpenWhiskClient
from wsk.invoker.base import Activation, Invoker


class OpenWhiskInvoker(Invoker):
    """Non-blocking invokes plus activation polling; the controller enforces the quota."""

    def __init__(self, client: OpenWhiskClient) -> None:
        self.client = client

    def invoke(self, action: str, params: dict[str, Any]) -> str:
        # No retries here: Throttled goes up to the caller, which keeps pacing (Invoker contract).
        return self.client.invoke(action, params, retry_throttled=False)

    def get(self, activation_id: str) -> Activation | None:
        record = self.client.activation(activation_id)
        return None if record is None else Activation.from_record(record)

    def close(self, grace_s: float | None = None) -> None:
        self.client.close()
