"""The seed-compatible paths: version, pull, push and accuracy, as the original workers call them.

Push (with a Content-Length) and pull (GET) are normally served by the thin hot path before Flask
sees them (`param_server/hotpath.py`); these routes take what it hands on (a chunked push body,
HEAD) through the same `push_pull` functions, so the answers are identical.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from owtrain import codec
from param_server.routes import push_pull
from param_server.routes.common import open_read
from param_server.runtime import Runtime


def seed_routes(rt: Runtime) -> Blueprint:
    bp = Blueprint("seed", __name__)

    @bp.get("/getVersion")
    def get_version() -> Response:
        open_read(rt, request.headers.get("Authorization"))
        return jsonify({"version": rt.latest().version, "job": rt.cfg.job})

    @bp.get("/getParameter")
    def get_parameter() -> Response:
        snap, newer = push_pull.pull(rt, request.headers.get("Authorization"), request.args.get("have"),
                                     request.args.get("wait"))
        if not newer:
            return Response(status=304, headers={"X-Owtrain-Version": str(snap.version)})
        return Response(bytes(snap.body()), content_type=codec.CONTENT_TYPE,
                        headers={"X-Owtrain-Version": str(snap.version)})

    @bp.post("/putGradient")
    def put_gradient() -> Response:
        c = push_pull.admit_push(rt, request.headers.get("Authorization"))
        return jsonify(push_pull.take_push(rt, c, _read_body(rt.cfg.max_body_bytes)))

    @bp.get("/getAccuracy")
    def get_accuracy() -> Response:
        open_read(rt, request.headers.get("Authorization"))
        return jsonify(rt.telemetry.accuracy())

    return bp


def _read_body(limit: int) -> bytearray:
    """The request body in one writable buffer, decoded as on the hot path. A chunked body is read
    up to one byte past the limit (werkzeug would cut it at the limit without a word): 413."""
    stream = request.environ["wsgi.input"]
    length = request.content_length
    if length is not None:
        if length > limit:
            raise RequestEntityTooLarge()
        exact: bytearray = stream.read_exactly(length)  # owtrain.wsgi.StrictInput
        return exact
    body = bytearray()
    while len(body) <= limit:
        chunk = stream.read(limit + 1 - len(body))
        if not chunk:
            return body
        body += chunk
    raise RequestEntityTooLarge()
