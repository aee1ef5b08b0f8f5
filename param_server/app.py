"""The server's WSGI application: the thin hot path for push and pull in front of the Flask app
that serves every other route (blueprints in `routes/`, one per concern, plus the dashboard).

Every error is JSON `{"error", "reason"}` with a precise status (`routes/errors.py`). Tensor bodies
are safetensors; nothing is unpickled. Decoding, validation and every model step run on the apply
thread, so the event loop only moves bytes.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from owtrain.errors import OwtrainError
from param_server.dashboard import dashboard_bp
from param_server.hotpath import HotPath
from param_server.routes.admin import admin_routes
from param_server.routes.errors import Answer, http_answer, owtrain_answer
from param_server.routes.publish import publish_routes
from param_server.routes.seed import seed_routes
from param_server.routes.shards import shard_routes
from param_server.routes.status import status_routes
from param_server.routes.training import training_routes
from param_server.runtime import Runtime


def create_app(rt: Runtime) -> Flask:
    """The Flask app for one `Runtime`: the route blueprints and the JSON error handlers."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = rt.cfg.max_body_bytes
    for bp in (seed_routes(rt), training_routes(rt), status_routes(rt), admin_routes(rt), publish_routes(rt),
               shard_routes(rt), dashboard_bp):
        app.register_blueprint(bp)

    @app.errorhandler(OwtrainError)
    def owtrain_error(exc: OwtrainError) -> Response:
        return _response(owtrain_answer(exc, rt.telemetry, request.method, request.path))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _response(http_answer(exc, rt.cfg.max_body_bytes, rt.telemetry, request.method, request.path))

    return app


def create_wsgi(rt: Runtime) -> HotPath:
    """What the server runs: push and pull on the hot path, everything else through Flask."""
    return HotPath(rt, create_app(rt))


def _response(answer: Answer) -> Response:
    status, body, headers = answer
    resp = jsonify(body)
    resp.status_code = status
    resp.headers.extend(headers)
    return resp
