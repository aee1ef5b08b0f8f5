"""Shards: the one file format workers train on (docs/architecture.md, Contract 1).

A shard is a `.tar.gz` with exactly `manifest.json`, `x.npy` and `y.npy`. Workers download shards
from URLs, so the reader treats every byte as hostile: it streams the archive through a byte cap
(no decompression bombs), accepts only the three expected regular files, never unpickles
(`allow_pickle=False`), and checks every sha256, count, shape, dtype and label against the manifest.
Any failure is one `ShardCorrupt` naming the shard and the reason.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from dataset_packer.config import DEFAULT_MAX_SHARD_BYTES, MAX_MANIFEST_BYTES
from owtrain.errors import ShardCorrupt

FORMAT = "owtrain-shard/1"
MEMBERS = ("manifest.json", "x.npy", "y.npy")
X_DTYPES = ("uint8", "float32")
Y_DTYPE = "int64"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ShardInfo:
    """Everything the manifest records besides what the writer measures from the arrays."""

    dataset: str
    split: str
    index: int
    num_shards: int
    sample_range: tuple[int, int] | None
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float


@dataclass(frozen=True)
class Shard:
    """A verified shard: `x` (N, C, H, W) uint8 or float32, `y` (N,) int64, and its manifest."""

    manifest: dict[str, Any]
    x: np.ndarray
    y: np.ndarray

    def to_tensors(self) -> tuple[Any, Any]:
        """(x float32 normalised (N, C, H, W), y int64) ready for a model; imports torch lazily."""
        import torch

        norm = self.manifest["normalisation"]
        mean = np.asarray(norm["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(norm["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        x = (self.x.astype(np.float32) / np.float32(norm["scale"]) - mean) / std
        return torch.from_numpy(x), torch.from_numpy(self.y.astype(np.int64, copy=False))


# ---------------------------------------------------------------- writing


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def build_manifest(x: np.ndarray, y: np.ndarray, info: ShardInfo, members: dict[str, bytes]) -> dict[str, Any]:
    """The manifest for arrays `x`, `y` whose serialised forms are `members` (name → bytes)."""
    return {
        "format": FORMAT,
        "dataset": info.dataset,
        "split": info.split,
        "index": info.index,
        "num_shards": info.num_shards,
        "sample_range": list(info.sample_range) if info.sample_range is not None else None,
        "count": int(x.shape[0]),
        "x": {"shape": list(x.shape), "dtype": str(x.dtype)},
        "y": {"shape": list(y.shape), "dtype": str(y.dtype)},
        "classes": list(info.classes),
        "normalisation": {"mean": list(info.mean), "std": list(info.std), "scale": info.scale},
        "members": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)} for name, data in members.items()
        },
    }


def write_shard(path: Path, x: np.ndarray, y: np.ndarray, info: ShardInfo) -> dict[str, Any]:
    """Write one shard atomically (temp name, then rename) and return its manifest.

    The archive is reproducible (fixed mtimes, owners and gzip header), so packing the same data
    twice gives the same sha256 and `owtrain upload` can skip it.
    """
    if str(x.dtype) not in X_DTYPES or x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W) {' or '.join(X_DTYPES)}, got {x.dtype} {x.shape}")
    y = y.astype(np.int64, copy=False)
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must be ({x.shape[0]},), got {y.shape}")
    members = {"x.npy": _npy_bytes(x), "y.npy": _npy_bytes(y)}
    manifest = build_manifest(x, y, info, members)
    files = {"manifest.json": json.dumps(manifest, indent=1, sort_keys=True).encode(), **members}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for name in MEMBERS:
                    data = files[name]
                    tarinfo = tarfile.TarInfo(name)
                    tarinfo.size = len(data)
                    tarinfo.mode = 0o644
                    tar.addfile(tarinfo, io.BytesIO(data))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return manifest


# ---------------------------------------------------------------- reading


class _CappedReader(io.RawIOBase):
    """A read-only stream that raises `ShardCorrupt` once more than `cap` bytes were read from it.

    It sits between gzip and tarfile, so nothing tarfile reads (headers included) can make the
    reader decompress more than `cap` bytes.
    """

    def __init__(self, inner: BinaryIO | gzip.GzipFile, cap: int, shard: str) -> None:
        self.inner, self.cap, self.shard, self.count = inner, cap, shard, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(min(len(buffer), self.cap + 1 - self.count))
        self.count += len(data)
        if self.count > self.cap:
            raise ShardCorrupt(f"shard {self.shard}: expands to more than {self.cap} bytes (decompression bomb?)")
        buffer[: len(data)] = data
        return len(data)


class _HeaderRefused(tarfile.HeaderError):
    """A tar extension header over the shard's bounds (raised before tarfile reads it)."""


