"""The invoker's side of the Docker-action protocol, as pure functions (reference §1.2-1.5).

What goes into `/init` and `/run`, and how a container's reply becomes an activation status and
result: exactly the table in the reference (which follows OpenWhisk's code where its docs differ,
e.g. every non-200 reply is a developer error, never an application error).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
SUCCESS, APP_ERROR, DEV_ERROR, WHISK_ERROR = ("success", "application error", "action developer error",
                                              "whisk internal error")

# OpenWhisk's own messages, so that users can search for them.
TIMEOUT_MSG = "The action exceeded its time limits of {ms} milliseconds."
INIT_TIMEOUT_MSG = "The action exceeded its time limits of {ms} milliseconds during initialization."
MEMORY_MSG = "The action exhausted its memory and was aborted."
EXITED_MSG = "The action did not produce a valid response and exited unexpectedly."
NOT_JSON_MSG = "The action did not produce a valid JSON or JSON Array response: {body}"
TOO_LONG_MSG = ("The action produced a response that exceeded the allowed length: {size} > {limit} bytes. "
                "The truncated response was: {head}")
INIT_FAILED_MSG = "The action failed during initialization: {body}"
LOGS_MISSING_MSG = "The action did not initialize or run as expected. Log data might be missing."
LOGS_TRUNCATED_MSG = "Logs were truncated because the total bytes size exceeds the limit of {limit} bytes."


def init_body(name: str, env: dict[str, str]) -> dict[str, Any]:
    """`/init` for a docker action created without code: name, main, no code, the context env."""
    return {"value": {"name": name, "main": "main", "binary": False, "env": env}}


def run_body(params: Any, namespace: str, action: str, activation_id: str, deadline_ms: int) -> dict[str, Any]:
    """`/run`: the parameters under `value` plus the context fields (deadline as a string)."""
    return {"value": params, "namespace": namespace, "action_name": f"/{namespace}/{action}",
            "action_version": "0.0.1", "activation_id": activation_id, "transaction_id": activation_id,
            "deadline": str(deadline_ms)}


def context_env(namespace: str, action: str, activation_id: str, deadline_ms: int) -> dict[str, str]:
    """The `__OW_*` variables an init carries."""
    return {"__OW_NAMESPACE": namespace, "__OW_ACTION_NAME": f"/{namespace}/{action}",
            "__OW_ACTION_VERSION": "0.0.1", "__OW_ACTIVATION_ID": activation_id,
            "__OW_TRANSACTION_ID": activation_id, "__OW_DEADLINE": str(deadline_ms)}


def classify_init(status_code: int, body: bytes) -> tuple[str, Any] | None:
    """None when the container is ready; else (developer error, result)."""
    if status_code == 200:
        return None
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "error" in parsed:
        return DEV_ERROR, {"error": parsed["error"]}
    return DEV_ERROR, {"error": INIT_FAILED_MSG.format(body=body.decode(errors="replace")[:1000])}


def classify_run(status_code: int, body: bytes, payload_limit: int) -> tuple[str, Any]:
    """(status, result) of one `/run` reply."""
    if len(body) > payload_limit:
        head = body[:payload_limit].decode(errors="replace")
        return APP_ERROR, {"error": TOO_LONG_MSG.format(size=len(body), limit=payload_limit, head=head)}
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    text = body.decode(errors="replace")[:1000]
    if status_code != 200:
        if isinstance(parsed, dict) and "error" in parsed:
            return DEV_ERROR, {"error": parsed["error"]}
        return DEV_ERROR, {"error": NOT_JSON_MSG.format(body=text)}
    if isinstance(parsed, dict):
        if "error" in parsed:
            return APP_ERROR, {"error": parsed["error"]}
        return SUCCESS, parsed
    if isinstance(parsed, list):
        return SUCCESS, parsed
    return DEV_ERROR, {"error": NOT_JSON_MSG.format(body=text)}


def log_line(stream: str, text: str, when: datetime | None = None) -> str:
    """OpenWhisk's stored log format: timestamp padded to 30 characters, stream, text."""
    stamp = (when or datetime.now(timezone.utc)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"{stamp:<30} {stream}: {text}"
