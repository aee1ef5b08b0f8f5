"""The wire format for tensors: safetensors (a JSON header plus raw little-endian buffers).

Nothing is ever pickled: decoding parses a bounded JSON header and maps buffers, so a hostile
body can at worst be rejected. `validate_tensors` is the single place that checks an incoming
tensor against the model (name known, shape and dtype right, values finite).

The parameter server's hot path avoids copies both ways: `decode_tensors` of a writable buffer
(a `bytearray` the body was read into) returns tensors that are views of it, and `encode_into`
writes tensors straight into one new buffer and returns views of them inside it (a pull payload
and an immutable snapshot in one copy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

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


# safetensors dtype codes <-> torch dtypes (the ones owtrain's models and compressions use)
DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_CODES = {v: k for k, v in DTYPES.items()}


def encode_into(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, str] | None = None,
                ) -> tuple[bytearray, dict[str, torch.Tensor]]:
    """Serialise like `encode_tensors`, copying each tensor once straight into one new buffer;
    return the buffer and views of the copies inside it (which stay valid as long as it lives)."""
    entries: dict[str, object] = {}
    start = 0
    for name, t in tensors.items():
        size = t.numel() * t.element_size()
        entries[name] = {"dtype": DTYPE_CODES[t.dtype], "shape": list(t.shape), "data_offsets": [start, start + size]}
        start += size
    if meta:
        entries["__metadata__"] = {k: str(v) for k, v in meta.items()}
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # data starts 8-byte aligned, as safetensors writes it
    base = 8 + len(header)
    buf = bytearray(base + start)
    buf[:8] = len(header).to_bytes(8, "little")
    buf[8:base] = header
    out = memoryview(buf)
    views: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, t in tensors.items():
            begin, end = entries[name]["data_offsets"]  # type: ignore[index]
            view = _view(buf, base + begin, base + end, t.dtype, tuple(t.shape))
            src = t.detach().to("cpu").contiguous()
            if begin == end:
                pass
            elif src.dtype == torch.bfloat16:  # numpy has no bfloat16
                view.copy_(src)
            else:  # a plain memcpy: several times cheaper than torch's copy_ for small tensors
                out[base + begin : base + end] = src.numpy().data.cast("B")
            views[name] = view
    return buf, views


def decode_tensors(body: bytes | bytearray) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse safetensors bytes into (tensors, metadata); raise BadRequest if they are malformed.

    From a `bytearray` the tensors are views of it (no copy; the buffer must not be reused); from
    immutable `bytes` they are copies (torch tensors cannot be read-only views)."""
    if len(body) < 8:
        raise BadRequest("body is not a safetensors payload (shorter than its 8-byte header length)")
    header_len = int.from_bytes(body[:8], "little")
    if header_len > len(body) - 8:
        raise BadRequest(f"body is not a valid safetensors payload: header length {header_len} is past its end")
    try:
        header = json.loads(bytes(body[8 : 8 + header_len]))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        if isinstance(body, bytearray):
            tensors = _map_tensors(body, header, 8 + header_len)
        else:
            tensors = st_load(body)
    except (SafetensorError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not a valid safetensors payload: {exc}") from exc
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise BadRequest("safetensors __metadata__ must be an object of strings")
    return tensors, {str(k): str(v) for k, v in meta.items()}


def _map_tensors(buf: bytearray, header: dict[str, Any], base: int) -> dict[str, torch.Tensor]:
    """Views of `buf` for each header entry, after the checks safetensors makes: known dtype,
    sizes that match the shapes, and offsets that tile the data section exactly."""
    tensors: dict[str, torch.Tensor] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"tensor {name!r}: entry is not an object")
        dtype = DTYPES.get(entry.get("dtype"))  # type: ignore[arg-type]
        shape, offsets = entry.get("shape"), entry.get("data_offsets")
        if dtype is None:
            raise ValueError(f"tensor {name!r}: unsupported dtype {entry.get('dtype')!r}")
        if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < 2**48 for d in shape)):
            raise ValueError(f"tensor {name!r}: shape must be a list of non-negative integers")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)):
            raise ValueError(f"tensor {name!r}: data_offsets must be two integers")
        begin, end = offsets
        numel = math.prod(shape)
        if not 0 <= begin <= end or end - begin != numel * dtype.itemsize:
            raise ValueError(f"tensor {name!r}: data_offsets {offsets} do not match shape {shape} of {dtype}")
        spans.append((begin, end))
        tensors[name] = (begin, end, dtype, tuple(shape))  # type: ignore[assignment]
    spans.sort()
    reach = 0
    for begin, end in spans:
        if begin != reach:
            raise ValueError("tensor data overlaps or leaves a gap")
        reach = end
    if base + reach != len(buf):
        raise ValueError(f"the data section is {len(buf) - base} bytes, the tensors cover {reach}")
    return {name: _view(buf, base + b, base + e, dt, sh) for name, (b, e, dt, sh) in tensors.items()}


def _view(buf: bytearray, begin: int, end: int, dtype: torch.dtype, shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor over buf[begin:end] (a copy only when the data is empty or misaligned for `dtype`)."""
    if begin == end:
        return torch.empty(shape, dtype=dtype)
    if begin % dtype.itemsize:
        return torch.frombuffer(bytearray(buf[begin:end]), dtype=dtype).reshape(shape)
    return torch.frombuffer(buf, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin).reshape(shape)


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
