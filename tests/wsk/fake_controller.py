"""A fake OpenWhisk controller: a real HTTP server on loopback that checks every request against
the official swagger (tests/data/openwhisk-apiv1-swagger.json) and answers as the reference's
§2-3 say the real controller does (202 after the blocking wait, 502 for failed activations, 429
over the quota, the trigger-fire trap), recording each request for the tests' assertions.

A request that breaks the spec gets 400 and is added to `violations`; the fixture fails the test
when any were seen, so every client call in every test is validated.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema

SWAGGER = json.loads((Path(__file__).resolve().parents[1] / "data" / "openwhisk-apiv1-swagger.json").read_text())
GUEST_AUTH = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:123zO3xZCLrMN6v2BKK1dXYFpXlPkccOFqm12CdAsMgRU4VrNZ9lyGVCGuMDGIwP"
STATUS_CODES = {"success": 0, "application error": 1, "action developer error": 2, "whisk internal error": 3}

# An action implementation: params -> (status, result); it may sleep to take time.
ActionImpl = Callable[[dict], tuple[str, Any]]


def _echo(params: dict) -> tuple[str, Any]:
    return "success", {"echo": params}


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    time: float


@dataclass
class _Route:
    template: str
    regex: re.Pattern
    names: list[str]


def _routes() -> list[_Route]:
    routes = []
    for template in SWAGGER["paths"]:
        names = re.findall(r"{(\w+)}", template)
        pattern = re.sub(r"{\w+}", "([^/]+)", template.replace(".", r"\."))
        routes.append(_Route(template, re.compile(f"^{pattern}$"), names))
    # Most specific (most literal characters) first: /actions/{a} before /actions/{p}/{a}.
    return sorted(routes, key=lambda r: (len(r.names), -len(r.template)))


def _check_simple(param: dict, raw: str) -> str | None:
    kind = param.get("type", "string")
    if kind == "integer":
        try:
            int(raw)
        except ValueError:
            return f"{param['name']}={raw!r} is not an integer"
    if kind == "boolean" and raw not in ("true", "false"):
        return f"{param['name']}={raw!r} is not a boolean"
    if "enum" in param and raw not in param["enum"]:
        return f"{param['name']}={raw!r} not in {param['enum']}"
    return None


def validate(method: str, path: str, query: dict[str, str], body: Any, has_body: bool) -> tuple[str, dict[str, str]]:
    """Check one request against the swagger; return (path template, path params).

    Raises ValueError naming the first violation.
    """
    for route in _routes():
        match = route.regex.match(path)
        if not match:
            continue
        ops = SWAGGER["paths"][route.template]
        op = ops.get(method.lower())
        if op is None:
            continue
        values = dict(zip(route.names, (unquote(v) for v in match.groups()), strict=True))
        params = ops.get("parameters", []) + op.get("parameters", [])
        declared_query = {p["name"]: p for p in params if p.get("in") == "query"}
        for name, raw in query.items():
            if name not in declared_query:
                raise ValueError(f"{method} {route.template}: undeclared query parameter {name!r}")
            problem = _check_simple(declared_query[name], raw)
            if problem:
                raise ValueError(f"{method} {route.template}: {problem}")
        for p in params:
            if p.get("in") == "path" and not values.get(p["name"]):
                raise ValueError(f"{method} {route.template}: empty path parameter {p['name']}")
            if p.get("in") == "body":
                if not has_body:
                    if p.get("required"):
                        raise ValueError(f"{method} {route.template}: missing required body")
                    continue
                schema = {**p["schema"], "definitions": SWAGGER["definitions"]}
                try:
                    jsonschema.validate(body, schema)
                except jsonschema.ValidationError as exc:
                    raise ValueError(f"{method} {route.template}: body: {exc.message}") from exc
        if has_body and not any(p.get("in") == "body" for p in params):
            raise ValueError(f"{method} {route.template}: takes no body")
        return route.template, values
    raise ValueError(f"{method} {path}: no such operation in the OpenWhisk API")


@dataclass
class FakeController:
    """State and knobs of the fake controller (change the knobs from tests)."""

    url: str = ""
    auth: str = GUEST_AUTH
    impl: ActionImpl = _echo
    per_minute: int = 10_000
    concurrent: int = 10_000
    fires_per_minute: int = 10_000
    window_s: float = 60.0
    blocking_wait_s: float = 60.0
    force_429: int = 0  # throttle this many next action invokes (direct or by a rule) regardless of the quota
    requests: list[Recorded] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    actions: dict[str, dict] = field(default_factory=dict)
    triggers: dict[str, dict] = field(default_factory=dict)
    rules: dict[str, dict] = field(default_factory=dict)
    activations: dict[str, dict] = field(default_factory=dict)
    running: set[str] = field(default_factory=set)
    invoke_times: deque = field(default_factory=deque)
    fire_times: deque = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def invocations(self, action: str | None = None) -> list[Recorded]:
        """Accepted (202/200/502) invoke requests, optionally of one action."""
        return [r for r in self.requests if r.method == "POST" and "/actions/" in r.path
                and r.status in (200, 202, 500, 502) and (action is None or r.path.endswith("/" + action))]

    # -- activations ---------------------------------------------------------------------------

    def _admit(self, times: deque, limit: int, concurrent: bool) -> str | None:
        now = time.monotonic()
        while times and now - times[0] > self.window_s:
            times.popleft()
        if concurrent and self.force_429 > 0:  # action invokes only, not trigger fires
            self.force_429 -= 1
            return "Too many requests in the last minute (count: forced, allowed: 0)."
        if len(times) >= limit:
            return f"Too many requests in the last minute (count: {len(times)}, allowed: {limit})."
        if concurrent and len(self.running) >= self.concurrent:
            return f"Too many concurrent requests in flight (count: {len(self.running)}, allowed: {self.concurrent})."
        times.append(now)
        return None

    def start(self, name: str, params: dict, cause: str | None = None) -> str | None:
        """Admit and start an activation; returns its id, or None when throttled (429)."""
        with self.lock:
            if self._admit(self.invoke_times, self.per_minute, concurrent=True):
                return None
            activation_id = uuid.uuid4().hex
            self.running.add(activation_id)
        threading.Thread(target=self._run, args=(activation_id, name, params, cause), daemon=True).start()
        return activation_id

    def _run(self, activation_id: str, name: str, params: dict, cause: str | None) -> None:
        start = int(time.time() * 1000)
        try:
            status, result = self.impl(dict(params))
        except Exception as exc:  # a crashing fake action is a developer error, as in OpenWhisk
            status, result = "action developer error", {"error": f"The action crashed: {exc}"}
        end = int(time.time() * 1000)
        record = {
            "activationId": activation_id, "namespace": "guest", "name": name.split("/")[-1],
            "subject": "guest", "version": "0.0.1", "publish": False, "start": start, "end": end,
            "duration": end - start, "logs": [f"{time.strftime('%Y-%m-%dT%H:%M:%S')}.000000000Z stdout: ran"],
            "annotations": [{"key": "path", "value": f"guest/{name}"}, {"key": "kind", "value": "blackbox"}],
            "response": {"status": status, "statusCode": STATUS_CODES[status], "success": status == "success",
                         "result": result, "size": len(json.dumps(result))},
        }
        if cause:
            record["cause"] = cause
        with self.lock:
            self.activations[activation_id] = record
            self.running.discard(activation_id)

    def wait(self, activation_id: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if activation_id in self.activations:
                return self.activations[activation_id]
            time.sleep(0.01)
        return None

    def fire(self, trigger: str, params: dict) -> tuple[int, Any]:
        """Fire as the controller does: 202 first, rules invoked afterwards (and maybe dropped)."""
        with self.lock:
            problem = self._admit(self.fire_times, self.fires_per_minute, concurrent=False)
        if problem:
            return 429, {"error": problem, "code": "fake"}
        active = [r for r in self.rules.values() if r["trigger"].endswith("/" + trigger) and r["status"] == "active"]
        if not active:
            return 204, None
        trigger_id = uuid.uuid4().hex
        logs = []
        for rule in active:
            action = rule["action"].split("/")[-1]
            started = self.start(action, params, cause=trigger_id)
            entry = {"rule": f"guest/{rule['name']}", "action": f"guest/{action}"}
            if started:
                entry.update(statusCode=0, success=True, activationId=started)
            else:  # the trap: the fire was accepted, the rule's invoke is silently dropped
                entry.update(statusCode=1, success=False, error="Too many requests in the last minute.")
            logs.append(json.dumps(entry))
        now = int(time.time() * 1000)
        self.activations[trigger_id] = {
            "activationId": trigger_id, "namespace": "guest", "name": trigger, "subject": "guest",
            "version": "0.0.1", "publish": False, "start": now, "end": now, "logs": logs,
            "response": {"status": "success", "statusCode": 0, "success": True, "result": params}}
        return 202, {"activationId": trigger_id}


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _reply(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        # Recorded before the reply is written: a client that got its answer finds the record, and a
        # client that died waiting (SIGKILL) still leaves the accepted request on record.
        ctl, path, query, request_body = self._context
        ctl.requests.append(Recorded(self.command, path, query, request_body, status, time.monotonic()))
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        ctl = self.server.controller
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body: Any = None
        self._context = (ctl, parts.path, query, raw.decode(errors="replace"))
        try:
            body = json.loads(raw) if raw else None
            self._context = (ctl, parts.path, query, body)
            if not parts.path.startswith("/api/v1/"):
                raise ValueError(f"{self.command} {parts.path}: outside basePath /api/v1")
            template, values = validate(self.command, parts.path[len("/api/v1"):], query, body, bool(raw))
        except ValueError as exc:
            ctl.violations.append(str(exc))
            self._reply(400, {"error": f"spec violation: {exc}", "code": "fake"})
            return
        expected = "Basic " + base64.b64encode(ctl.auth.encode()).decode()
        try:
            if self.headers.get("Authorization") != expected:
                self._reply(401, {"error": "The supplied authentication is invalid", "code": "fake"})
            else:
                self._dispatch(ctl, template, values, query, body)
        except OSError:  # the client went away (e.g. SIGKILLed) after we accepted the request
            pass

    do_GET = do_PUT = do_POST = do_DELETE = _handle

    def _dispatch(self, ctl: FakeController, template: str, v: dict[str, str], query: dict, body: Any) -> None:
        method = self.command
        if "/activations" in template:
            return self._activations(ctl, template, v, query)
        kind = template.split("/")[3]  # actions | triggers | rules | packages
        name = "/".join(x for x in (v.get("packageName"), v.get("actionName") or v.get("triggerName")
                                     or v.get("ruleName")) if x)
        store: dict = {"actions": ctl.actions, "triggers": ctl.triggers, "rules": ctl.rules}.get(kind, {})
        if method == "PUT":
            if name in store and query.get("overwrite") != "true":
                return self._reply(409, {"error": "resource already exists", "code": "fake"})
            if kind == "rules":
                if body["trigger"].split("/")[-1] not in ctl.triggers or body["action"].split("/")[-1] not in ctl.actions:
                    return self._reply(400, {"error": "trigger or action does not exist", "code": "fake"})
                body = {**body, "status": "active"}
            store[name] = {**body, "name": name, "namespace": "guest", "version": "0.0.1", "publish": False}
            return self._reply(200, store[name])
        if name not in store:
            return self._reply(404, {"error": "The requested resource does not exist.", "code": "fake"})
        if method == "GET":
            return self._reply(200, store[name])
        if method == "DELETE":
            return self._reply(200, store.pop(name))
        if kind == "rules":
            store[name]["status"] = body["status"]
            return self._reply(200)
        if kind == "triggers":
            status, answer = ctl.fire(name, body or {})
            return self._reply(status, answer)
        return self._invoke(ctl, name, query, body or {})

    def _invoke(self, ctl: FakeController, name: str, query: dict, params: dict) -> None:
        activation_id = ctl.start(name, params)
        if activation_id is None:
            return self._reply(429, {"error": "Too many requests in the last minute.", "code": "fake"})
        header = {"x-openwhisk-activation-id": activation_id}
        if query.get("blocking") != "true":
            return self._reply(202, {"activationId": activation_id}, header)
        wait = min(int(query.get("timeout", "60000")) / 1000, ctl.blocking_wait_s)
        record = ctl.wait(activation_id, wait)
        if record is None:
            return self._reply(202, {"activationId": activation_id}, header)
        status = record["response"]["status"]
        code = {"success": 200, "whisk internal error": 500}.get(status, 502)
        self._reply(code, record["response"]["result"] if query.get("result") == "true" else record, header)

    def _activations(self, ctl: FakeController, template: str, v: dict[str, str], query: dict) -> None:
        if template.endswith("/activations"):
            records = sorted(ctl.activations.values(), key=lambda r: -r["start"])
            if query.get("name"):
                records = [r for r in records if r["name"] == query["name"]]
            skip, limit = int(query.get("skip", 0)), int(query.get("limit", 30)) or 200
            return self._reply(200, records[skip:skip + limit])
        record = ctl.activations.get(v["activationid"])
        if record is None:
            return self._reply(404, {"error": "The requested resource does not exist.", "code": "fake"})
        if template.endswith("/logs"):
            return self._reply(200, {"logs": record["logs"]})
        if template.endswith("/result"):
            return self._reply(200, record["response"])
        return self._reply(200, record)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    controller: FakeController


def serve(port: int) -> tuple[FakeController, _Server]:
    """Start a fake controller on 127.0.0.1:`port` in a background thread."""
    server = _Server(("127.0.0.1", port), _Handler)
    server.controller = FakeController(url=f"http://127.0.0.1:{port}")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.controller, server
