"""The Python client of the parameter server (docs/architecture.md, Contract 2).

Used by the action worker, the driver and the CLI. Every call has a timeout, retries connection
errors, 5xx and 429 through `owtrain.retry.retry_call` (honouring `Retry-After`), and turns error
answers into the typed errors of `owtrain.errors`, so callers never look at status codes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import torch

from owtrain.codec import CONTENT_TYPE, decode_tensors, encode_tensors
from owtrain.errors import BadTensor, JobClosed, OwtrainError, ServerUnavailable, StaleUpdate
from owtrain.http_errors import status_error
from owtrain.parse import json_object
from owtrain.retry import RetryPolicy, retry_call

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_STATUSES = (502, 503, 504)
DEFAULT_POLICY = RetryPolicy()


@dataclass(frozen=True)
class PushResult:
    """The server's answer to a push: `applied`, `accepted` (buffered for a sync round) or
    `duplicate` (this (worker, seq) was already taken); `refresh` says pull before continuing."""

    status: str
    version: int
    staleness: int
    refresh: bool


class PSClient:
    """A session with one parameter server as one worker (or admin), identified by `token`."""

    def __init__(self, base_url: str, token: str, timeout: float = 10, policy: RetryPolicy = DEFAULT_POLICY,
                 verify: bool | str = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.policy = policy
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        # passed on every request: requests lets $REQUESTS_CA_BUNDLE override a session's `verify`
        self.verify = verify
        if verify is False:
            log.warning("TLS certificate verification is OFF for %s", self.base_url)

    def register(self, worker: str) -> dict[str, Any]:
        """Announce `worker`; returns model name, classes, input shape, strategy, job and version."""
        return self._object("POST", "/registerWorker", json={"worker": worker})

    def unregister(self, worker: str) -> None:
        """Tell the server `worker` is done (it stays in /status as inactive)."""
        self._call("POST", "/unregisterWorker", json={"worker": worker})

    def report_phases(self, worker: str, phases: Mapping[str, Mapping[str, float]], wall_s: float) -> None:
        """Tell the server where one activation of `worker` spent its time (`owtrain.phases`).
        One attempt with a short timeout: it is telemetry, never worth holding an activation back."""
        self._call("POST", "/reportPhases", json={"worker": worker, "phases": dict(phases), "wall_s": wall_s},
                   timeout=min(self.timeout, 2.0), policy=RetryPolicy(attempts=1))

    def version(self) -> int:
        """The server's current model version."""
        return _field(self._object("GET", "/getVersion"), "version", int, self.base_url + "/getVersion")

    def pull(self, have: int | None, wait: float = 0) -> tuple[int, dict[str, torch.Tensor]] | None:
        """(version, parameters), or None when `have` is still the latest after waiting up to `wait` s."""
        params: dict[str, Any] = {"wait": wait}
        if have is not None:
            params["have"] = have
        resp = self._call("GET", "/getParameter", params=params, timeout=self.timeout + wait)
        if resp.status_code == 304:
            return None
        tensors, meta = decode_tensors(resp.content)
        return int(meta.get("version", resp.headers.get("X-Owtrain-Version", -1))), tensors

    def push(self, tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> PushResult:
        """Send one update; `meta` carries worker, seq, base_version, kind, compression, samples, loss.

        A retry after a lost answer is safe: the server applies each (worker, seq) once.
        """
        body = encode_tensors(tensors, {k: str(v) for k, v in meta.items()})
        data = self._object("POST", "/putGradient", data=body, headers={"Content-Type": CONTENT_TYPE})
        where = self.base_url + "/putGradient"
        return PushResult(_field(data, "status", str, where), _field(data, "version", int, where),
                          _field(data, "staleness", int, where), bool(data.get("refresh")))

    def shard_plan(self) -> dict[str, Any]:
        """`{index, shards, digest, plan}`: which part of the model this server holds (owtrain.shard_plan)."""
        return self._object("GET", "/shardPlan")

    def accuracy(self) -> dict[str, Any]:
        """`{version, accuracy, loss, evaluated_version, time}` (accuracy None until evaluated)."""
        return self._object("GET", "/getAccuracy")

    def status(self) -> dict[str, Any]:
        """The server's status JSON (version, workers, update counts, staleness, history)."""
        return self._object("GET", "/status")

    def history(self, since: float = 0) -> dict[str, list[Any]]:
        """`/api/history` from `since` (Unix seconds): one array per field (time, version, loss, …)."""
        return self._object("GET", "/api/history", params={"since": since}, timeout=max(self.timeout, 30))

    def answers(self) -> bool:
        """Whether the server answers at all right now: one short attempt, no retries and no log line
        (for waiting on a server that is starting)."""
        try:
            self.session.get(self.base_url + "/getVersion", timeout=2, verify=self.verify)
            return True
        except requests.RequestException:
            return False

    def admin(self, action: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """`POST /admin/<action>` (checkpoint, rollback, close, stop); needs the admin token."""
        return self._object("POST", f"/admin/{action}", json=dict(body or {}))

    def close(self) -> None:
        self.session.close()

    def _object(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        """The JSON object a successful call answers; ServerUnavailable when the answer is anything
        else (a proxy's HTML page, a cut or garbled body): not our server's answer, maybe for a while."""
        resp = self._call(method, path, **kw)
        body = json_object(resp.content)
        if body is None:
            raise ServerUnavailable(f"parameter server {self.base_url}: {method} {path} answered {resp.status_code} "
                                    f"with {len(resp.content)} bytes that are not a JSON object "
                                    f"({resp.headers.get('Content-Type', 'no Content-Type')})")
        return body

    def _call(self, method: str, path: str, timeout: float | None = None, policy: RetryPolicy | None = None,
              **kw: Any) -> requests.Response:
        url = self.base_url + path

        def attempt() -> requests.Response:
            try:
                resp = self.session.request(method, url, timeout=timeout or self.timeout, verify=self.verify, **kw)
            except requests.Timeout as exc:
                raise TimeoutError(f"{method} {url} timed out: {exc}") from exc
            except requests.ConnectionError as exc:
                raise ConnectionError(f"{method} {url} failed to connect: {exc}") from exc
            except requests.exceptions.ChunkedEncodingError as exc:  # the connection broke mid-body
                raise ConnectionError(f"{method} {url}: the answer was cut short: {exc}") from exc
            if resp.status_code in RETRY_STATUSES:
                raise ConnectionError(f"{method} {url} answered {resp.status_code}")
            if resp.status_code >= 400:
                raise _error(resp)
            return resp

        try:
            return retry_call(attempt, policy or self.policy, what=f"{method} {path}")
        except (ConnectionError, TimeoutError) as exc:
            raise ServerUnavailable(f"parameter server {self.base_url} unavailable: {exc}") from exc


def _error(resp: requests.Response) -> OwtrainError:
    """The typed error for an error answer (JSON `{"error", "reason", ...}`)."""
    try:
        body = resp.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    msg = body.get("error") or f"HTTP {resp.status_code}: {resp.text[:200]}"
    code = resp.status_code
    if code == 400 and body.get("tensor"):
        return BadTensor(body["tensor"], msg)
    if code == 409:
        return StaleUpdate(msg, int(body.get("version", -1)))
    if code == 410:
        return JobClosed(msg)
    return status_error(resp, msg) or OwtrainError(f"parameter server error {code}: {msg}")


def _field(body: Mapping[str, Any], name: str, kind: type[T], where: str) -> T:
    """A field of a server's answer; ServerUnavailable when it is missing or of another type."""
    value = body.get(name)
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        article = "an" if kind.__name__[0] in "aeiou" else "a"
        raise ServerUnavailable(f"{where} answered without {article} {kind.__name__} {name!r} (got {value!r:.40})")
    return value
