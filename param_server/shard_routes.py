"""`GET /shardPlan`: which part of the job's model this server holds, so workers and tools can
check that every shard, and they themselves, use the same plan (owtrain.shard_plan)."""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, Response, jsonify

from param_server.shard_slice import ShardSlice


def shard_blueprint(shard: ShardSlice, open_read: Callable[[], None]) -> Blueprint:
    """The read-only shard-plan route for `shard`; `open_read` checks a token under --protect-reads."""
    bp = Blueprint("shard_plan", __name__)
    body = shard.published()

    @bp.get("/shardPlan")
    def shard_plan() -> Response:
        open_read()
        return jsonify(body)

    return bp
