"""Request bodies → one validated float32 array (N, C, H, W) of raw pixels, or a precise 400.

Every check happens here, before a request joins a batch: a bad instance fails its whole request
and never reaches the batcher, so it cannot disturb other callers' requests batched with it.
Accepted forms (TensorFlow Serving's REST shapes):

- row: `{"instances": [inst, …]}`, each `inst` a nested list of numbers, `{"b64": "…"}` (a PNG
  or `.npy` file, base64) or `{"<input_name>": one of those}`;
- columnar: `{"inputs": batch}` or `{"inputs": {"<input_name>": batch}}`, `batch` a nested list
  with the batch dimension first, or a list of `{"b64": …}`.

An instance has the signature's shape (C, H, W), or (H, W) when C is 1, or (H, W, C). Values are
raw pixels in the signature's scale (0..255 for 8-bit images); NaN, infinities, booleans, strings
and values outside [0, scale] are refused. PNGs are size-checked from their header before any
pixel is decoded; `.npy` files are read without pickle.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
from typing import Any

import numpy as np
import torch

from owtrain.errors import BadRequest
from owtrain.model_signature import Signature

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NPY_MAGIC = b"\x93NUMPY"
NPY_DTYPES = (np.uint8, np.float32, np.float64)


def parse_request(body: Any, sig: Signature, max_instances: int) -> np.ndarray:
    """The instances of a predict body as float32 (N, C, H, W) raw pixels; BadRequest otherwise."""
    if not isinstance(body, dict):
        raise BadRequest('the body must be a JSON object with "instances" (rows) or "inputs" (columns)')
    if ("instances" in body) == ("inputs" in body):
        raise BadRequest('give exactly one of "instances" (row format) or "inputs" (columnar format)')
    if "instances" in body:
        items, where = body["instances"], "instances"
    else:
        items, where = body["inputs"], "inputs"
        if isinstance(items, dict):
            items = _named(items, sig, where)
            where = f"inputs.{sig.input_name}"
    if not isinstance(items, list):
        raise BadRequest(f"{where} must be a list (one entry per instance)")
    if not items:
        raise BadRequest(f"{where} is empty: send at least one instance")
    if len(items) > max_instances:
        raise BadRequest(f"{where} has {len(items)} instances; at most {max_instances} per request")
    out = np.empty((len(items), *sig.shape), dtype=np.float32)
    for i, item in enumerate(items):
        out[i] = instance(item, sig, f"{where}[{i}]")
    return out


def instance(item: Any, sig: Signature, where: str) -> np.ndarray:
    """One instance (nested list, `{"b64": …}` or `{name: …}`) as float32 (C, H, W)."""
    if isinstance(item, dict):
        if set(item) == {"b64"}:
            return _binary(item["b64"], sig, where)
        item = _named(item, sig, where)
        if isinstance(item, dict) and set(item) == {"b64"}:
            return _binary(item["b64"], sig, f"{where}.{sig.input_name}")
        where = f"{where}.{sig.input_name}"
    if not isinstance(item, list):
        raise BadRequest(f"{where}: an instance must be a nested list of numbers or {{\"b64\": …}}, "
                         f"got {type(item).__name__}")
    _check_numbers(item, where)
    try:
        array = np.asarray(item, dtype=np.float64)
    except ValueError as exc:  # ragged nesting
        raise BadRequest(f"{where}: the nested lists are ragged (rows of different lengths)") from exc
    return _fit(array, sig, where)


def normalise(raw: np.ndarray, sig: Signature) -> torch.Tensor:
    """Raw pixels (N, C, H, W) → the model's input: ((x / scale) - mean) / std per channel."""
    mean = torch.tensor(sig.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(sig.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (torch.from_numpy(raw) / sig.scale - mean) / std


def _named(item: dict[str, Any], sig: Signature, where: str) -> Any:
    if set(item) != {sig.input_name}:
        raise BadRequest(f"{where}: expected the single input {sig.input_name!r}, got keys {sorted(item)[:5]}")
    return item[sig.input_name]


def _check_numbers(item: list[Any], where: str) -> None:
    """Every leaf is an int or float (not a bool, string or null) and finite."""
    level: list[Any] = item
    depth = 0
    while level and isinstance(level[0], list):
        depth += 1
        if depth > 4:
            raise BadRequest(f"{where}: nested deeper than (C, H, W)")
        if not all(isinstance(v, list) for v in level):
            raise BadRequest(f"{where}: mixes lists and numbers at one nesting level")
        level = list(itertools.chain.from_iterable(level))
    for v in level:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise BadRequest(f"{where}: values must be numbers, found {type(v).__name__} {str(v)[:20]!r}")
        if v != v or v in (float("inf"), float("-inf")):
            raise BadRequest(f"{where}: values must be finite, found {v}")


def _fit(array: np.ndarray, sig: Signature, where: str) -> np.ndarray:
    """(C, H, W), (H, W) for one channel, or (H, W, C) → (C, H, W); range-checked."""
    c, h, w = sig.shape
    if array.shape == (h, w) and c == 1:
        array = array[None]
    elif array.shape == (h, w, c) and array.shape != (c, h, w):
        array = array.transpose(2, 0, 1)
    if array.shape != (c, h, w):
        accepted = f"({c}, {h}, {w})" + (f" or ({h}, {w})" if c == 1 else f" or ({h}, {w}, {c})")
        raise BadRequest(f"{where}: shape {list(array.shape)} does not match the model's input {accepted}")
    if not np.isfinite(array).all():
        raise BadRequest(f"{where}: values must be finite (found NaN or infinity)")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > sig.scale:
        raise BadRequest(f"{where}: pixel values must be in [0, {sig.scale:g}], found [{low:g}, {high:g}]")
    return array.astype(np.float32)


def _binary(text: Any, sig: Signature, where: str) -> np.ndarray:
    """A base64 PNG or `.npy` instance."""
    if not isinstance(text, str):
        raise BadRequest(f"{where}.b64 must be a base64 string")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{where}.b64 is not valid base64: {exc}") from exc
    return binary_instance(data, sig, f"{where}.b64")


def binary_instance(data: bytes, sig: Signature, where: str = "body") -> np.ndarray:
    """One instance sent as a PNG or `.npy` file (a raw body, an uploaded object) as float32 (C, H, W)."""
    if data.startswith(PNG_MAGIC):
        return _fit(_png(data, sig, where), sig, where)
    if data.startswith(NPY_MAGIC):
        return _fit(_npy(data, where), sig, where)
    raise BadRequest(f"{where} is neither a PNG nor a .npy file (unknown magic bytes)")


def _png(data: bytes, sig: Signature, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c, h, w = sig.shape
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.size != (w, h):  # from the header: nothing decoded yet
                raise BadRequest(f"{where}: the PNG is {img.size[0]}x{img.size[1]}, the model takes {w}x{h}")
            pixels = np.asarray(img.convert("L" if c == 1 else "RGB"), dtype=np.float64)
    except BadRequest:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise BadRequest(f"{where}: the PNG cannot be decoded: {exc}") from exc
    if sig.scale != 255.0:
        pixels = pixels / 255.0 * sig.scale
    return pixels


def _npy(data: bytes, where: str) -> np.ndarray:
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise BadRequest(f"{where}: the .npy file cannot be read: {exc}") from exc
    if not isinstance(array, np.ndarray) or array.dtype.type not in NPY_DTYPES:
        raise BadRequest(f"{where}: .npy dtype must be uint8, float32 or float64, got {getattr(array, 'dtype', '?')}")
    return array.astype(np.float64)
