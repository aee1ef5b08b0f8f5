"""Push and pull, free of any web framework: the Flask routes (`seed.py`) and the thin WSGI hot
path (`param_server/hotpath.py`) both call these, so both answer exactly the same.

A push is authenticated and admitted before its body is read; the body is decoded and validated
on the apply thread, in the same batch as its step (one hand-off from the loop, not two), and
answered once its journal record is durable. A pull serves the snapshot's cached payload.
"""

from __future__ import annotations

import math
import time
from typing import Any

from owtrain import codec
from owtrain.action_params import MODES
from owtrain.compression import decompress
from owtrain.errors import BadRequest, Forbidden
from owtrain.parse import MAX_SAMPLES, parse_int
from owtrain.tokens import Claims
from param_server.model_state import Snapshot
from param_server.routes.common import claims, float_arg, int_arg
from param_server.runtime import Runtime
from param_server.strategies import Update

PUSH_KINDS = MODES  # the action's push modes (owtrain.action_params)


def admit_push(rt: Runtime, authorization: str | None) -> Claims:
    """The pusher's token, checked, and a token of the rate limits taken (429 before any read)."""
    c = claims(rt, authorization)
    rt.admission.admit(c.worker)
    return c


def take_push(rt: Runtime, c: Claims, body: bytes | bytearray) -> dict[str, Any]:
    """Decode, validate and take one push exactly once; its answer, once durable."""
    update, result = rt.push(body, lambda raw: decode_update(raw, c, rt.spec))
    rt.telemetry.pushed(update.worker, update.seq, result["status"], result["staleness"], update.samples,
                        update.loss, len(body))
    return result


def pull(rt: Runtime, authorization: str | None, have_raw: str | None, wait_raw: str | None,
         ) -> tuple[Snapshot, bool]:
    """The newest visible snapshot and whether it differs from `have` (False: answer 304), after
    waiting up to `wait` seconds (capped by `max_wait_s`) for a newer one."""
    claims(rt, authorization)
    have = int_arg(have_raw, "have")
    wait = min(max(float_arg(wait_raw, "wait", 0.0), 0.0), rt.cfg.max_wait_s)
    snap = rt.latest()
    deadline = time.monotonic() + wait
    while snap.version == have and time.monotonic() < deadline:
        rt.watch.wait(deadline - time.monotonic())
        snap = rt.latest()
    return snap, snap.version != have


def decode_update(body: bytes | bytearray, c: Claims, spec: codec.Spec) -> Update:
    """Parse and validate a push body into an `Update` (runs on the apply thread, not the loop)."""
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
