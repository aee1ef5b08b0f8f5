"""The `Store` contract, run against every backend and every S3 server we have (Swift, moto)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import timedelta

import pytest
import requests

from dataset_packer.stores import STORES, open_store
from owtrain.s3 import S3Settings

SERVERS = ["swift", "moto"]


@pytest.fixture(params=[(kind, server) for kind in STORES for server in SERVERS], ids=lambda p: "-".join(p))
def store(request):
    kind, server = request.param
    if server == "swift":
        s3 = request.getfixturevalue("swift_s3")
        endpoint, access, secret = s3.endpoint, s3.access_key, s3.secret_key
    else:
        endpoint, access, secret = request.getfixturevalue("moto_s3"), "any", "any-secret"
    bucket = f"contract-{uuid.uuid4().hex[:12]}"
    return open_store(kind, S3Settings(endpoint, bucket, access, secret))


def test_store_contract(store, tmp_path):
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    assert store.stat("a/one.tar.gz") is None
    path = tmp_path / "one.tar.gz"
    path.write_bytes(b"shard bytes " * 1000)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    sent = []
    store.put_file("a/one.tar.gz", path, sha, "train", progress=sent.append)
    assert sum(sent) == path.stat().st_size
    info = store.stat("a/one.tar.gz")
    assert (info.key, info.size, info.sha256, info.split) == ("a/one.tar.gz", 12000, sha, "train")
    store.put_file("b/two.tar.gz", path, sha, "test")
    assert [o.key for o in store.list("a/")] == ["a/one.tar.gz"]
    assert [o.key for o in store.list()] == ["a/one.tar.gz", "b/two.tar.gz"]  # in key order
    assert [o.key for o in store.list(start_after="a/one.tar.gz")] == ["b/two.tar.gz"]
    url = store.presign_get("a/one.tar.gz", timedelta(minutes=2))
    assert requests.get(url, timeout=10).content == path.read_bytes()


def test_unknown_store_kind():
    with pytest.raises(ValueError, match="known: s3"):
        open_store("gcs", S3Settings("http://x", "b", "k", "s"))
