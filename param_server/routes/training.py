"""The workers' training API besides push and pull: register, report an activation's phases,
unregister. Each call needs the worker's token and may only name that worker."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from owtrain.phases import parse_report
from param_server.routes.common import claims, json_body, own_worker
from param_server.runtime import Runtime


def training_routes(rt: Runtime) -> Blueprint:
    bp = Blueprint("training", __name__)
    cfg, tel = rt.cfg, rt.telemetry

    def worker_and_body() -> tuple[str, dict[str, Any]]:
        c = claims(rt, request.headers.get("Authorization"))
        body = json_body(request.get_data(cache=True))
        return own_worker(c, body.get("worker")), body

    @bp.post("/registerWorker")
    def register_worker() -> Response:
        worker, _ = worker_and_body()
        tel.touch(worker, registering=True)
        return jsonify({"worker": worker, "version": rt.latest().version, "model": cfg.model,
                        "num_classes": cfg.num_classes, "input_shape": list(rt.input_shape or []) or None,
                        "strategy": rt.core.strategy.describe(), "job": cfg.job, "closed": rt.core.closed})

    @bp.post("/reportPhases")
    def report_phases() -> Response:
        worker, body = worker_and_body()
        phases, wall_s = parse_report(body)
        tel.activation_phases(worker, phases, wall_s)
        return jsonify({"ok": True})

    @bp.post("/unregisterWorker")
    def unregister_worker() -> Response:
        worker, _ = worker_and_body()
        tel.unregister(worker)
        return jsonify({"ok": True})

    return bp
