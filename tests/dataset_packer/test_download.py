"""fetch_shard against the real Swift S3 server: every presigned-URL outcome, cache and resume."""

from __future__ import annotations

import hashlib
import http.server
import logging
import os
import threading
import time
from datetime import timedelta

import pytest
import requests

from dataset_packer.download import cached_path, fetch_shard
from dataset_packer.shard import read_shard, write_shard
from dataset_packer.stores import open_store
from owtrain.errors import (
    BadRequest,
    ObjectMissing,
    ShardCorrupt,
    SignatureMismatch,
    StoreUnreachable,
    UrlExpired,
)
from owtrain.retry import RetryPolicy
from owtrain.s3 import S3Settings
from tests.dataset_packer.helpers import INFO, tiny_arrays
from tests.fixtures.common import free_port

FAST = RetryPolicy(attempts=2, base=0.01, cap=0.05)
pytestmark = pytest.mark.swift


@pytest.fixture(scope="module")
def uploaded(swift_s3, tmp_path_factory):
    """(store, key, sha256, local path) of one shard uploaded to a fresh bucket."""
    path = tmp_path_factory.mktemp("src") / "tiny-train-00000-of-00001.tar.gz"
    write_shard(path, *tiny_arrays(n=2000), INFO)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    config = S3Settings(swift_s3.endpoint, "owtrain-download", swift_s3.access_key, swift_s3.secret_key)
    store = open_store("s3", config)
    store.ensure_bucket()
    store.put_file(path.name, path, sha, "train")
    return store, path.name, sha, path


def test_download_verifies_and_then_serves_from_cache(uploaded, tmp_path):
    store, key, sha, src = uploaded
    got = fetch_shard(store.presign_get(key, timedelta(minutes=5)), sha, tmp_path)
    assert got == cached_path(tmp_path, sha) and got.read_bytes() == src.read_bytes()
    assert read_shard(got).manifest["count"] == 2000
    # A warm container: the cached file is used even though this URL points nowhere.
    dead = f"http://127.0.0.1:{free_port()}/owtrain-download/{key}"
    assert fetch_shard(dead, sha, tmp_path, policy=FAST) == got
    assert [p.name for p in tmp_path.iterdir()] == [got.name]


def test_stale_cached_file_is_replaced(uploaded, tmp_path):
    store, key, sha, src = uploaded
    cached_path(tmp_path, sha).write_bytes(b"an older, different shard")
    got = fetch_shard(store.presign_get(key, timedelta(minutes=5)), sha, tmp_path)
    assert got.read_bytes() == src.read_bytes()


def test_expired_url(uploaded, tmp_path):
    store, key, sha, _ = uploaded
    url = store.presign_get(key, timedelta(seconds=1))
    time.sleep(2.1)
    with pytest.raises(UrlExpired, match="expired"):
        fetch_shard(url, sha, tmp_path)
    assert not any(tmp_path.iterdir())


def test_tampered_signature(uploaded, tmp_path):
    store, key, sha, _ = uploaded
    url = store.presign_get(key, timedelta(minutes=5))
    sig = url.rsplit("X-Amz-Signature=", 1)[1][:64]
    tampered = url.replace(sig, ("0" if sig[0] != "0" else "1") + sig[1:])
    with pytest.raises(SignatureMismatch, match="SignatureDoesNotMatch") as err:
        fetch_shard(tampered, sha, tmp_path)
    assert "X-Amz-Signature" not in str(err.value)  # the credential never reaches messages or logs


def test_url_signed_for_another_host_name(swift_s3, uploaded, tmp_path):
    store, key, sha, _ = uploaded
    public = swift_s3.endpoint.replace("127.0.0.1", "localhost")
    signer = open_store("s3", store.config, public_endpoint=public)
    url = signer.presign_get(key, timedelta(minutes=5))
    assert url.startswith(public)
    assert fetch_shard(url, sha, tmp_path / "ok").exists()  # the host it was signed for works
    with pytest.raises(SignatureMismatch):
        fetch_shard(url.replace("localhost", "127.0.0.1"), sha, tmp_path / "bad")


