"""`GET /shardPlan`: which part of the job's model this server holds, so that workers and tools can
check that every shard, and they themselves, use the same plan (owtrain/shard_plan.py). Open unless
--protect-reads, like /getVersion: it names shapes, never weights."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from param_server.routes.common import open_read
from param_server.runtime import Runtime


def shard_routes(rt: Runtime) -> Blueprint:
    bp = Blueprint("shards", __name__)
    body = rt.shard.published()

    @bp.get("/shardPlan")
    def shard_plan() -> Response:
        open_read(rt, request.headers.get("Authorization"))
        return jsonify(body)

    return bp
