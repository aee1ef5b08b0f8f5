"""A small REST client for the parts of OpenWhisk's `/api/v1` that owtrain uses.

It speaks the controller's real behaviour (reference §2-3), not only the swagger's: a 429 is
retried with back-off (nothing was admitted, so the invocation is not lost or doubled), a blocking
invoke that outlives the controller's 60 s wait comes back 202 and is polled to its end, and a 502
carries the activation whose `status` says whether the action (application error) or its image
(developer error) failed. TLS verification is on unless `WskConfig.insecure` says otherwise.
"""

from __future__ import annotations

import logging
from typing import Any, NoReturn
from urllib.parse import quote

import requests

from owtrain.errors import ActivationFailed, BadRequest, ServerUnavailable, Throttled
from owtrain.http_errors import status_error
from owtrain.retry import RetryPolicy, retry_call
from wsk.config import MAX_BLOCKING_WAIT_MS, WskConfig
from wsk.invoker.base import poll_until

log = logging.getLogger(__name__)

# Statuses that mean "try again later": nothing was done (429) or the controller is overloaded.
_RETRYABLE = (requests.ConnectionError, requests.Timeout, Throttled, ServerUnavailable)
DEFAULT_POLICY = RetryPolicy(attempts=6, cap=10.0)


def _error_text(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200]
    return str(body.get("error", body)) if isinstance(body, dict) else str(body)[:200]


def _raise_for(resp: requests.Response, what: str) -> NoReturn:
    """Map a failed controller reply to owtrain's typed errors (one place for all calls)."""
    text = f"{what}: HTTP {resp.status_code}: {_error_text(resp)}"
    if resp.status_code == 409:  # a conflicting write (e.g. a create without overwrite)
        raise BadRequest(text)
    raise status_error(resp, text) or ServerUnavailable(text)