def test_missing_object(uploaded, tmp_path):
    store, _, sha, _ = uploaded
    with pytest.raises(ObjectMissing, match="404"):
        fetch_shard(store.presign_get("no-such-shard.tar.gz", timedelta(minutes=5)), sha, tmp_path)


def test_unreachable_store(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/bucket/shard.tar.gz?X-Amz-Signature=abc"
    with pytest.raises(StoreUnreachable, match="after 2 attempt"):
        fetch_shard(url, "a" * 64, tmp_path, policy=FAST)


def test_size_cap_and_wrong_sha256(uploaded, tmp_path):
    store, key, sha, src = uploaded
    url = store.presign_get(key, timedelta(minutes=5))
    with pytest.raises(ShardCorrupt, match="cap"):
        fetch_shard(url, sha, tmp_path, max_bytes=src.stat().st_size - 1)
    with pytest.raises(ShardCorrupt, match=f"expected {'b' * 64}"):
        fetch_shard(url, "b" * 64, tmp_path)
    assert not any(tmp_path.iterdir())  # nothing unverified is left behind
    with pytest.raises(BadRequest, match="64 hex digits"):
        fetch_shard(url, "../../etc/passwd", tmp_path)


def test_partial_download_resumes_with_range(uploaded, tmp_path, caplog):
    store, key, sha, src = uploaded
    half = src.stat().st_size // 2
    # A partial file from an interrupted attempt. Its bytes are wrong on purpose: only a Range
    # request keeps them, so the hash check must catch it and download once more from scratch.
    (tmp_path / f"{sha}.{os.getpid()}.part").write_bytes(bytes(half))
    with caplog.at_level(logging.WARNING, logger="dataset_packer.download"):
        got = fetch_shard(store.presign_get(key, timedelta(minutes=5)), sha, tmp_path)
    assert got.read_bytes() == src.read_bytes()
    assert "retrying once from scratch" in caplog.text


class _FlakyRelay(http.server.BaseHTTPRequestHandler):
    """Relays GETs to Swift; its first answer fails as a flaky network or store would (`fault`)."""

    upstream = ""
    fault = "drop"
    seen: list[str | None] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        headers = {"Host": self.headers["Host"]}
        if self.headers.get("Range"):
            headers["Range"] = self.headers["Range"]
        self.seen.append(self.headers.get("Range"))
        first = len(self.seen) == 1
        if first and self.fault == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        up = requests.get(self.upstream + self.path, headers=headers, timeout=10)
        self.send_response(up.status_code)
        self.send_header("Content-Length", up.headers["Content-Length"])
        self.end_headers()
        self.wfile.write(up.content[: len(up.content) // 2] if first else up.content)  # "drop": cut off
        self.close_connection = True

    def log_message(self, *args):
        pass


def _fetch_through_relay(swift_s3, uploaded, tmp_path, fault):
    store, key, sha, src = uploaded
    relay = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyRelay)
    _FlakyRelay.upstream, _FlakyRelay.fault, _FlakyRelay.seen = swift_s3.endpoint, fault, []
    thread = threading.Thread(target=relay.serve_forever, daemon=True)
    thread.start()
    try:
        signer = open_store("s3", store.config, public_endpoint=f"http://127.0.0.1:{relay.server_address[1]}")
        got = fetch_shard(signer.presign_get(key, timedelta(minutes=5)), sha, tmp_path, policy=FAST)
    finally:
        relay.shutdown()
        relay.server_close()
    assert got.read_bytes() == src.read_bytes()
    return _FlakyRelay.seen, src.stat().st_size


def test_connection_dropped_mid_download_resumes(swift_s3, uploaded, tmp_path):
    (first, resumed), size = _fetch_through_relay(swift_s3, uploaded, tmp_path, "drop")
    assert first is None and resumed.startswith("bytes=") and resumed.endswith("-")
    assert 0 < int(resumed[6:-1]) <= size // 2  # what arrived was kept, not fetched again


def test_store_error_is_retried(swift_s3, uploaded, tmp_path):
    seen, _ = _fetch_through_relay(swift_s3, uploaded, tmp_path, "503")
    assert seen == [None, None]
