"""The Docker-action ("blackbox") protocol: `POST /init` once, then `POST /run` per activation.

OpenWhisk's invoker (and owtrain's local invoker) talk to this server exactly as they talk to the
reference proxies (reference §1.2–1.5): init is accepted once and a second one gets 403; each run
exports the body's context fields as `__OW_*` variables, calls the entry function with `value`,
and answers 200 with a JSON object: the result, or `{"error": …}` for an application error, so
the platform keeps the container warm. After every activation the sentinel line goes to stdout
and stderr, which is how the platform splits back-to-back activations' logs.

The entry runs in a native thread of gevent's pool while a semaphore holds other runs back
(action concurrency is 1): the event loop stays free to answer, and a CPU-bound training loop
never starves it.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any, cast

import gevent.lock
from flask import Flask, Response, request

from actions import DEFAULT_ENTRY
from owtrain.errors import OwtrainError
from owtrain.parse import json_object
from owtrain.rejections import REJECTIONS
from owtrain.wsgi import NoDelayWSGIServer

log = logging.getLogger(__name__)

SENTINEL = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX"
REINIT_ERROR = "Cannot initialize the action more than once."
# OpenWhisk caps a run's payload at 1 MB and an action's code at 48 MB (base64 in /init: 64 MB).
MAX_BODY_BYTES = 64 * 1024 * 1024
Entry = Callable[[dict[str, Any]], Any]


def load_entry(spec: str) -> Entry:
    """Import `package.module:function`; raise ValueError naming the spec if it is not callable."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ValueError(f"entry {spec!r} must look like package.module:function")
    func = getattr(importlib.import_module(module_name), func_name, None)
    if not callable(func):
        raise ValueError(f"entry {spec!r}: {module_name} has no function {func_name!r}")
    return cast(Entry, func)  # a callable the spec names; its signature is the entry's contract


def env_text(value: Any) -> str:
    """Stringify a value the way the invoker does for env: strings as-is, null → "", else compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def write_sentinels() -> None:
    """End one activation's logs on both streams, after everything before it is flushed."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        stream.write(SENTINEL + "\n")
        stream.flush()


def _json(body: Mapping[str, Any], status: int = 200) -> Response:
    if status >= 400:
        REJECTIONS.note(status, "bad_request", request.method, request.path, str(body.get("error", "")))
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _env_safe(name: Any, value: str) -> bool:
    """Whether `name=value` can be an environment variable (os.environ refuses '=' and NUL)."""
    return isinstance(name, str) and bool(name) and "=" not in name and "\0" not in name and "\0" not in value


