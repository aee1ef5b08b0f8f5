"""The `predict` OpenWhisk web action: the same validation, routing, cache and model code as the
server, one activation at a time.

A web action gets the HTTP request as parameters: a JSON body's fields merged in (`instances`
or `inputs`), or the raw body as `__ow_body` (base64 for binary types, with `raw-http`), plus
`__ow_method`, `__ow_headers` and `__ow_path` (`/mnist`, `/mnist/versions/2`, `/mnist/labels/canary`).
It answers `{"statusCode", "headers", "body"}`. OpenWhisk refuses payloads and results over 1 MB;
the action checks both itself so that the caller gets a clear 413 instead of a platform error, and
it refuses to start a forward pass it cannot finish before `__OW_DEADLINE`.

The repository (`repository` parameter, bound at deployment, or `$OWTRAIN_SERVING_REPOSITORY`) is
loaded on the first activation of a container and rescanned at most every `poll_s` seconds, so a
warm container answers from memory and still follows new versions and labels.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from owtrain.errors import BadRequest, ObjectMissing, OwtrainError, PayloadTooLarge, Throttled
from serving.app import ERRORS
from serving.batch_policy import Fixed
from serving.cache import PredictionCache
from serving.inputs import binary_instance, parse_request
from serving.live import LiveModels
from serving.metrics import ServingMetrics
from serving.predictor import Predictor
from serving.repository import Repository, parse_policy

log = logging.getLogger(__name__)

LIMIT_BYTES = 1024 * 1024  # OpenWhisk's payload and result limit
MAX_INSTANCES = 64
POLL_S = 5.0
DEADLINE_MARGIN_S = 0.25  # keep this much of the time limit for encoding and returning
PATH = re.compile(r"^/?(?P<name>[A-Za-z0-9_.\-]+)?(?:/versions/(?P<version>\d+)|/labels/(?P<label>[a-z]+))?/?$")
OW_FIELDS = ("__ow_method", "__ow_headers", "__ow_path", "__ow_body", "__ow_query", "__ow_user")


@dataclass
class _Container:
    """What a warm container keeps between activations."""

    location: str
    predictor: Predictor
    refreshed: float


_warm: _Container | None = None


def main(args: dict[str, Any]) -> dict[str, Any]:
    """One web-action activation; always a `{"statusCode", "headers", "body"}` answer."""
    try:
        size = len(json.dumps(args))
        if size > LIMIT_BYTES:
            raise PayloadTooLarge(f"the request is {size} bytes; an OpenWhisk action takes at most {LIMIT_BYTES} "
                                  f"(send fewer instances, or PNGs)")
        predictor = _predictor(args)
        name, version, label = _target(args, predictor)
        caller = str((args.get("__ow_headers") or {}).get("x-forwarded-for", "anonymous"))
        loaded = predictor.resolve(name, caller, version, label)
        rows = _rows(args, loaded.served.meta.signature)
        _check_deadline()
        body = predictor.answer(loaded, predictor.predict(loaded, rows))
        if len(json.dumps(body)) > LIMIT_BYTES:
            raise PayloadTooLarge(f"the answer would exceed OpenWhisk's {LIMIT_BYTES}-byte result limit; "
                                  "send fewer instances per request")
        return {"statusCode": 200, "headers": {"Content-Type": "application/json",
                                               "X-Model-Version": str(loaded.served.version)}, "body": body}
    except OwtrainError as exc:
        status, reason = next((v for k, v in ERRORS.items() if isinstance(exc, k)), (503, "unavailable"))
        log.info("predict action: %d %s: %s", status, reason, exc)
        headers = {"Content-Type": "application/json"}
        if isinstance(exc, Throttled):
            headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return {"statusCode": status, "headers": headers, "body": {"error": str(exc), "reason": reason}}


def _predictor(args: dict[str, Any]) -> Predictor:
    """The container's predictor, built on the first activation and rescanned every POLL_S."""
    global _warm
    location = str(args.get("repository") or os.environ.get("OWTRAIN_SERVING_REPOSITORY") or "")
    if not location:
        raise ObjectMissing("the action has no model repository: bind the `repository` parameter "
                            "(wsk action update predict --param repository …)")
    now = time.monotonic()
    if _warm is None or _warm.location != location:
        from owtrain.s3 import S3Settings
        from serving.server import open_storage

        s3 = None
        if args.get("s3_endpoint"):
            s3 = S3Settings(endpoint=str(args["s3_endpoint"]), bucket="", access_key=str(args.get("s3_access_key", "")),
                            secret_key=str(args.get("s3_secret_key", "")))
        live = LiveModels(Repository(open_storage(location, s3)), parse_policy(str(args.get("policy", "latest:2"))),
                          lambda: Fixed(MAX_INSTANCES), MAX_INSTANCES, 0.0)
        live.refresh()
        _warm = _Container(location, Predictor(live, PredictionCache(1000), ServingMetrics()), now)
    elif now - _warm.refreshed > POLL_S:
        _warm.predictor.live.refresh()
        _warm.refreshed = now
    return _warm.predictor


def _target(args: dict[str, Any], predictor: Predictor) -> tuple[str, int | None, str | None]:
    """(model, version, label) from the web path, or the `model` / `version` / `label` parameters."""
    match = PATH.match(str(args.get("__ow_path") or ""))
    if match is None:
        raise ObjectMissing(f"no such path {args.get('__ow_path')!r}; use /NAME, /NAME/versions/V or /NAME/labels/L")
    name = match["name"] or args.get("model")
    if not name:
        names = predictor.live.names()
        if len(names) != 1:
            raise BadRequest(f"name the model (path /NAME or parameter model); models: {names}")
        name = names[0]
    version = int(match["version"]) if match["version"] else args.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise BadRequest(f"version must be an integer, got {version!r}")
    return str(name), version, match["label"] or args.get("label")


def _rows(args: dict[str, Any], sig: Any) -> Any:
    """The instances: merged JSON fields, or the raw `__ow_body` (JSON text, or a base64 PNG / .npy)."""
    if "instances" in args or "inputs" in args:
        return parse_request({k: args[k] for k in ("instances", "inputs") if k in args}, sig, MAX_INSTANCES)
    raw = args.get("__ow_body")
    if not isinstance(raw, str) or not raw:
        raise BadRequest('send {"instances": […]} or {"inputs": …}, or a PNG / .npy body')
    content_type = str((args.get("__ow_headers") or {}).get("content-type", ""))
    if content_type.startswith("application/json"):
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"the body is not JSON: {exc}") from exc
        return parse_request(body, sig, MAX_INSTANCES)
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"a binary body must arrive base64-encoded (raw-http web action): {exc}") from exc
    return binary_instance(data, sig)[None]


def _check_deadline() -> None:
    deadline_ms = os.environ.get("__OW_DEADLINE", "")
    if deadline_ms.isdigit() and int(deadline_ms) / 1000.0 - time.time() < DEADLINE_MARGIN_S:
        raise Throttled("too little of this activation's time limit is left to predict; retry", 1.0)