class OpenWhiskClient:
    """Actions, invocations, activations, triggers and rules of one namespace."""

    def __init__(self, config: WskConfig, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.config = config
        self.policy = policy
        self.session = requests.Session()
        self.session.auth = config.basic_auth
        self.session.headers["Accept"] = "application/json"
        self.session.verify = not config.insecure
        if config.insecure:
            log.warning("TLS certificate verification is OFF for %s (--insecure)", config.apihost)

    def close(self) -> None:
        self.session.close()

    # -- plumbing -------------------------------------------------------------------------------

    def _url(self, collection: str, name: str = "", suffix: str = "") -> str:
        ns = quote(self.config.namespace, safe="")
        parts = [self.config.base_url, "namespaces", ns, collection]
        if name:
            # "pkg/action" addresses an action in a package: quote each segment, keep the slash.
            parts.append("/".join(quote(p, safe="") for p in name.strip("/").split("/")))
        if suffix:
            parts.append(suffix)
        return "/".join(parts)

    def _call(self, method: str, url: str, what: str, ok: tuple[int, ...] = (200,), retry_throttled: bool = True,
              **kw: Any) -> requests.Response:
        """One request with retries of 429/503/connection errors; other failures raise typed."""

        def once() -> requests.Response:
            resp = self.session.request(method, url, timeout=self.config.timeout_s, **kw)
            if resp.status_code in ok:
                return resp
            if resp.status_code == 503:
                raise ServerUnavailable(f"{what}: HTTP 503: {_error_text(resp)}")
            _raise_for(resp, what)

        retry_on = _RETRYABLE if retry_throttled else tuple(e for e in _RETRYABLE if e is not Throttled)
        try:
            return retry_call(once, self.policy, retry_on=retry_on, what=what)
        except requests.RequestException as exc:  # callers handle owtrain's typed errors only
            raise ServerUnavailable(f"{what}: cannot reach {self.config.apihost}: {exc}") from exc

    # -- actions --------------------------------------------------------------------------------

    def put_action(
        self,
        name: str,
        image: str,
        limits: dict[str, int] | None = None,
        parameters: dict[str, Any] | None = None,
        annotations: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or update a blackbox (Docker image) action; returns the stored action."""
        body: dict[str, Any] = {"exec": {"kind": "blackbox", "image": image}}
        if limits:
            body["limits"] = limits
        if parameters:
            body["parameters"] = [{"key": k, "value": v} for k, v in parameters.items()]
        if annotations:
            body["annotations"] = [{"key": k, "value": v} for k, v in annotations.items()]
        url = self._url("actions", name)
        return _object(self._call("PUT", url, f"update action {name}", params={"overwrite": "true"}, json=body),
                       f"update action {name}")

    def get_action(self, name: str) -> dict[str, Any]:
        """The action's record; raises ObjectMissing when it does not exist."""
        return _object(self._call("GET", self._url("actions", name), f"get action {name}", params={"code": "false"}),
                       f"get action {name}")

    def delete_action(self, name: str) -> None:
        """Delete the action; raises ObjectMissing when it does not exist."""
        self._call("DELETE", self._url("actions", name), f"delete action {name}")

    def invoke(self, name: str, params: dict[str, Any], retry_throttled: bool = True) -> str:
        """Start an activation without waiting; returns its id.

        A 429 is retried with back-off (the controller admitted nothing); when retries run out, or
        at once with `retry_throttled=False` (a caller that paces itself, like the driver), the
        `Throttled` error is raised so that the caller can keep the work queued.
        """
        resp = self._call("POST", self._url("actions", name), f"invoke {name}", ok=(202,),
                          params={"blocking": "false"}, json=params, retry_throttled=retry_throttled)
        return _activation_id(_object(resp, f"invoke {name}"), f"invoke {name}")

    def invoke_blocking(self, name: str, params: dict[str, Any], wait_s: float = 60.0) -> dict[str, Any]:
        """Invoke and wait for the activation record, polling when the controller gives up (202).

        Returns the activation on success; raises ActivationFailed for the three failure
        statuses, carrying the record.
        """
        timeout_ms = int(min(wait_s * 1000, MAX_BLOCKING_WAIT_MS))
        resp = self._call("POST", self._url("actions", name), f"invoke {name}", ok=(200, 202, 500, 502),
                          params={"blocking": "true", "timeout": str(timeout_ms)}, json=params)
        record = _object(resp, f"invoke {name}")
        if resp.status_code == 202:
            activation_id = _activation_id(record, f"invoke {name}")
            log.info("activation %s still running after %d ms; polling", activation_id, timeout_ms)
            record = self.poll(activation_id, timeout=max(wait_s - timeout_ms / 1000, 1.0))
        return _checked(record)

    # -- activations ----------------------------------------------------------------------------

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        """The full activation record, or None while it is not stored yet (still running)."""
        url = self._url("activations", activation_id)
        resp = self._call("GET", url, f"get activation {activation_id}", ok=(200, 404))
        return _object(resp, f"get activation {activation_id}") if resp.status_code == 200 else None

    def activation_result(self, activation_id: str) -> dict[str, Any]:
        """The stored result of a finished activation (`{"result", "status", "success", …}`)."""
        url = self._url("activations", activation_id, "result")
        return _object(self._call("GET", url, f"result of {activation_id}"), f"result of {activation_id}")

    def activation_logs(self, activation_id: str) -> list[str]:
        """The activation's log lines (`<timestamp> stdout: text`); empty when it logged nothing."""
        url = self._url("activations", activation_id, "logs")
        logs = _object(self._call("GET", url, f"logs of {activation_id}"), f"logs of {activation_id}").get("logs", [])
        if not isinstance(logs, list) or not all(isinstance(line, str) for line in logs):
            raise ServerUnavailable(f"logs of {activation_id}: the controller's 'logs' is not a list of strings")
        return logs

    def activations(self, name: str | None = None, limit: int = 30, skip: int = 0,
                    since: int | None = None, upto: int | None = None, docs: bool = False) -> list[dict[str, Any]]:
        """Newest-first activation summaries (full records with `docs=True`)."""
        params: dict[str, Any] = {"limit": limit, "skip": skip, "docs": str(docs).lower()}
        params.update({k: v for k, v in (("name", name), ("since", since), ("upto", upto)) if v is not None})
        resp = self._call("GET", self._url("activations"), "list activations", params=params)
        rows = _json(resp, "list activations")
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ServerUnavailable(f"list activations: HTTP {resp.status_code}: the answer is not a list of "
                                    "activation objects")
        return rows

    def poll(self, activation_id: str, timeout: float, interval: float = 0.5) -> dict[str, Any]:
        """Wait until the activation record exists; raises TimeoutError after `timeout` s."""
        return poll_until(lambda: self.activation(activation_id), timeout, interval, f"activation {activation_id}")

    # -- triggers and rules ---------------------------------------------------------------------

    def put_trigger(self, name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create or update a trigger with default `parameters`; returns the stored trigger."""
        body = {"parameters": [{"key": k, "value": v} for k, v in (parameters or {}).items()]}
        url = self._url("triggers", name)
        return _object(self._call("PUT", url, f"update trigger {name}", params={"overwrite": "true"}, json=body),
                       f"update trigger {name}")

    def fire_trigger(self, name: str, params: dict[str, Any]) -> str | None:
        """Fire; returns the trigger activation id, or None when no rule is active (204).

        A 202 only means the fire was accepted: the rule's action invoke is admitted later and
        may be throttled silently (reference §7.1). Use `invoke` when an event must not be lost.
        """
        resp = self._call("POST", self._url("triggers", name), f"fire trigger {name}", ok=(202, 204), json=params)
        return _activation_id(_object(resp, f"fire trigger {name}"), f"fire trigger {name}") if resp.status_code == 202 else None

    def put_rule(self, name: str, trigger: str, action: str) -> dict[str, Any]:
        """Create or update a rule (created active); trigger and action must exist."""
        ns = self.config.namespace
        body = {"trigger": f"/{ns}/{trigger}", "action": f"/{ns}/{action}"}
        url = self._url("rules", name)
        return _object(self._call("PUT", url, f"update rule {name}", params={"overwrite": "true"}, json=body),
                       f"update rule {name}")

    def set_rule_state(self, name: str, active: bool) -> None:
        """Enable or disable a rule."""
        body = {"status": "active" if active else "inactive"}
        self._call("POST", self._url("rules", name), f"set rule {name}", ok=(200, 202), json=body)


def _json(resp: requests.Response, what: str) -> Any:
    """The JSON of a successful answer; ServerUnavailable when it is not JSON (a proxy's error page,
    a garbled body): not the controller's answer, so the caller's retry rules for an unavailable
    controller apply."""
    try:
        return resp.json()
    except ValueError:
        raise ServerUnavailable(f"{what}: HTTP {resp.status_code}: the answer is not JSON "
                                f"({resp.headers.get('Content-Type', 'no Content-Type')}): {resp.text[:80]!r}") from None


def _object(resp: requests.Response, what: str) -> dict[str, Any]:
    """The JSON object of a successful answer (an action, activation, trigger or rule record)."""
    body = _json(resp, what)
    if not isinstance(body, dict):
        raise ServerUnavailable(f"{what}: HTTP {resp.status_code}: the answer is not a JSON object")
    return body


def _activation_id(body: dict[str, Any], what: str) -> str:
    """The `activationId` an invoke or a fire answers (202)."""
    activation_id = body.get("activationId")
    if not isinstance(activation_id, str) or not activation_id:
        raise ServerUnavailable(f"{what}: the controller's answer has no activationId")
    return activation_id


def _checked(record: dict[str, Any]) -> dict[str, Any]:
    """Return a successful activation record; raise ActivationFailed for the others."""
    response = record.get("response", {})
    if not isinstance(response, dict):
        raise ServerUnavailable(f"activation {record.get('activationId')!r:.60}: the record's 'response' is not an object")
    status = response.get("status", "success")
    if status == "success":
        return record
    error = (response.get("result") or {}).get("error", "no error message") if isinstance(
        response.get("result"), dict) else response.get("result")
    raise ActivationFailed(f"activation {record.get('activationId')} {status}: {error}", status, record)
