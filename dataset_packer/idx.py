"""The IDX format of MNIST and Fashion-MNIST: a big-endian header, then the raw array.

Reading checks the magic, the dimension count and that the payload is exactly as long as the
header says, so a truncated or foreign file fails loudly instead of yielding shifted images.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

# IDX type byte -> dtype (big-endian where it matters).
IDX_DTYPES: dict[int, np.dtype] = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_IDX_BYTES = 2 * 1024**3
# The standard file names of an IDX dataset: train images, train labels, test images, test labels.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array in an IDX file (`.gz` or not), in native byte order; raises ValueError if malformed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        header = f.read(4)
        if len(header) != 4 or header[:2] != b"\0\0" or header[2] not in IDX_DTYPES or not 1 <= header[3] <= 4:
            raise ValueError(f"{path}: not an IDX file (magic {header.hex()})")
        dtype, ndim = IDX_DTYPES[header[2]], header[3]
        shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
        expected = int(np.prod(shape)) * dtype.itemsize
        if expected > MAX_IDX_BYTES:
            raise ValueError(f"{path}: header claims {expected} bytes, over the {MAX_IDX_BYTES}-byte limit")
        payload = f.read(expected + 1)
    if len(payload) != expected:
        raise ValueError(f"{path}: payload is {len(payload)} bytes, header {shape} needs {expected}")
    return np.frombuffer(payload, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an (uncompressed) IDX file, atomically."""
    if array.dtype != np.uint8 or not 1 <= array.ndim <= 4:
        raise ValueError(f"write_idx takes uint8 arrays of 1-4 dims, got {array.dtype} {array.shape}")
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(header)
        f.write(np.ascontiguousarray(array).tobytes())
    os.replace(tmp, path)