class _BoundedTarInfo(tarfile.TarInfo):
    """A TarInfo that checks an extension header before tarfile reads it whole into memory.

    tarfile buffers a pax or GNU long-name header in one read of its declared size and follows a
    chain of them by recursion, so a small archive could make it allocate gigabytes or recurse
    until RecursionError. Here every shard's extension headers together are bounded in count and
    bytes, checked from the 512-byte block that declares them; sparse members are refused.
    """

    def _proc_member(self, tar: tarfile.TarFile) -> tarfile.TarInfo:
        assert isinstance(tar, _BoundedTarFile)
        if self.type == GNUTYPE_SPARSE:
            raise _HeaderRefused(f"sparse member {self.name!r}")
        if self.type in EXTENSION_TYPES:
            tar.extension_count += 1
            tar.extension_bytes += self.size
            if tar.extension_count > MAX_EXTENSION_HEADERS or tar.extension_bytes > MAX_EXTENSION_BYTES:
                raise _HeaderRefused(f"tar extension headers (pax, GNU long names) over {MAX_EXTENSION_HEADERS} "
                                     f"headers or {MAX_EXTENSION_BYTES} bytes")
        member: tarfile.TarInfo = super()._proc_member(tar)  # type: ignore[misc]
        return member


class _BoundedTarFile(tarfile.TarFile):
    """A TarFile that counts the extension headers `_BoundedTarInfo` let through."""

    extension_count = 0
    extension_bytes = 0


GNUTYPE_SPARSE = tarfile.GNUTYPE_SPARSE
EXTENSION_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                   tarfile.GNUTYPE_LONGLINK)
MAX_EXTENSION_HEADERS = 8
MAX_EXTENSION_BYTES = 64 * 1024
# A .npy header is a short dict literal; numpy's own default cap is 10000 bytes.
MAX_NPY_HEADER = 10_000
CHUNK = 1024 * 1024


def _member_problem(member: tarfile.TarInfo, seen: dict[str, Any], max_bytes: int) -> str | None:
    """Why `member` may not be in a shard, or None when it is one of the expected files."""
    name = member.name
    if name.startswith("/") or os.path.isabs(name):
        return f"absolute path {name!r}"
    if ".." in Path(name).parts:
        return f"path traversal {name!r}"
    if member.issym() or member.islnk():
        return f"link {name!r} -> {member.linkname!r}"
    if member.ischr() or member.isblk() or member.isfifo():
        return f"device or fifo {name!r}"
    if not member.isreg() or member.sparse is not None:
        return f"not a regular file {name!r}"
    if name not in MEMBERS:
        return f"unexpected member {name!r}"
    if name in seen:
        return f"duplicate member {name!r}"
    if member.size > (MAX_MANIFEST_BYTES if name == "manifest.json" else max_bytes):
        return f"member {name!r} too large ({member.size} bytes)"
    if name != "manifest.json" and "manifest.json" not in seen:
        return f"{name!r} comes before manifest.json (the manifest must be the first member)"
    return None