class ActionRunner:
    """Holds the init state and runs activations one at a time against the entry function."""

    def __init__(self, entry_spec: str = DEFAULT_ENTRY) -> None:
        self.entry_spec = entry_spec
        self.entry: Entry | None = None
        self.initialized = False
        self.run_env_keys: set[str] = set()
        self.lock = gevent.lock.Semaphore(1)

    def init(self, value: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """Export the init `env` map and import the entry; the image carries its own code."""
        if self.initialized:
            return 403, {"error": REINIT_ERROR}
        env = value.get("env") or {}
        if not isinstance(env, Mapping) or not all(_env_safe(k, env_text(v)) for k, v in env.items()):
            return 400, {"error": "init value.env must be an object of environment names (no '=' or NUL) "
                                  "to values (no NUL)"}
        if value.get("code"):
            log.warning("init sent code for %r; this image runs its built-in entry %s and ignores it",
                        value.get("name"), self.entry_spec)
        os.environ.update({str(k): env_text(v) for k, v in env.items()})
        main = value.get("main")
        if isinstance(main, str) and ":" in main:  # `wsk action create --main pkg.module:function`:
            self.entry_spec = main                  # another entry of this image (e.g. serving.action:main)
        try:
            self.entry = load_entry(self.entry_spec)
        except (ImportError, ValueError) as exc:
            log.error("cannot load the action entry: %s", exc)
            return 502, {"error": f"The action failed to load its entry {self.entry_spec}: {exc}"}
        self.initialized = True
        return 200, {"ok": True}

    def run(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """One activation: set `__OW_*` from the body, call the entry, always return an object."""
        if not all(_env_safe(k, env_text(v)) for k, v in body.items() if k != "value"):
            return {"error": "run body context fields must be names (no '=' or NUL) with values (no NUL)"}
        self._export_context(body)
        value = body.get("value", {})
        if not isinstance(value, dict):
            return {"error": f"action parameters must be a JSON object, got {type(value).__name__}"}
        if self.entry is None:
            return {"error": "no action defined yet: POST /init first"}
        try:
            result = self.entry(value)
        except OwtrainError as exc:  # refused on purpose (bad parameters, a hostile shard): no traceback
            log.warning("activation failed: %s: %s", type(exc).__name__, exc)
            return {"error": f"{type(exc).__name__}: {exc}"}
        except Exception as exc:  # a bug: report it with its traceback, keep the container warm
            traceback.print_exc()
            return {"error": f"{type(exc).__name__}: {exc}"}
        if not isinstance(result, dict):
            return {"error": f"the action returned a {type(result).__name__}, not a JSON object"}
        try:
            json.dumps(result)
        except (TypeError, ValueError) as exc:
            return {"error": f"the action's result is not JSON-serialisable: {exc}"}
        return result

    def _export_context(self, body: Mapping[str, Any]) -> None:
        """`__OW_<KEY>` for every context field; fields absent this time (e.g. api_key) are removed."""
        keys = {f"__OW_{k.upper()}": env_text(v) for k, v in body.items() if k != "value"}
        for stale in self.run_env_keys - keys.keys():
            os.environ.pop(stale, None)
        os.environ.update(keys)
        self.run_env_keys = set(keys)


def create_app(runner: ActionRunner) -> Flask:
    """The Flask app with `/init` and `/run` bound to `runner`."""
    app = Flask("owtrain-action")
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # Flask answers 413 above it

    def body_object() -> dict[str, Any] | None:
        return json_object(request.get_data(cache=False))

    @app.post("/init")
    def init() -> Response:
        body = body_object()
        value = body.get("value", {}) if body is not None else None
        if not isinstance(value, dict):
            status, reply = 400, {"error": "init body must be a JSON object {\"value\": {...}}"}
        else:
            status, reply = runner.init(value)
        if status != 200:
            write_sentinels()
        return _json(reply, status)

    @app.post("/run")
    def run() -> Response:
        body = body_object()
        if body is None:
            return _json({"error": "run body must be a JSON object {\"value\": {...}, ...}"}, 400)
        with runner.lock:
            try:
                result = gevent.get_hub().threadpool.apply(runner.run, (body,))
            finally:
                write_sentinels()
        return _json(result)

    return app


def preload(entry_spec: str) -> None:
    """Import the entry's module before listening, so that `/init` does not pay for it.

    The heavy part of a cold start is `import torch` (about 2 s); done here, it overlaps with
    whatever the platform does before it sends `/init`, and a pre-warmed container (the local
    invoker's stem cells) is ready to train the moment it is assigned. A module that fails to
    import is reported by `/init` with the usual 502, so this only logs.
    """
    try:
        load_entry(entry_spec)
    except (ImportError, ValueError) as exc:
        log.warning("cannot preload the action entry %s (POST /init will report it): %s", entry_spec, exc)


def serve(host: str, port: int, entry_spec: str = DEFAULT_ENTRY) -> None:
    """Import the entry, then serve the protocol until the process is stopped."""
    preload(entry_spec)
    server = NoDelayWSGIServer((host, port), create_app(ActionRunner(entry_spec)), log=None, error_log=log)
    log.info("action server on http://%s:%d (entry %s)", host, port, entry_spec)
    server.serve_forever()
