"""HTTP routes: authenticate, admit, decode, hand to the core on the apply thread, encode.

Every error is JSON `{"error", "reason"}` with a precise status (see `ERRORS`). Tensor bodies are
safetensors; nothing is unpickled. Decoding and validation run on gevent's thread pool and the
model step on the apply thread, so the event loop only moves bytes.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import gevent
from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from owtrain import codec
from owtrain.compression import decompress
from owtrain.errors import (
    BadRequest,
    BadTensor,
    CheckpointCorrupt,
    Forbidden,
    JobClosed,
    ObjectMissing,
    OwtrainError,
    PayloadTooLarge,
    StaleUpdate,
    Throttled,
    Unauthorized,
)
from owtrain.parse import MAX_SAMPLES, json_int, json_object, parse_int
from owtrain.phases import parse_report
from owtrain.rejections import REJECTIONS
from param_server.auth import ADMIN, Claims, bearer, verify_token
from param_server.dashboard import dashboard_bp
from param_server.runtime import Runtime
from param_server.shard_routes import shard_blueprint
from param_server.strategies import Update

log = logging.getLogger(__name__)

# error class → (HTTP status, reason code)
ERRORS: dict[type[OwtrainError], tuple[int, str]] = {
    BadTensor: (400, "bad_tensor"),
    BadRequest: (400, "bad_request"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    ObjectMissing: (404, "not_found"),
    StaleUpdate: (409, "stale"),
    JobClosed: (410, "closed"),
    PayloadTooLarge: (413, "too_large"),
    Throttled: (429, "throttled"),
    CheckpointCorrupt: (500, "checkpoint_corrupt"),
}
PUSH_KINDS = ("grad", "delta")


def create_app(rt: Runtime) -> Flask:
    """The Flask app for one `Runtime` (routes below, plus the dashboard blueprint)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = rt.cfg.max_body_bytes
    app.register_blueprint(dashboard_bp)
    cfg, core, tel = rt.cfg, rt.core, rt.telemetry

    def claims(admin: bool = False) -> Claims:
        c = verify_token(cfg.secret, cfg.job, bearer(request.headers.get("Authorization")))
        if admin and c.worker != ADMIN:
            raise Forbidden("this call needs the admin token (a token whose worker is 'admin')")
        g.worker = c.worker
        if not admin:
            tel.touch(c.worker)
        return c

    def open_read() -> None:
        if not cfg.open_reads:
            claims()

    app.register_blueprint(shard_blueprint(rt.shard, open_read))

    def json_body() -> dict[str, Any]:
        body = json_object(request.get_data(cache=True))
        if body is None:
            raise BadRequest("request body must be a JSON object")
        return body

    def own_worker(c: Claims, named: Any) -> str:
        if named is not None and str(named) != c.worker:
            raise Forbidden(f"token is for worker {c.worker!r}, request names {named!r}")
        return c.worker

    @app.errorhandler(OwtrainError)
    def owtrain_error(exc: OwtrainError) -> Response:
        status, reason = next((v for k, v in ERRORS.items() if isinstance(exc, k)), (500, "internal"))
        body: dict[str, Any] = {"error": str(exc), "reason": reason}
        if isinstance(exc, BadTensor):
            body["tensor"] = exc.name
        if isinstance(exc, StaleUpdate):
            body["version"] = exc.current_version
            body["refresh"] = True
        resp = jsonify(body)
        resp.status_code = status
        if isinstance(exc, Throttled):
            resp.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
        if request.path == "/putGradient":
            tel.reject(reason)
        REJECTIONS.note(status, reason, request.method, request.path, str(exc))
        return resp

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        reason = "too_large" if exc.code == 413 else (exc.name or "http").lower().replace(" ", "_")
        if exc.code == 413 and request.path == "/putGradient":
            tel.reject(reason)
        message = (f"request body is over this server's limit of {cfg.max_body_bytes} bytes (--max-body-mb); "
                   "send a smaller or compressed update" if exc.code == 413 else exc.description)
        resp = jsonify({"error": message, "reason": reason})
        resp.status_code = exc.code or 500
        REJECTIONS.note(resp.status_code, reason, request.method, request.path, message or "")
        return resp

    @app.get("/getVersion")
    def get_version() -> Response:
        open_read()
        return jsonify({"version": rt.latest().version, "job": cfg.job})

    @app.get("/getParameter")
    def get_parameter() -> Response:
        claims()
        have = _int_arg("have")
        wait = min(max(_float_arg("wait", 0.0), 0.0), cfg.max_wait_s)
        snap = rt.latest()
        deadline = time.monotonic() + wait
        while snap.version == have and time.monotonic() < deadline:
            rt.watch.wait(deadline - time.monotonic())
            snap = rt.latest()
        if snap.version == have:
            return Response(status=304, headers={"X-Owtrain-Version": str(snap.version)})
        body = gevent.get_hub().threadpool.apply(snap.body)  # encodes once per version, off the loop
        return Response(body, content_type=codec.CONTENT_TYPE, headers={"X-Owtrain-Version": str(snap.version)})

    @app.post("/putGradient")
    def put_gradient() -> Response:
        c = claims()
        rt.admission.admit(c.worker)
        body = _read_body(cfg.max_body_bytes)
        update, result = rt.push(body, lambda raw: _decode_update(raw, c, rt.spec))
        tel.pushed(update.worker, update.seq, result["status"], result["staleness"], update.samples,
                   update.loss, len(body))
        return jsonify(result)

    @app.post("/registerWorker")
    def register_worker() -> Response:
        c = claims()
        worker = own_worker(c, json_body().get("worker"))
        tel.touch(worker, registering=True)
        return jsonify({"worker": worker, "version": rt.latest().version, "model": cfg.model,
                        "num_classes": cfg.num_classes, "input_shape": list(rt.input_shape or []) or None,
                        "strategy": core.strategy.describe(), "job": cfg.job, "closed": core.closed})

    @app.post("/reportPhases")
    def report_phases() -> Response:
        c = claims()
        body = json_body()
        worker = own_worker(c, body.get("worker"))
        phases, wall_s = parse_report(body)
        tel.activation_phases(worker, phases, wall_s)
        return jsonify({"ok": True})

    @app.post("/unregisterWorker")
    def unregister_worker() -> Response:
        c = claims()
        tel.unregister(own_worker(c, json_body().get("worker")))
        return jsonify({"ok": True})

    @app.get("/getAccuracy")
    def get_accuracy() -> Response:
        open_read()
        return jsonify(tel.accuracy())

    @app.get("/status")
    def status() -> Response:
        open_read()
        return jsonify(rt.status())

    @app.get("/api/history")
    def history() -> Response:
        open_read()
        return jsonify(tel.history_since(_float_arg("since", 0.0)))

    @app.get("/metrics")
    def metrics() -> Response:
        open_read()
        return Response(tel.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")

    @app.post("/admin/checkpoint")
    def admin_checkpoint() -> Response:
        claims(admin=True)
        path = rt.apply(core.checkpoint)
        return jsonify({"version": core.model.version, "path": str(path) if path else None})

    @app.post("/admin/rollback")
    def admin_rollback() -> Response:
        claims(admin=True)
        target = json_int(json_body().get("version"), 'rollback {"version": <int>}')
        version = rt.apply(core.rollback, target)
        return jsonify({"version": version, "restored": target})

    @app.post("/admin/close")
    def admin_close() -> Response:
        claims(admin=True)
        reason = json_body().get("reason", "closed by an operator")
        if not isinstance(reason, str) or not reason:
            raise BadRequest('body must be {"reason": "<why the job ends>"} (or empty)')
        rt.apply(core.close, reason)
        return jsonify({"version": core.model.version, "closed": reason})

    @app.post("/admin/stop")
    def admin_stop() -> Response:
        claims(admin=True)
        gevent.spawn_later(0.1, rt.request_stop)
        return jsonify({"ok": True, "version": core.model.version})

    return app


def _decode_update(body: bytes, c: Claims, spec: codec.Spec) -> Update:
    """Parse and validate a push body into an `Update` (runs on a pool thread, not the loop)."""
    wire, meta = codec.decode_tensors(body)
    if meta.get("worker", c.worker) != c.worker:
        raise Forbidden(f"token is for worker {c.worker!r}, update is tagged {meta.get('worker')!r}")
    kind = meta.get("kind", "grad")
    if kind not in PUSH_KINDS:
        raise BadRequest(f"metadata kind must be one of {PUSH_KINDS}, got {kind!r}")
    missing = [key for key in ("seq", "base_version") if key not in meta]
    if missing:
        raise BadRequest(f"update metadata is missing {missing[0]!r} (need worker, seq, base_version, kind)")
    seq, base = parse_int(meta["seq"], "metadata seq"), parse_int(meta["base_version"], "metadata base_version")
    samples = parse_int(meta.get("samples", "0"), "metadata samples", MAX_SAMPLES)
    try:
        loss = float(meta["loss"]) if meta.get("loss") not in (None, "", "None", "nan") else None
    except ValueError as exc:
        raise BadRequest(f"update metadata has a malformed loss: {exc}") from exc
    if loss is not None and not math.isfinite(loss):
        loss = None
    tensors = decompress(wire, meta, spec)
    return Update(worker=c.worker, seq=seq, base_version=base, kind=kind, tensors=tensors, samples=samples, loss=loss)


def _read_body(limit: int) -> bytes:
    """The request body in one read into one buffer. (werkzeug's stream reads it in 64 KiB chunks
    and joins them: for a 45 MB push that was half of the server's time.) Chunked bodies, which our
    clients never send, take werkzeug's path."""
    length = request.content_length
    if length is None:
        return request.get_data(cache=False)
    if length > limit:
        raise RequestEntityTooLarge()
    body = request.environ["wsgi.input"].read(length)
    if len(body) != length:
        raise BadRequest(f"the body is cut short: {len(body)} of {length} bytes")
    return body


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    return None if raw in (None, "") else parse_int(raw, f"query parameter {name}")


def _float_arg(name: str, default: float) -> float:
    raw = request.args.get(name)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise BadRequest(f"query parameter {name} must be a number, got {raw!r}") from exc
    if not math.isfinite(value):
        raise BadRequest(f"query parameter {name} must be finite")
    return value

