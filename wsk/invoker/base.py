"""The `Invoker` interface: start an action's activation and learn how it ended.

The driver and the event bridge only ever see this interface, so a job runs the same against a
real OpenWhisk (`openwhisk.py`) or against local `owtrain action serve` processes (`local.py`).
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

# OpenWhisk's four activation outcomes (reference §3.4), statusCode 0..3 in that order.
STATUSES = ("success", "application error", "action developer error", "whisk internal error")


@dataclass(frozen=True)
class Activation:
    """How one activation ended. `start`/`end` are epoch milliseconds, as in OpenWhisk."""

    activation_id: str
    name: str
    status: str
    result: Any
    start: int
    end: int
    logs: list[str] = field(default_factory=list)
    annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> bool:
        return self.status == "success"

    @property
    def error(self) -> str | None:
        """The action's error message for a failed activation, else None."""
        if self.success:
            return None
        if isinstance(self.result, dict) and "error" in self.result:
            return str(self.result["error"])
        return self.status

    @property
    def error_type(self) -> str | None:
        """The class name of the action's error (`owtrain.errors`) when its result carries it as data."""
        if isinstance(self.result, dict) and isinstance(self.result.get("error_type"), str):
            return str(self.result["error_type"])
        return None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Activation:
        """Build from an OpenWhisk activation record (GET /activations/{id})."""
        response = record.get("response") or {}
        status = response.get("status") or STATUSES[int(response.get("statusCode", 0))]
        annotations = {a["key"]: a.get("value") for a in record.get("annotations", []) if "key" in a}
        return cls(activation_id=record["activationId"], name=record.get("name", ""), status=status,
                   result=response.get("result"), start=int(record.get("start", 0)),
                   end=int(record.get("end") or 0), logs=list(record.get("logs", [])), annotations=annotations)

    def to_record(self, namespace: str = "guest") -> dict[str, Any]:
        """The OpenWhisk-shaped record (what `wsk activation get` prints)."""
        return {
            "activationId": self.activation_id, "namespace": namespace, "name": self.name,
            "subject": namespace, "version": "0.0.1", "publish": False,
            "start": self.start, "end": self.end, "duration": max(self.end - self.start, 0),
            "response": {"status": self.status, "statusCode": STATUSES.index(self.status),
                         "success": self.success, "result": self.result},
            "logs": self.logs,
            "annotations": [{"key": k, "value": v} for k, v in self.annotations.items()],
        }


def poll_until(fetch: Callable[[], T | None], timeout: float, interval: float, what: str) -> T:
    """Call `fetch` until it returns something; TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = fetch()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} still running after {timeout:.0f}s")
        time.sleep(interval)


class Invoker(ABC):
    """Starts activations of an action and reports how they ended.

    Implementations enforce (local) or meet (OpenWhisk) the namespace quota: `invoke` raises
    `owtrain.errors.Throttled` when an activation cannot be admitted now; nothing was started then,
    so the caller may retry the same invocation later.
    """

    @abstractmethod
    def invoke(self, action: str, params: dict[str, Any]) -> str:
        """Start one activation without waiting; returns its id."""

    @abstractmethod
    def get(self, activation_id: str) -> Activation | None:
        """The finished activation, or None while it still runs."""

    def wait(self, activation_id: str, timeout: float, interval: float = 0.1) -> Activation:
        """Block until the activation ends; raises TimeoutError after `timeout` seconds."""
        return poll_until(lambda: self.get(activation_id), timeout, interval, f"activation {activation_id}")

    def close(self, grace_s: float | None = None) -> None:  # noqa: B027 - optional hook, no-op default
        """Release processes and connections (nothing to do by default). An invoker that runs the
        activations itself lets running ones return for up to `grace_s` seconds (None: their time
        limit), then kills them; a remote platform's activations are not affected."""
