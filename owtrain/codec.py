"""The wire format for tensors: safetensors (a JSON header plus raw little-endian buffers).

Nothing is ever pickled: decoding parses a bounded JSON header and copies buffers, so a hostile
body can at worst be rejected. `validate_tensors` is the single place that checks an incoming
tensor against the model (name known, shape and dtype right, values finite).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from owtrain.errors import BadRequest, BadTensor

Spec = Mapping[str, tuple[tuple[int, ...], torch.dtype]]
CONTENT_TYPE = "application/vnd.owtrain.safetensors"


def encode_tensors(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str] | None = None) -> bytes:
    """Serialise tensors (moved to CPU, made contiguous) and string metadata to safetensors bytes."""
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return st_save(flat, metadata={k: str(v) for k, v in (meta or {}).items()})


def decode_tensors(body: bytes) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse safetensors bytes into (tensors, metadata); raise BadRequest if they are malformed."""
    if len(body) < 8:
        raise BadRequest("body is not a safetensors payload (shorter than its 8-byte header length)")
    try:
        tensors = st_load(body)
        header_len = int.from_bytes(body[:8], "little")
        header = json.loads(body[8 : 8 + header_len])
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not a valid safetensors payload: {exc}") from exc
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise BadRequest("safetensors __metadata__ must be an object of strings")
    return tensors, {str(k): str(v) for k, v in meta.items()}


def all_finite(t: torch.Tensor) -> bool:
    """True if no element is NaN or ±Inf.

    A sum is finite only if every element is (NaN and Inf propagate), and summing is one vectorised
    pass without a temporary, ~20× cheaper than `isfinite(t).all()` on 11 M values; only when the sum
    is not finite (a NaN, an Inf, or an overflow of large finite values) is the exact test needed.
    """
    if not t.is_floating_point():
        return True
    total = t.sum(dtype=torch.float32) if t.element_size() < 4 else t.sum()  # fp16 sums overflow early
    return math.isfinite(float(total)) or bool(torch.isfinite(t).all())


def validate_tensors(
    tensors: Mapping[str, torch.Tensor], spec: Spec, require_all: bool = True
) -> None:
    """Check every tensor against `spec` (name → (shape, dtype)); raise BadTensor on the first bad one.

    With `require_all`, a parameter missing from `tensors` is an error too.
    """
    for name, t in tensors.items():
        if name not in spec:
            raise BadTensor(name, "unknown tensor name for this model")
        shape, dtype = spec[name]
        if tuple(t.shape) != tuple(shape):
            raise BadTensor(name, f"shape {list(t.shape)} does not match the model's {list(shape)}")
        if t.dtype != dtype:
            raise BadTensor(name, f"dtype {t.dtype} does not match the model's {dtype}")
        if not all_finite(t):
            raise BadTensor(name, "contains NaN or Inf values")
    if require_all:
        missing = [n for n in spec if n not in tensors]
        if missing:
            raise BadTensor(missing[0], "missing from the update")
