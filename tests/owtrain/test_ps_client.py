"""The parameter-server client's transport failures, against a real socket that misbehaves."""

from __future__ import annotations

import socket
import threading

import pytest
import torch

from owtrain.errors import ServerUnavailable
from owtrain.ps_client import PSClient
from owtrain.retry import RetryPolicy


def test_an_answer_cut_short_is_retried_then_reported_as_server_unavailable():
    """A server killed while it sends a pull's body (a broken chunked/short read) is a transport
    failure like a refused connection: retried, then ServerUnavailable, never a raw requests error."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    answered: list[int] = []

    def serve_truncated() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the test closed the listener
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
                answered.append(1)

    threading.Thread(target=serve_truncated, daemon=True).start()
    client = PSClient(f"http://127.0.0.1:{port}", "token", timeout=5, policy=RetryPolicy(attempts=3, base=0.01))
    try:
        with pytest.raises(ServerUnavailable, match="cut short"):
            client.pull(None)
    finally:
        client.close()
        listener.close()
    assert len(answered) == 3  # every attempt was made


def test_an_answer_that_is_not_a_parameter_servers_is_server_unavailable(canned_server):
    """A 200 that is not our server's JSON (a proxy's HTML page, a JSON array, a push answer without
    its version) is ServerUnavailable naming what came back, never a raw ValueError or KeyError."""
    client = PSClient(canned_server.url, "token", timeout=5, policy=RetryPolicy(attempts=1))
    try:
        for call in (lambda: client.register("w0"), client.status, client.accuracy, client.version,
                     lambda: client.admin("checkpoint")):
            with pytest.raises(ServerUnavailable, match="not a JSON object .*text/html"):
                call()
        canned_server.answer(200, "application/json", b"[1, 2]")
        with pytest.raises(ServerUnavailable, match="not a JSON object"):
            client.shard_plan()
        canned_server.answer(200, "application/json", b'{"status": "applied", "staleness": 0}')
        with pytest.raises(ServerUnavailable, match="without an int 'version'"):
            client.push({"w": torch.zeros(2)}, {"worker": "w0", "seq": 0})
        canned_server.answer(200, "application/json", b'{"version": true}')
        with pytest.raises(ServerUnavailable, match="without an int 'version'"):
            client.version()
        canned_server.answer(200, "application/json", b'{"version": 7}')
        assert client.version() == 7
    finally:
        client.close()
