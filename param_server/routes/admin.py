"""Operator calls (the admin token only): checkpoint, rollback, close the job, stop the server.
Each runs on the apply thread, between pushes."""

from __future__ import annotations

import gevent
from flask import Blueprint, Response, jsonify, request

from owtrain.errors import BadRequest
from owtrain.parse import json_int
from param_server.routes.common import claims, json_body
from param_server.runtime import Runtime


def admin_routes(rt: Runtime) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin")
    core = rt.core

    @bp.before_request
    def check_admin() -> None:
        claims(rt, request.headers.get("Authorization"), admin=True)

    @bp.post("/checkpoint")
    def checkpoint() -> Response:
        path = rt.apply(core.checkpoint)
        return jsonify({"version": core.model.version, "path": str(path) if path else None})

    @bp.post("/rollback")
    def rollback() -> Response:
        target = json_int(json_body(request.get_data(cache=True)).get("version"), 'rollback {"version": <int>}')
        version = rt.apply(core.rollback, target)
        return jsonify({"version": version, "restored": target})

    @bp.post("/close")
    def close() -> Response:
        reason = json_body(request.get_data(cache=True)).get("reason", "closed by an operator")
        if not isinstance(reason, str) or not reason:
            raise BadRequest('body must be {"reason": "<why the job ends>"} (or empty)')
        rt.apply(core.close, reason)
        return jsonify({"version": core.model.version, "closed": reason})

    @bp.post("/stop")
    def stop() -> Response:
        gevent.spawn_later(0.1, rt.request_stop)
        return jsonify({"ok": True, "version": core.model.version})

    return bp
