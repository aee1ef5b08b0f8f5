"""Update compression: fp16, bf16, int8 and top-k with error feedback.

A worker-side `Compressor` turns a dict of fp32 update tensors into a (smaller) dict of wire
tensors plus string metadata; the server-side `decompress` is a pure function that validates the
wire tensors against the model and returns fp32 tensors. Top-k keeps what it did not send in a
residual and adds it to the next update (error feedback), so nothing is lost, only delayed.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from owtrain.codec import Spec, validate_tensors
from owtrain.errors import BadRequest, BadTensor
from owtrain.specs import COMPRESSION_KINDS, CompressionSpec, topk_ratio

Tensors = dict[str, torch.Tensor]


class Compressor:
    """Worker-side compression of fp32 updates; the base class sends them as they are."""

    name = "none"

    def compress(self, tensors: Mapping[str, torch.Tensor]) -> tuple[Tensors, dict[str, str]]:
        """Return (wire tensors, metadata). The metadata names the method for `decompress`."""
        return {k: v.float() for k, v in tensors.items()}, {"compression": self.name}


class CastCompressor(Compressor):
    """Cast to a 16-bit float type (halves the bytes; fp16 keeps more mantissa, bf16 more range)."""

    def __init__(self, dtype: torch.dtype, name: str) -> None:
        self.dtype = dtype
        self.name = name

    def compress(self, tensors: Mapping[str, torch.Tensor]) -> tuple[Tensors, dict[str, str]]:
        return {k: v.to(self.dtype) for k, v in tensors.items()}, {"compression": self.name}


class Int8Compressor(Compressor):
    """Symmetric per-tensor int8 quantisation: value ≈ q * scale, scale = max|v| / 127."""

    name = "int8"

    def compress(self, tensors: Mapping[str, torch.Tensor]) -> tuple[Tensors, dict[str, str]]:
        out: Tensors = {}
        for k, v in tensors.items():
            scale = v.abs().max().clamp(min=1e-12) / 127.0
            out[k] = torch.round(v / scale).clamp(-127, 127).to(torch.int8)
            out[f"{k}::scale"] = scale.reshape(1).float()
        return out, {"compression": self.name}


class TopKCompressor(Compressor):
    """Send the largest `ratio` fraction of each tensor's entries; keep the rest as residual."""

    name = "topk"

    def __init__(self, ratio: float) -> None:
        self.ratio = topk_ratio(ratio)
        self.residual: Tensors = {}

    def compress(self, tensors: Mapping[str, torch.Tensor]) -> tuple[Tensors, dict[str, str]]:
        out: Tensors = {}
        for k, v in tensors.items():
            acc = v.float() + self.residual.get(k, torch.zeros_like(v, dtype=torch.float32))
            flat = acc.reshape(-1)
            n_keep = max(1, int(round(flat.numel() * self.ratio)))
            idx = torch.topk(flat.abs(), n_keep, sorted=False).indices
            vals = flat[idx]
            rest = flat.clone()
            rest[idx] = 0.0
            self.residual[k] = rest.reshape(acc.shape)
            out[f"{k}::idx"] = idx.to(torch.int64)
            out[f"{k}::val"] = vals
        return out, {"compression": self.name, "ratio": str(self.ratio)}


def make_compressor(spec: CompressionSpec | str) -> Compressor:
    """The compressor of `spec` (a string is parsed first: ValueError if it names no compression)."""
    if isinstance(spec, str):
        spec = CompressionSpec.parse(spec)
    if spec.kind == "fp16":
        return CastCompressor(torch.float16, "fp16")
    if spec.kind == "bf16":
        return CastCompressor(torch.bfloat16, "bf16")
    if spec.kind == "int8":
        return Int8Compressor()
    if spec.kind == "topk":
        return TopKCompressor(topk_ratio(spec.ratio))  # set for topk: this only narrows the type
    return Compressor()


def decompress(wire: Mapping[str, torch.Tensor], meta: Mapping[str, str], spec: Spec) -> Tensors:
    """Validate wire tensors against the model `spec` and return fp32 tensors (pure function).

    Raises BadTensor naming the offending tensor, or BadRequest for an unknown method.
    """
    method = meta.get("compression", "none")
    if method == "none":
        validate_tensors(wire, spec)
        return dict(wire)
    if method in ("fp16", "bf16"):
        dtype = torch.float16 if method == "fp16" else torch.bfloat16
        validate_tensors(wire, {n: (s, dtype) for n, (s, _) in spec.items()})
        return {k: v.float() for k, v in wire.items()}
    if method == "int8":
        return _decompress_int8(wire, spec)
    if method == "topk":
        return _decompress_topk(wire, spec)
    raise BadRequest(f"unknown compression {method!r}; expected one of {', '.join(COMPRESSION_KINDS)}")


def _split_names(wire: Mapping[str, torch.Tensor], suffixes: tuple[str, ...], spec: Spec) -> None:
    """Reject wire names that are not `<param>` or `<param>::<suffix>` of a known parameter."""
    for name in wire:
        base, sep, suffix = name.partition("::")
        if base not in spec or (sep and suffix not in suffixes):
            raise BadTensor(name, "unknown tensor name for this model")


def _decompress_int8(wire: Mapping[str, torch.Tensor], spec: Spec) -> Tensors:
    _split_names(wire, ("scale",), spec)
    out: Tensors = {}
    for name, (shape, _) in spec.items():
        q, scale = wire.get(name), wire.get(f"{name}::scale")
        if q is None or scale is None:
            raise BadTensor(name, "missing from the update (int8 needs the values and ::scale)")
        validate_tensors({name: q}, {name: (shape, torch.int8)})
        validate_tensors({f"{name}::scale": scale}, {f"{name}::scale": ((1,), torch.float32)})
        out[name] = q.float() * scale
    return out


def _decompress_topk(wire: Mapping[str, torch.Tensor], spec: Spec) -> Tensors:
    _split_names(wire, ("idx", "val"), spec)
    out: Tensors = {}
    for name, (shape, _) in spec.items():
        idx, val = wire.get(f"{name}::idx"), wire.get(f"{name}::val")
        if idx is None or val is None:
            raise BadTensor(name, "missing from the update (top-k needs ::idx and ::val)")
        numel = int(torch.Size(shape).numel())
        if idx.dtype != torch.int64 or val.dtype != torch.float32 or idx.dim() != 1 or idx.shape != val.shape:
            raise BadTensor(name, "top-k ::idx must be int64 and ::val float32, both 1-D of equal length")
        if idx.numel() > numel or (idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= numel)):
            raise BadTensor(name, f"top-k indices out of range for {numel} entries")
        if not bool(torch.isfinite(val).all()):
            raise BadTensor(name, "contains NaN or Inf values")
        dense = torch.zeros(numel, dtype=torch.float32)
        dense.index_add_(0, idx, val)
        out[name] = dense.reshape(shape)
    return out
