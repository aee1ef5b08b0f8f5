"""HTTP routes of the prediction server (TensorFlow Serving's REST shape): identify and admit the
caller, decode and validate the body, pick the version, predict, encode.

    POST /v1/models/{name}:predict                   routed: stable, or the canary for its share
    POST /v1/models/{name}/versions/{v}:predict      one version
    POST /v1/models/{name}/labels/{label}:predict    the version a label names
    GET  /v1/models/{name}[/versions/{v}]            version status;  GET /v1/models/{name}/metadata
    GET  /metrics (Prometheus), /api/stats (JSON), /panel (the serving panel), /healthz

Bodies are JSON (`instances` or `inputs`, see `serving.inputs`) or one raw PNG / `.npy` instance
(`Content-Type: image/png` or `application/x-npy`). Every error is JSON `{"error", "reason"}` with
a 4xx status, logged as one line without a traceback.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

import gevent
from flask import Flask, Response, jsonify, request, send_from_directory
from werkzeug.exceptions import HTTPException

from owtrain.errors import (
    BadRequest,
    Forbidden,
    ObjectMissing,
    OwtrainError,
    PayloadTooLarge,
    Throttled,
    Unauthorized,
)
from owtrain.parse import json_object
from owtrain.rejections import REJECTIONS
from serving.config import ServeConfig
from serving.inputs import binary_instance, parse_request
from serving.limits import CallerLimits
from serving.predictor import Predictor

log = logging.getLogger(__name__)

ERRORS: dict[type[OwtrainError], tuple[int, str]] = {
    BadRequest: (400, "bad_request"), Unauthorized: (401, "unauthorized"), Forbidden: (403, "forbidden"),
    ObjectMissing: (404, "not_found"), PayloadTooLarge: (413, "too_large"), Throttled: (429, "throttled"),
}
PANEL_VENDOR = ("uPlot.iife.min.js", "uPlot.min.css")
BINARY_TYPES = ("image/png", "application/x-npy", "application/octet-stream")
# name[/versions/V | /labels/L][:predict | :observe | /metadata]
PATH = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                  r"(?P<verb>:predict|:observe|/metadata)?$")


def error_response(exc: OwtrainError) -> Response:
    """The JSON answer for a typed error (429 with Retry-After in whole seconds)."""
    status, reason = next((v for k, v in ERRORS.items() if isinstance(exc, k)), (503, "unavailable"))
    resp = jsonify({"error": str(exc), "reason": reason})
    resp.status_code = status
    if isinstance(exc, Throttled):
        resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    return resp


Receiver = Callable[[str | None, Any], dict[str, Any]]  # (Authorization header, JSON body) -> answer


def create_app(cfg: ServeConfig, predictor: Predictor, limits: CallerLimits, events: Receiver | None = None) -> Flask:
    """The app; `events` is the event bridge's webhook handler when event-driven inference is on."""
    app = Flask("owtrain-serving")
    app.config["MAX_CONTENT_LENGTH"] = cfg.max_body_bytes
    live, metrics = predictor.live, predictor.metrics
    panel_html = resources.files("serving").joinpath("panel.html").read_text(encoding="utf-8")

    @app.errorhandler(OwtrainError)
    def owtrain_error(exc: OwtrainError) -> Response:
        resp = error_response(exc)
        REJECTIONS.note(resp.status_code, resp.json["reason"], request.method, request.path, str(exc))  # type: ignore[index]
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code == 413:
            message = (f"request body is over this server's limit of {cfg.max_body_bytes} bytes; "
                       f"send fewer instances per request (at most {cfg.max_instances}) or PNGs")
        else:
            message = exc.description or exc.name
        reason = (exc.name or "http").lower().replace(" ", "_")
        REJECTIONS.note(exc.code or 400, reason, request.method, request.path, str(message))
        resp = jsonify({"error": message, "reason": reason})
        resp.status_code = exc.code or 400
        return resp

    @app.route("/v1/models/<path:rest>", methods=["GET", "POST"])
    def models(rest: str) -> Response:
        match = PATH.match(rest)
        if match is None:
            raise ObjectMissing(f"no such endpoint /v1/models/{rest}; see /v1/models/NAME[:predict|/metadata]")
        name, verb = match["name"], match["verb"]
        version = _version(match["version"]) if match["version"] is not None else None
        if verb == ":predict":
            if request.method != "POST":
                raise BadRequest(":predict takes POST")
            return predict(name, version, match["label"])
        if verb == ":observe" and request.method == "POST" and match["version"] is None and match["label"] is None:
            return observe(name)
        if request.method != "GET" or verb == ":observe":
            raise BadRequest(f"/v1/models/{rest} takes GET (POST NAME:predict, POST NAME:observe)")
        if match["label"] is not None:
            raise ObjectMissing("labels are only for :predict; GET /v1/models/NAME shows them")
        if verb == "/metadata":
            loaded = predictor.resolve(name, "metadata", version)
            meta = loaded.served.meta
            return jsonify({"model_spec": {"name": name, "version": str(loaded.served.version)},
                            "metadata": meta.signature.metadata(), "architecture": meta.model,
                            "scores": meta.scores})
        status = live.status(name)
        if version is not None:
            status["model_version_status"] = [r for r in status["model_version_status"] if r["version"] == str(version)]
            if not status["model_version_status"]:
                raise ObjectMissing(f"model {name!r} has no version {version}")
        return jsonify(status)

    def observe(name: str) -> Response:
        """Exp3 feedback: {"version": V, "reward": R in [0, 1]} for an answer that version gave."""
        if predictor.bandit is None:
            raise BadRequest("this server selects by labels; start it with --selection exp3 to take feedback")
        limits.admit(limits.identify(request.headers.get("Authorization"), request.remote_addr))
        body = json_object(request.get_data(cache=False))
        version = body.get("version") if body else None
        if body is None or isinstance(version, bool) or not isinstance(version, int):
            raise BadRequest('the body must be {"version": <int>, "reward": <number in [0, 1]>}')
        probs = predictor.bandit.observe(name, version, body.get("reward"), sorted(live.entry(name).versions))
        return jsonify({"model": name, "probabilities": {str(v): p for v, p in probs.items()}})

    def predict(name: str, version: int | None, label: str | None) -> Response:
        start = time.perf_counter()
        code = 200
        try:
            caller = limits.identify(request.headers.get("Authorization"), request.remote_addr)
            limits.admit(caller)
            loaded = predictor.resolve(name, caller.id, version, label)
            sig = loaded.served.meta.signature
            if request.mimetype in BINARY_TYPES:
                data = request.get_data(cache=False)
                rows = gevent.get_hub().threadpool.apply(binary_instance, (data, sig))[None]
            else:
                body = json_object(request.get_data(cache=False))
                if body is None:
                    raise BadRequest("the body is not a strict JSON object (NaN and Infinity are not JSON numbers); "
                                     "send instances or inputs, or a raw PNG / .npy with its Content-Type")
                rows = gevent.get_hub().threadpool.apply(parse_request, (body, sig, cfg.max_instances))
            probs = predictor.predict(loaded, rows)
            resp = jsonify(predictor.answer(loaded, probs))
            resp.headers["X-Model-Version"] = str(loaded.served.version)
            return resp
        except OwtrainError as exc:
            code = error_response(exc).status_code
            raise
        except HTTPException as exc:
            code = exc.code or 400
            raise
        finally:
            metrics.request(name, code, time.perf_counter() - start if code == 200 else None)

    @app.get("/metrics")
    def prometheus() -> Response:
        metrics.queues(live.queues())
        return Response(metrics.text(), content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/api/stats")
    def stats() -> Response:
        body: dict[str, Any] = metrics.snapshot()
        body["models"] = {n: live.status(n) for n in live.names()}
        body["cache"] = {"hits": predictor.cache.hits, "misses": predictor.cache.misses,
                         "entries": len(predictor.cache), "capacity": predictor.cache.capacity}
        body["repository"] = live.repo.describe()
        return jsonify(body)

    @app.get("/api/history")
    def history() -> Response:
        try:
            since = float(request.args.get("since", "0"))
        except ValueError:
            raise BadRequest("since must be a Unix time in seconds, e.g. ?since=0") from None
        return jsonify(metrics.history_since(since if math.isfinite(since) else 0.0))

    @app.get("/panel")
    def panel() -> Response:
        return Response(panel_html, content_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    @app.get("/panel/vendor/<name>")
    def panel_vendor(name: str) -> Response:
        """The uPlot library the parameter server's dashboard vendors (one copy in the tree)."""
        from param_server.dashboard import STATIC_DIR  # here: the predict action never serves the panel

        if name not in PANEL_VENDOR:
            raise ObjectMissing(f"no panel asset {name!r}")
        return send_from_directory(STATIC_DIR / "vendor", name, max_age=3600)

    @app.post("/events")
    def webhook() -> Response:
        if events is None:
            raise ObjectMissing("this server runs no event-driven inference (start it with --events-bucket)")
        return jsonify(events(request.headers.get("Authorization"), json_object(request.get_data(cache=False))))

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"ok": True, "models": live.names()})

    return app


def _version(text: str) -> int:
    if not text.isdigit():
        raise BadRequest(f"a version is a positive integer, got {text!r}")
    return int(text)
