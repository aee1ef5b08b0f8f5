"""Hostile shards are refused with ShardCorrupt before anything trains on them, and refusing one
costs bounded memory: the action's shard reader runs in a subprocess under a real address-space
limit (RLIMIT_AS = what the reader needs at rest + 256 MB, OpenWhisk's default action memory),
with tracemalloc measuring the peak of each refusal.

The archives are small on disk but declare or expand to far more than the limit: pax and GNU
long-name headers of 64 MB, chains of extension headers, .npy headers declaring terabytes, tar
members declaring gigabytes, streams expanding past the cap. The reader must refuse each from what
it has read so far, never by allocating what the archive declares. The cases tests/dataset_packer/
test_shard.py already checks one by one (links, devices, traversal, tampered sha, pickles) run here
too, under the limit.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
import tarfile
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest

from tests.dataset_packer.helpers import members_for, npy, tiny_arrays, write_tar

CAP = 64 * 1024 * 1024  # the reader's max_bytes here: what a 256 MB action can hold with room to train
HEADROOM = 256 * 1024 * 1024
MiB = 1024 * 1024


def _block(name: str, size: int, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mode = size, kind, linkname, 0o644
    gnu = kind == tarfile.GNUTYPE_SPARSE or size >= 8**11  # sizes of 8 GiB and more need base-256
    return info.tobuf(format=tarfile.GNU_FORMAT if gnu else tarfile.USTAR_FORMAT)


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 512)


def _member(name: str, data: bytes) -> bytes:
    return _block(name, len(data)) + data + _pad(len(data))


def _stream(path: Path, parts: Iterable[bytes]) -> Path:
    """Write a .tar.gz from raw tar bytes, chunk by chunk (the test never holds a bomb in memory)."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as gz:
        for part in parts:
            gz.write(part)
    return path


