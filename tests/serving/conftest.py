"""Fixtures of the serving tests: `owtrain serve` as its own process on a loopback port."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.common import PYTHON, ServiceProcess, free_port, wait_http


class ServeProcess:
    """A running `owtrain serve`; `url` is its base URL, `log_text()` what it wrote."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [PYTHON, "-m", "commands", "serve", "--port", str(self.port), *args]
        self.service = ServiceProcess(argv, log_path, env=env)
        wait_http(self.url + "/healthz", timeout=60, proc=self.service.proc)

    def predict(self, path: str, body: dict | None = None, **kw) -> requests.Response:
        return requests.post(f"{self.url}/v1/models/{path}:predict", json=body, timeout=60, **kw)

    def wait_for(self, predicate: Callable[[dict], bool], model: str, timeout: float = 30.0) -> dict:
        """Poll GET /v1/models/MODEL until `predicate(status)` holds."""
        deadline = time.monotonic() + timeout
        while True:
            reply = requests.get(f"{self.url}/v1/models/{model}", timeout=10)
            if reply.status_code == 200 and predicate(reply.json()):
                return reply.json()
            assert time.monotonic() < deadline, f"timed out; last status {reply.status_code} {reply.text[:300]}"
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.service.log_text()

    def stop(self) -> None:
        self.service.stop()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Factory: `serve_process(["--repository", str(repo), ...], env={...})`; all stopped afterwards."""
    started: list[ServeProcess] = []

    def start(args: list[str], env: dict[str, str] | None = None) -> ServeProcess:
        proc = ServeProcess(args, tmp_path / f"serve-{uuid.uuid4().hex[:6]}.log", env)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        text = proc.service.log_path.read_text(errors="replace")
        assert "Traceback" not in text, text[-3000:]
