"""The whole path through the real CLI and the real Swift server:
data fetch → pack → upload → presign → fetch_shard → read_shard gives back exactly the original data."""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
import pytest

from dataset_packer.download import fetch_shard
from dataset_packer.idx import IDX_FILES, read_idx
from dataset_packer.shard import read_shard
from owtrain.s3 import S3Settings
from tests.fixtures.common import PYTHON

pytestmark = pytest.mark.swift


def owtrain(*args: str, swift=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OWTRAIN_S3_ACCESS_KEY": "", "OWTRAIN_S3_SECRET_KEY": ""}
    if swift is not None:
        env.update(OWTRAIN_S3_ACCESS_KEY=swift.access_key, OWTRAIN_S3_SECRET_KEY=swift.secret_key)
    return subprocess.run([PYTHON, "-m", "commands", *args], env=env, capture_output=True, text=True, timeout=120)


def test_round_trip_gives_back_the_original_images(swift_s3, data_dir, tmp_path):
    cache = ["--cache-dir", str(data_dir), "--offline"]
    fetched = owtrain("data", "fetch", "mnist", *cache)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(data_dir / "mnist")
    packed = owtrain("pack", "mnist", "--shards", "6", "--out", str(tmp_path / "shards"), *cache)
    assert packed.returncode == 0, packed.stderr
    store = ["--endpoint", swift_s3.endpoint, "--bucket", "roundtrip"]
    up = owtrain("upload", str(tmp_path / "shards"), *store, swift=swift_s3)
    assert up.returncode == 0 and "uploaded 8 shard(s), 0 already present" in up.stdout, up.stderr
    again = owtrain("upload", str(tmp_path / "shards"), *store, "--no-progress", swift=swift_s3)
    assert "uploaded 0 shard(s), 8 already present" in again.stdout, again.stderr
    public = swift_s3.endpoint.replace("127.0.0.1", "localhost")
    signed = owtrain("presign", *store, "--expires", "10m", "--out", str(tmp_path / "urls.json"),
                     "--public-endpoint", public, swift=swift_s3)
    assert signed.returncode == 0, signed.stderr
    for run in (fetched, packed, up, again, signed):
        assert swift_s3.secret_key not in run.stdout + run.stderr  # credentials are never printed
    entries = json.loads((tmp_path / "urls.json").read_text())
    assert [e["split"] for e in entries] == ["train"] * 6 + ["val", "test"]
    assert all(e["url"].startswith(public) and e["expires"].endswith("Z") for e in entries)

    shards = [read_shard(fetch_shard(e["url"], e["sha256"], tmp_path / "cache")) for e in entries]
    original = data_dir / "mnist"
    # the 5,000 held-out validation samples and the 55,000 left for training are the training split
    assert [s.manifest["count"] for s in shards[6:]] == [5000, 10_000]
    train_x = np.concatenate([s.x for s in shards[:7]])[:, 0]
    train_y = np.concatenate([s.y for s in shards[:7]])
    want_x, want_y = read_idx(original / IDX_FILES[0]), read_idx(original / IDX_FILES[1])
    def rows(x, y):
        return sorted(zip((r.tobytes() for r in x), y.tolist(), strict=True))
    assert rows(train_x, train_y) == rows(want_x, want_y)
    assert np.array_equal(shards[7].x[:, 0], read_idx(original / IDX_FILES[2]))
    assert np.array_equal(shards[7].y, read_idx(original / IDX_FILES[3]))
    assert [e["size"] for e in entries] == [(tmp_path / "shards" / e["key"]).stat().st_size for e in entries]


def test_cli_refuses_bad_expiry_missing_credentials_and_unverifiable_objects(swift_s3, tmp_path):
    store = ["--endpoint", swift_s3.endpoint, "--bucket", "refusals", "--out", str(tmp_path / "u.json")]
    too_long = owtrain("presign", *store, "--expires", "8d", swift=swift_s3)
    assert too_long.returncode == 1 and "between 1 second and 7 days" in too_long.stderr
    nonsense = owtrain("presign", *store, "--expires", "soon", swift=swift_s3)
    assert nonsense.returncode == 1 and "not a duration" in nonsense.stderr
    no_keys = owtrain("presign", *store)
    assert no_keys.returncode == 1 and "no S3 credentials" in no_keys.stderr
    client = swift_s3.client()
    client.make_bucket("refusals")
    client.put_object("refusals", "foreign.tar.gz", io.BytesIO(b"x"), 1)
    foreign = owtrain("presign", *store, swift=swift_s3)
    assert foreign.returncode == 1 and "no sha256/split metadata" in foreign.stderr
    assert not (tmp_path / "u.json").exists()


def test_store_config_repr_hides_credentials():
    text = repr(S3Settings("http://h:1", "b", "AKIAEXAMPLE", "s3cr3t-value"))
    assert "s3cr3t-value" not in text and "AKIAEXAMPLE" not in text


def test_upload_and_presign_under_a_prefix(swift_s3, tmp_path):
    from datetime import timedelta

    from dataset_packer.pack import pack
    from dataset_packer.presign import presign_all
    from dataset_packer.sources.base import finish
    from dataset_packer.stores import open_store
    from dataset_packer.upload import upload_dir

    rng = np.random.default_rng(0)
    ds = finish("toy", (rng.integers(0, 256, (12, 1, 4, 4), dtype=np.uint8), np.arange(12) % 3), None)
    pack(ds, 3, tmp_path)
    store = open_store("s3", S3Settings(swift_s3.endpoint, "prefixed", swift_s3.access_key, swift_s3.secret_key))
    first = upload_dir(store, tmp_path, prefix="job-a/", progress=False)
    upload_dir(store, tmp_path, prefix="job-b/", progress=False)
    assert [u.key for u in first] == [f"job-a/toy-train-0000{i}-of-00003.tar.gz" for i in range(3)]
    entries = presign_all(store, timedelta(minutes=5), prefix="job-a/")
    assert [e["key"] for e in entries] == [u.key for u in first]
    assert [e["sha256"] for e in entries] == [u.sha256 for u in first]
