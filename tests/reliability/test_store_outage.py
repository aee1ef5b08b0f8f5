"""The S3 store stopped mid-download: the activation fails with a named error (StoreUnreachable)
and trains on nothing, and once the store is back the next activation resumes the download with
`Range` and trains on the whole, verified shard.

The store is moto's S3 server (the embedded store of `owtrain local`) as its own process, so the
test can SIGKILL it while the real action server (a real activation of the training action) is
in the middle of downloading a 19 MB shard, and start it again on the same port.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests

from dataset_packer.stores import open_store
from owtrain.s3 import S3Settings
from tests.actions.helpers import UploadedShard, action_params, upload_shard
from tests.fixtures.action import start_action_server
from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http

N = 25_000  # 19 MB of uint8 pixels: a download long enough to be cut in the middle
BUCKET = "outage"


class Moto:
    """moto's S3 server as a process that can be killed and started again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder, self.runs = free_port(), folder, 0
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: ServiceProcess | None = None

    def start(self) -> Moto:
        self.runs += 1
        moto = str(Path(PYTHON).with_name("moto_server"))
        self.proc = ServiceProcess([moto, "-H", "127.0.0.1", "-p", str(self.port)],
                                   self.folder / f"moto-{self.runs}.log")
        wait_http(self.endpoint + "/", timeout=30, proc=self.proc.proc)
        return self

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill(signal.SIGKILL)

    def log_text(self) -> str:
        assert self.proc is not None
        return self.proc.log_text()


def _store(moto: Moto):
    store = open_store("s3", S3Settings(moto.endpoint, BUCKET, "outage-access", "outage-secret"))
    store.ensure_bucket()
    return store


@pytest.fixture
def moto(tmp_path):
    server = Moto(tmp_path).start()
    yield server
    if server.proc:
        server.proc.stop()


def _wait_for_part(cache: Path, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for part in cache.glob("*.part"):
            size = part.stat().st_size
            if size >= at_least:
                return size
        time.sleep(0.002)
    raise AssertionError("the download never started")


def test_store_killed_mid_download_then_back(ps_server, moto, tmp_path):
    ps = ps_server(model="mlp", strategy="async")
    shard: UploadedShard = upload_shard(_store(moto), tmp_path, "train/outage-0.tar.gz", N)
    size = shard.path.stat().st_size
    url = shard.url()
    server = start_action_server(tmp_path, env={"OWTRAIN_LOG": "INFO"})
    cache = Path(server.service.log_path).with_suffix(".cache")  # the server's own shard cache
    try:
        assert server.init().status_code == 200
        params = {**action_params(ps, shard), "dataset_url": url, "batch_sz_train": 64, "time_budget_s": 6.0}

        # 1. the store dies while the action downloads, and stays down: a named error, nothing trained
        reply: dict = {}
        run = threading.Thread(target=lambda: reply.update(
            result=server.run(params, deadline_ms=int(time.time() * 1000) + 12_000)[1]))
        run.start()
        cut_at = _wait_for_part(cache, 2 * 1024 * 1024)
        moto.kill()
        run.join(timeout=120)
        result = reply["result"]
        assert "StoreUnreachable" in result.get("error", ""), result
        assert not result.get("samples"), result
        assert requests.get(ps.url + "/status", timeout=10).json()["updates"]["applied"] == 0
        assert not list(cache.glob(f"{shard.sha256}.tar.gz")), "a partial shard must never be cached as whole"
        (part,) = cache.glob("*.part")
        kept = part.stat().st_size
        assert cut_at <= kept < size, (cut_at, kept, size)

        # 2. the store is back (same port, the object uploaded again): the same URL resumes with Range
        moto.start()
        upload_shard(_store(moto), tmp_path / "again", "train/outage-0.tar.gz", N)
        status, result = server.run(params, deadline_ms=int(time.time() * 1000) + 120_000)
        assert status == 200 and "error" not in result and result["samples"] > 0, result
        assert (cache / f"{shard.sha256}.tar.gz").read_bytes() == shard.path.read_bytes()
        # werkzeug's request lines (colour codes around the request when it thinks it has a terminal)
        ranges = re.findall(r"GET /" + BUCKET + r'/train/outage-0\.tar\.gz\?\S+ HTTP/1\.1[^"]*" (\d+)', moto.log_text())
        assert ranges == ["206"], ranges  # one request, answered with the rest of the object only
        assert requests.get(ps.url + "/status", timeout=10).json()["updates"]["applied"] > 0
        print(f"store killed after {cut_at} of {size} bytes; {kept} kept; resumed with one 206; "
              f"trained {result['samples']} samples")
    finally:
        server.stop()
