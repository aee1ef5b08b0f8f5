"""`POST /admin/publish`: the current parameters as the next version of a model repository.

This is the parameter server's export into serving: `owtrain ps publish` (or any admin client)
asks the server, which already holds the parameters, the evaluation shard and the S3 access, to
write one numbered version folder into `--model-repository` (a folder or `s3://bucket/prefix`)
in the layout of `owtrain.model_repository_layout` — the same layout `owtrain local` publishes
and `owtrain serve` reads. param_server does not import serving (serving is the floor above).

What goes into the version, and why:
- the weights of exactly one version (a snapshot taken when the request is served): on a sharded
  job the whole model that shard 0 assembles from every shard's slice at the job's version (the
  same model its evaluator scores; the other shards refuse);
- the input signature from the `--eval-shard` manifest (shape, normalisation, class names): the
  workers trained on shards with that normalisation, so the server must apply it too; a server
  without an evaluation shard cannot tell it, and says so (400);
- the scores of those weights on the evaluation shard, measured at publish time (not the last
  periodic evaluation, which may be of an older version), under the shard's split (`validation`
  for the usual `-val` shard, `test` for a test shard).

Publishing runs on a pool thread (evaluation and S3 writes would stall the event loop) and one
at a time (two concurrent publishes must not pick the same version number).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import gevent
from flask import Blueprint, Response, jsonify, request

from owtrain.errors import BadRequest, ConfigError, StoreUnreachable
from owtrain.model_repository_layout import check_model_name, default_model_name, publish_tensors
from owtrain.model_signature import signature_from_manifest
from owtrain.parse import json_object
from owtrain.rejections import REJECTIONS
from param_server.config import PSConfig
from param_server.routes.common import claims
from param_server.runtime import Runtime

# a shard's split name → the key meta.json's scores use for it
SCORE_SPLITS = {"val": "validation", "test": "test"}


def publish_routes(rt: Runtime) -> Blueprint:
    """`POST /admin/publish` for `rt` (the admin token only)."""
    bp = Blueprint("publish", __name__)
    lock = threading.Lock()

    @bp.post("/admin/publish")
    def admin_publish() -> Response:
        claims(rt, request.headers.get("Authorization"), admin=True)
        body = json_object(request.get_data(cache=True) or b"{}")
        if body is None:
            raise BadRequest('body must be a JSON object: {"name": "<model name>"} or empty')
        name = body.get("name")
        if name is not None:
            try:
                check_model_name(name if isinstance(name, str) else "")
            except ConfigError as exc:
                raise BadRequest(f'"name": {exc} (e.g. "mnist")') from exc
        location, shard = _repository(rt.cfg)
        try:
            result = gevent.get_hub().threadpool.apply(_publish, (rt, location, shard, name, lock))
        except StoreUnreachable as exc:
            REJECTIONS.note(503, "store_unreachable", request.method, request.path, str(exc))
            resp = jsonify({"error": f"the model repository is unreachable: {exc}; nothing was published",
                            "reason": "store_unreachable"})
            resp.status_code = 503
            return resp
        return jsonify(result)

    return bp


def _repository(cfg: PSConfig) -> tuple[str, Path]:
    """Where to publish and the shard that gives the signature; BadRequest when the server lacks either,
    or is a shard other than 0 (it holds a slice; shard 0 assembles the whole model). The other shards
    may be started with the same options (a StatefulSet's pods are), as they ignore --eval-shard."""
    if cfg.shard > 0:
        raise BadRequest(f"this is shard {cfg.shard} of {cfg.shards}: it holds a slice of the model; publish "
                         "through shard 0, which assembles the whole model (owtrain ps publish --url URL0,URL1,…)")
    if not cfg.model_repository:
        raise BadRequest("this parameter server has no model repository to publish into; start it with "
                         "--model-repository PATH or s3://bucket/prefix")
    if cfg.eval_shard is None:
        raise BadRequest("this parameter server has no --eval-shard, so it cannot tell the model's input "
                         "signature (shape, normalisation, classes); start it with --eval-shard TEST_SHARD")
    return cfg.model_repository, cfg.eval_shard


def _publish(rt: Runtime, location: str, shard: Path, name: str | None, lock: threading.Lock) -> dict[str, Any]:
    """Take the whole model, evaluate it, then write it as the next version (on a pool thread: on
    shard 0 of a sharded job taking it pulls the other shards' slices)."""
    from dataset_packer.shard import read_shard
    from dataset_packer.stores.repo_storage import open_repo_storage
    from owtrain.models import build_model
    from param_server.evaluator import evaluate, load_eval_shard

    cfg = rt.cfg
    snap = rt.whole()
    manifest = read_shard(shard).manifest
    model_name = name if name is not None else default_model_name(manifest, cfg.model)
    model = build_model(cfg.model, cfg.num_classes, cfg.seed)
    model.load_state_dict(snap.tensors)
    data = rt.evaluator.data if rt.evaluator is not None else load_eval_shard(shard)
    loss, accuracy = evaluate(model, *data, cfg.eval_batch)
    scores = {SCORE_SPLITS.get(str(manifest["split"]), str(manifest["split"])): {"accuracy": accuracy, "loss": loss}}
    storage = open_repo_storage(location, cfg.repository_s3)
    source = {"kind": "param_server", "job": cfg.job, "ps_version": snap.version, "eval_shard": shard.name}
    with lock:
        version = publish_tensors(storage, model_name, cfg.model, snap.tensors, signature_from_manifest(manifest),
                                  scores, source)
    return {"model": model_name, "version": version, "ps_version": snap.version, "scores": scores,
            "location": f"{storage.describe().rstrip('/')}/{model_name}/{version}"}