def _read_members(path: Path, max_bytes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The manifest and the two arrays, checked as they stream: structure of every tar header,
    the manifest before any array, each array's header and size before its data is read."""
    shard = str(path)
    seen: dict[str, Any] = {}
    try:
        with open(path, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
            capped = io.BufferedReader(_CappedReader(gz, max_bytes, shard))
            with _BoundedTarFile.open(fileobj=capped, mode="r|", tarinfo=_BoundedTarInfo) as tar:
                for member in tar:
                    problem = _member_problem(member, seen, max_bytes)
                    if problem:
                        raise ShardCorrupt(f"shard {shard}: {problem}")
                    fileobj = tar.extractfile(member)
                    assert fileobj is not None  # a regular file always has one
                    if member.name == "manifest.json":
                        seen[member.name] = _parse_manifest(shard, fileobj.read(member.size))
                    else:
                        seen[member.name] = _read_npy(shard, member.name, fileobj, member.size,
                                                      seen["manifest.json"]["members"][member.name])
    except _HeaderRefused as exc:
        raise ShardCorrupt(f"shard {shard}: {exc}") from exc
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise ShardCorrupt(f"shard {shard}: not a readable .tar.gz ({exc})") from exc
    missing = [name for name in MEMBERS if name not in seen]
    if missing:
        raise ShardCorrupt(f"shard {shard}: missing member(s) {', '.join(missing)}")
    return seen["manifest.json"], {name: seen[name] for name in ("x.npy", "y.npy")}


def _parse_manifest(shard: str, data: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ShardCorrupt(f"shard {shard}: manifest.json is not valid JSON ({exc})") from exc
    _check_manifest(shard, manifest)
    checked: dict[str, Any] = manifest  # a JSON object of the shard format, _check_manifest made sure
    return checked


def _read_npy(shard: str, name: str, stream: IO[bytes], size: int, entry: dict[str, Any]) -> np.ndarray:
    """Parse one `.npy` member as it streams, refusing before its data is read whatever does not
    add up: the manifest's size, the header (no object dtype, so nothing is ever unpickled), and
    the data length its shape declares. Only then is a buffer of the member's size allocated,
    filled while hashing, and checked against the manifest's sha256."""
    if size != entry.get("size"):
        raise ShardCorrupt(f"shard {shard}: sha256 or size of {name} does not match the manifest")
    head = stream.read(min(size, MAX_NPY_HEADER + 16))
    if not head.startswith(b"\x93NUMPY"):
        raise ShardCorrupt(f"shard {shard}: {name} is not a .npy file")
    fp = io.BytesIO(head)
    try:
        version = np.lib.format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp, max_header_size=MAX_NPY_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp, max_header_size=MAX_NPY_HEADER)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ShardCorrupt(f"shard {shard}: {name} cannot be loaded safely ({exc})") from exc
    if dtype.hasobject or fortran:
        raise ShardCorrupt(f"shard {shard}: {name} cannot be loaded safely (object dtype or Fortran order: "
                           "pickled arrays are never loaded)")
    offset = fp.tell()
    if math.prod(shape) * dtype.itemsize != size - offset:
        raise ShardCorrupt(f"shard {shard}: {name} declares {dtype} {list(shape)} but holds {size - offset} "
                           "bytes of data")
    buffer = bytearray(size)
    buffer[: len(head)] = head
    view, filled = memoryview(buffer), len(head)
    while filled < size:
        got = stream.readinto(view[filled : min(size, filled + CHUNK)])  # type: ignore[attr-defined]
        if not got:
            raise ShardCorrupt(f"shard {shard}: {name} is cut short")
        filled += got
    if hashlib.sha256(buffer).hexdigest() != entry.get("sha256"):
        raise ShardCorrupt(f"shard {shard}: sha256 or size of {name} does not match the manifest")
    return np.frombuffer(buffer, dtype=dtype, offset=offset).reshape(shape)


def _check_manifest(shard: str, manifest: Any) -> None:
    """The manifest's format and structure; raises `ShardCorrupt` on the first problem."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ShardCorrupt(f"shard {shard}: manifest format is not {FORMAT!r}")
    required = ("dataset", "split", "count", "x", "y", "classes", "normalisation", "members")
    absent = [key for key in required if key not in manifest]
    if absent:
        raise ShardCorrupt(f"shard {shard}: manifest lacks {', '.join(absent)}")
    shapes = (manifest["x"], manifest["y"], manifest["normalisation"], manifest["members"])
    if not all(isinstance(part, dict) for part in shapes) or not isinstance(manifest["classes"], list):
        raise ShardCorrupt(f"shard {shard}: manifest x, y, normalisation, members or classes malformed")
    if not isinstance(manifest["count"], int):
        raise ShardCorrupt(f"shard {shard}: manifest count is not an integer")
    if not isinstance(manifest["split"], str) or manifest["split"] not in SPLITS:
        raise ShardCorrupt(f"shard {shard}: split {manifest['split']!r} is not one of {SPLITS}")
    for name in ("x.npy", "y.npy"):
        if not isinstance(manifest["members"].get(name), dict):
            raise ShardCorrupt(f"shard {shard}: manifest has no sha256 for {name}")


def _check_arrays(shard: str, manifest: dict[str, Any], x: np.ndarray, y: np.ndarray) -> None:
    """Counts, shapes, dtypes, labels and normalisation agree with the manifest."""
    count = manifest["count"]
    if list(x.shape) != manifest["x"].get("shape") or str(x.dtype) != manifest["x"].get("dtype"):
        raise ShardCorrupt(f"shard {shard}: x is {x.dtype} {list(x.shape)}, manifest says {manifest['x']}")
    if list(y.shape) != manifest["y"].get("shape") or str(y.dtype) != manifest["y"].get("dtype"):
        raise ShardCorrupt(f"shard {shard}: y is {y.dtype} {list(y.shape)}, manifest says {manifest['y']}")
    if str(x.dtype) not in X_DTYPES or x.ndim != 4 or str(y.dtype) != Y_DTYPE or y.ndim != 1:
        raise ShardCorrupt(f"shard {shard}: x must be (N,C,H,W) uint8/float32 and y (N,) int64")
    if x.shape[0] != count or y.shape[0] != count:
        raise ShardCorrupt(f"shard {shard}: count {count} but x has {x.shape[0]} and y {y.shape[0]} samples")
    classes = manifest["classes"]
    if count and (y.min() < 0 or y.max() >= len(classes)):
        raise ShardCorrupt(f"shard {shard}: labels outside 0..{len(classes) - 1}")
    norm = manifest["normalisation"]
    channels = x.shape[1]
    try:
        ok = len(norm["mean"]) == channels and len(norm["std"]) == channels and float(norm["scale"]) > 0
        ok = ok and all(float(s) > 0 for s in norm["std"])
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise ShardCorrupt(f"shard {shard}: normalisation must give mean/std per channel ({channels}), std > 0")


def read_shard(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> Shard:
    """Read and verify a shard; raises `ShardCorrupt` (naming it and the reason) on any problem.

    `max_bytes` caps the uncompressed size of the whole archive.
    """
    path = Path(path)
    manifest, arrays = _read_members(path, max_bytes)
    _check_arrays(str(path), manifest, arrays["x.npy"], arrays["y.npy"])
    return Shard(manifest=manifest, x=arrays["x.npy"], y=arrays["y.npy"])