def _zeros(n: int, fill: bytes = b"\0") -> Iterable[bytes]:
    chunk = fill * MiB
    for _ in range(n // MiB):
        yield chunk
    yield fill * (n % MiB)


def _valid() -> dict[str, bytes]:
    return members_for(*tiny_arrays())


def _with_manifest_for(members: dict[str, bytes]) -> dict[str, bytes]:
    """Re-sign the manifest so that the hostile member's sha256 and size match (it reaches parsing)."""
    manifest = json.loads(members["manifest.json"])
    for name in ("x.npy", "y.npy"):
        manifest["members"][name] = {"sha256": hashlib.sha256(members[name]).hexdigest(), "size": len(members[name])}
    return {**members, "manifest.json": json.dumps(manifest).encode()}


def _npy_header(shape: tuple[int, ...], dtype: str = "|u1") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _body(members: dict[str, bytes]) -> bytes:
    return b"".join(_member(name, data) for name, data in members.items())


END = b"\0" * 1024


def pax_header_bomb(path: Path) -> Path:
    return _stream(path, [_block("././@PaxHeader", 64 * MiB, tarfile.XHDTYPE), *_zeros(64 * MiB, b"A"),
                          _body(_valid()), END])


def gnu_longname_bomb(path: Path) -> Path:
    return _stream(path, [_block("././@LongLink", 64 * MiB, tarfile.GNUTYPE_LONGNAME), *_zeros(64 * MiB, b"a"),
                          _body(_valid()), END])


def global_pax_chain(path: Path) -> Path:
    record = b"20 comment=aaaaaaaa\n"
    one = _block("pax_global_header", len(record), tarfile.XGLTYPE) + record + _pad(len(record))
    return _stream(path, [one * 20_000, _body(_valid()), END])


def pax_recursion_chain(path: Path) -> Path:
    # each per-file pax header is followed by another: tarfile follows them by recursion
    return _stream(path, [_block("././@PaxHeader", 0, tarfile.XHDTYPE) * 50_000, _body(_valid()), END])


def npy_declares_terabytes(path: Path) -> Path:
    members = _valid()
    members["x.npy"] = _npy_header((2**40, 1, 28, 28)) + b"\0" * 1024
    return write_tar(path, _with_manifest_for(members))


def npy_declares_more_than_it_holds(path: Path) -> Path:
    members = _valid()
    members["x.npy"] = _npy_header((100_000, 1, 28, 28)) + b"\0" * (28 * 28)  # 78 MB declared, 784 B held
    return write_tar(path, _with_manifest_for(members))


def member_declares_gigabytes(path: Path) -> Path:
    members = _valid()
    return _stream(path, [_member("manifest.json", members["manifest.json"]), _block("x.npy", 2**33),
                          *_zeros(4 * MiB), END])


def expands_past_the_cap(path: Path) -> Path:
    """Two members each under the cap that together expand past it (a consistent, signed manifest)."""
    half = CAP // 2 + MiB
    x_head, y_head = _npy_header((half // 784, 1, 28, 28)), _npy_header((half // 8,), "<i8")
    x_size, y_size = len(x_head) + (half // 784) * 784, len(y_head) + (half // 8) * 8
    manifest = json.loads(_valid()["manifest.json"])
    x_sha = hashlib.sha256(x_head)
    for chunk in _zeros(x_size - len(x_head)):
        x_sha.update(chunk)
    manifest["members"] = {"x.npy": {"sha256": x_sha.hexdigest(), "size": x_size},
                           "y.npy": {"sha256": "0" * 64, "size": y_size}}
    mbytes = json.dumps(manifest).encode()
    return _stream(path, [_member("manifest.json", mbytes), _block("x.npy", x_size), x_head,
                          *_zeros(x_size - len(x_head)), _pad(x_size), _block("y.npy", y_size), y_head,
                          *_zeros(y_size - len(y_head)), _pad(y_size), END])


def many_members(path: Path) -> Path:
    return _stream(path, [_member(f"m{i}.txt", b"x") for i in range(100_000)] + [END])


def repeated_manifest(path: Path) -> Path:
    manifest = _valid()["manifest.json"]
    return _stream(path, [_member("manifest.json", manifest) * 10_000, END])


def sparse_member(path: Path) -> Path:
    members = _valid()
    return _stream(path, [_member("manifest.json", members["manifest.json"]),
                          _block("x.npy", len(members["x.npy"]), tarfile.GNUTYPE_SPARSE), END])


def manifest_not_first(path: Path) -> Path:
    members = _valid()
    return write_tar(path, {"x.npy": members["x.npy"], "manifest.json": members["manifest.json"],
                            "y.npy": members["y.npy"]})


def lying_manifest_size(path: Path) -> Path:
    members = _valid()
    manifest = json.loads(members["manifest.json"])
    manifest["members"]["x.npy"]["size"] = 10
    return write_tar(path, {**members, "manifest.json": json.dumps(manifest).encode()})


def lying_manifest_count(path: Path) -> Path:
    return write_tar(path, members_for(*tiny_arrays(), {"count": 10**12}))


def deep_manifest(path: Path) -> Path:
    return write_tar(path, {**_valid(), "manifest.json": b"[" * 500_000 + b"]" * 500_000})


def huge_number_manifest(path: Path) -> Path:
    return write_tar(path, {**_valid(), "manifest.json": b'{"count": ' + b"9" * 500_000 + b"}"})


def pickled_object_array(path: Path) -> Path:
    evil = np.empty(2, dtype=object)
    evil[:] = [{"a": 1}, "b"]
    return write_tar(path, _with_manifest_for({**_valid(), "x.npy": npy(evil, allow_pickle=True)}))


def fortran_order_array(path: Path) -> Path:
    x, _ = tiny_arrays()
    return write_tar(path, _with_manifest_for({**_valid(), "x.npy": npy(np.asfortranarray(x))}))


def corrupt_deflate(path: Path) -> Path:
    good = write_tar(path.with_suffix(".good"), _valid()).read_bytes()
    path.write_bytes(good[:40] + bytes(b ^ 0x5A for b in good[40:200]) + good[200:])
    return path


def tampered_sha(path: Path) -> Path:
    members = _valid()
    x, y = tiny_arrays()
    members["y.npy"] = npy((y + 1) % 10)
    return write_tar(path, members)


def _entry(info: tarfile.TarInfo) -> Callable[[Path], Path]:
    return lambda path: write_tar(path, _valid(), extra=[info])


def _link(name: str, kind: bytes, target: str = "/etc/passwd") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


# name -> (builder, a word the refusal names, whether it must be refused before any data is buffered)
HOSTILE: dict[str, tuple[Callable[[Path], Path], str, bool]] = {
    "pax header bomb (64 MB)": (pax_header_bomb, "extension headers", True),
    "GNU long-name bomb (64 MB)": (gnu_longname_bomb, "extension headers", True),
    "20,000 global pax headers": (global_pax_chain, "extension headers", True),
    "50,000 chained pax headers": (pax_recursion_chain, "extension headers", True),
    ".npy declaring 2**40 samples": (npy_declares_terabytes, "declares", True),
    ".npy declaring 78 MB, holding 1 KB": (npy_declares_more_than_it_holds, "declares", True),
    "member declaring 8 GiB": (member_declares_gigabytes, "too large", True),
    "expands past the cap": (expands_past_the_cap, "more than", False),
    "100,000 members": (many_members, "unexpected member", True),
    "10,000 manifests": (repeated_manifest, "duplicate member", True),
    "sparse member": (sparse_member, "sparse", True),
    "manifest not first": (manifest_not_first, "must be the first", True),
    "manifest lies about a size": (lying_manifest_size, "size of x.npy", True),
    "manifest lies about the count": (lying_manifest_count, "count", True),
    "manifest nested 500,000 deep": (deep_manifest, "not valid JSON", True),
    "manifest with a 500,000-digit number": (huge_number_manifest, "not valid JSON", True),
    "pickled object array": (pickled_object_array, "pickled", True),
    "Fortran-order array": (fortran_order_array, "Fortran", True),
    "corrupt deflate stream": (corrupt_deflate, "not a readable", True),
    "tampered sha256": (tampered_sha, "sha256", True),
    "absolute path": (_entry(tarfile.TarInfo("/etc/cron.d/evil")), "absolute path", True),
    "path traversal": (_entry(tarfile.TarInfo("../../x.npy")), "path traversal", True),
    "symlink": (_entry(_link("x.npy", tarfile.SYMTYPE)), "link", True),
    "hardlink": (_entry(_link("y.npy", tarfile.LNKTYPE)), "link", True),
    "character device": (_entry(_link("x.npy", tarfile.CHRTYPE)), "device", True),
    "fifo": (_entry(_link("x.npy", tarfile.FIFOTYPE)), "fifo", True),
}

READER = textwrap.dedent("""
    import json, resource, sys, time, tracemalloc
    from dataset_packer.shard import read_shard
    from owtrain.errors import ShardCorrupt

    def vm_bytes():
        for line in open("/proc/self/status"):
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024

    cap, headroom, paths = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
    limit = vm_bytes() + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        bytearray(headroom + 64 * 1024 * 1024)
        over = "allocated past the limit"
    except MemoryError:
        over = "MemoryError"
    out = {"limit_over_baseline": headroom, "over_limit_allocation": over, "results": []}
    for path in paths:
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            shard = read_shard(path, max_bytes=cap)
            outcome, message = "loaded", str(shard.x.shape)
        except ShardCorrupt as exc:
            outcome, message = "ShardCorrupt", str(exc)
        except BaseException as exc:
            outcome, message = type(exc).__name__, str(exc)[:300]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        out["results"].append({"path": path, "outcome": outcome, "message": message[:400], "peak": peak,
                               "seconds": round(time.perf_counter() - t0, 3)})
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("hostile")
    paths = {name: str(build(folder / f"s{i}.tar.gz")) for i, (name, (build, _, _)) in enumerate(HOSTILE.items())}
    valid = write_tar(folder / "valid.tar.gz", _valid())
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", READER, str(CAP), str(HEADROOM), str(valid), *paths.values()],
                          capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).parents[2])
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    by_path = {r["path"]: r for r in out["results"]}
    return {"limit": out, "valid": by_path[str(valid)], "sizes": {n: Path(p).stat().st_size for n, p in paths.items()},
            **{name: by_path[p] for name, p in paths.items()}}


def test_the_memory_limit_is_real_and_a_valid_shard_fits(refusals):
    assert refusals["limit"]["over_limit_allocation"] == "MemoryError"
    assert refusals["valid"]["outcome"] == "loaded", refusals["valid"]


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_shard_is_refused_within_the_limit(refusals, case):
    _, word, before_data = HOSTILE[case]
    result = refusals[case]
    assert result["outcome"] == "ShardCorrupt", result
    assert word in result["message"], result["message"]
    # refused from what was read so far: a small constant (the manifest is at most 1 MiB), or at most
    # the cap when the archive really expands that far before it goes wrong
    bound = 4 * MiB if before_data else CAP + 8 * MiB
    assert result["peak"] <= bound, (case, result["peak"])
    assert refusals["sizes"][case] < 2 * MiB, "the hostile archive itself must be small"
