"""Read-only views of the run: /status, /api/history and /metrics (open unless --protect-reads;
none reveals weights)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from param_server.routes.common import float_arg, open_read
from param_server.runtime import Runtime


def status_routes(rt: Runtime) -> Blueprint:
    bp = Blueprint("status", __name__)

    @bp.before_request
    def check_read() -> None:
        open_read(rt, request.headers.get("Authorization"))

    @bp.get("/status")
    def status() -> Response:
        return jsonify(rt.status())

    @bp.get("/api/history")
    def history() -> Response:
        return jsonify(rt.telemetry.history_since(float_arg(request.args.get("since"), "since", 0.0)))

    @bp.get("/metrics")
    def metrics() -> Response:
        return Response(rt.telemetry.metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")

    return bp
