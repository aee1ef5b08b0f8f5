"""Shard writer/reader: round trip, and every way a hostile or broken shard is refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import torch

from dataset_packer.shard import read_shard, write_shard
from owtrain.errors import ShardCorrupt
from tests.dataset_packer.helpers import INFO, members_for, npy, tiny_arrays, write_tar


def test_round_trip_and_normalised_tensors(tmp_path):
    x, y = tiny_arrays()
    manifest = write_shard(tmp_path / "s.tar.gz", x, y, INFO)
    shard = read_shard(tmp_path / "s.tar.gz")
    assert np.array_equal(shard.x, x) and np.array_equal(shard.y, y)
    assert shard.manifest == manifest and manifest["count"] == 12
    assert manifest["x"] == {"shape": [12, 1, 28, 28], "dtype": "uint8"}
    xt, yt = shard.to_tensors()
    assert xt.dtype == torch.float32 and yt.dtype == torch.int64 and xt.shape == (12, 1, 28, 28)
    expected = (x[0, 0, 0, 0] / 255.0 - 0.1307) / 0.3081
    assert xt[0, 0, 0, 0].item() == pytest.approx(expected, rel=1e-5)


def test_writer_is_reproducible(tmp_path):
    x, y = tiny_arrays()
    write_shard(tmp_path / "a.tar.gz", x, y, INFO)
    write_shard(tmp_path / "b.tar.gz", x, y, INFO)
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def _link(name, kind, target="/etc/passwd"):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info


@pytest.mark.parametrize(
    ("extra_entry", "reason"),
    [
        (tarfile.TarInfo("/etc/cron.d/evil"), "absolute path"),
        (tarfile.TarInfo("../../x.npy"), "path traversal"),
        (_link("x.npy", tarfile.SYMTYPE), "link"),
        (_link("y.npy", tarfile.LNKTYPE), "link"),
        (_link("x.npy", tarfile.CHRTYPE), "device"),
        (_link("x.npy", tarfile.BLKTYPE), "device"),
        (_link("x.npy", tarfile.FIFOTYPE), "fifo"),
        (_link("data", tarfile.DIRTYPE), "not a regular file"),
        (tarfile.TarInfo("evil.py"), "unexpected member"),
    ],
)
def test_hostile_members_are_refused(tmp_path, extra_entry, reason):
    path = write_tar(tmp_path / "bad.tar.gz", members_for(*tiny_arrays()), extra=[extra_entry])
    with pytest.raises(ShardCorrupt, match=reason) as err:
        read_shard(path)
    assert str(path) in str(err.value)


def test_missing_member_is_refused(tmp_path):
    members = members_for(*tiny_arrays())
    del members["y.npy"]
    with pytest.raises(ShardCorrupt, match="missing member"):
        read_shard(write_tar(tmp_path / "missing.tar.gz", members))


def test_duplicate_member_is_refused(tmp_path):
    members = members_for(*tiny_arrays())
    path = tmp_path / "dup.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("manifest.json", "x.npy", "x.npy", "y.npy"):
            info = tarfile.TarInfo(name)
            info.size = len(members[name])
            tar.addfile(info, io.BytesIO(members[name]))
    with pytest.raises(ShardCorrupt, match="duplicate member 'x.npy'"):
        read_shard(path)


def test_decompression_bomb_member_is_refused(tmp_path):
    x, y = tiny_arrays()
    members = members_for(x, y)
    members["x.npy"] = bytes(8 * 1024 * 1024)  # 8 MiB of zeros gzips to a few KB
    path = write_tar(tmp_path / "bomb.tar.gz", members)
    assert path.stat().st_size < 100_000
    with pytest.raises(ShardCorrupt, match="too large"):
        read_shard(path, max_bytes=1024 * 1024)


def test_tampered_member_fails_sha256(tmp_path):
    x, y = tiny_arrays()
    members = members_for(x, y)
    members["y.npy"] = npy((y + 1) % 10)  # same size, other labels
    with pytest.raises(ShardCorrupt, match="sha256 or size of y.npy"):
        read_shard(write_tar(tmp_path / "sha.tar.gz", members))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"count": 11}, "count 11"),
        ({"x": {"shape": [12, 3, 28, 28], "dtype": "uint8"}}, "x is uint8"),
        ({"y": {"shape": [12], "dtype": "int32"}}, "y is int64"),
        ({"classes": ["a", "b"]}, "labels outside"),
        ({"format": "owtrain-shard/0"}, "format"),
        ({"split": "validation"}, "split"),
        ({"normalisation": {"mean": [0.1, 0.2], "std": [0.3, 0.3], "scale": 255.0}}, "normalisation"),
        ({"members": {}}, "no sha256 for x.npy"),
    ],
)
def test_manifest_disagreeing_with_arrays_is_refused(tmp_path, change, reason):
    path = write_tar(tmp_path / "m.tar.gz", members_for(*tiny_arrays(), change))
    with pytest.raises(ShardCorrupt, match=reason):
        read_shard(path)


def test_pickle_inside_npy_is_never_loaded(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    x, y = tiny_arrays()
    members = members_for(x, y)
    evil = np.empty(1, dtype=object)
    evil[0] = Exploit()
    members["x.npy"] = npy(evil, allow_pickle=True)
    manifest = json.loads(members["manifest.json"])
    manifest["members"]["x.npy"]["size"] = len(members["x.npy"])
    manifest["members"]["x.npy"]["sha256"] = hashlib.sha256(members["x.npy"]).hexdigest()
    members["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(ShardCorrupt, match="cannot be loaded safely"):
        read_shard(write_tar(tmp_path / "pickle.tar.gz", members))
    assert not marker.exists()


def test_not_a_tarball_and_bad_json(tmp_path):
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not gzip at all")
    with pytest.raises(ShardCorrupt, match="not a readable"):
        read_shard(junk)
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(gzip.compress(b"\0" * 10))
    with pytest.raises(ShardCorrupt):
        read_shard(plain)
    members = members_for(*tiny_arrays())
    members["manifest.json"] = b"{not json"
    with pytest.raises(ShardCorrupt, match="not valid JSON"):
        read_shard(write_tar(tmp_path / "json.tar.gz", members))
