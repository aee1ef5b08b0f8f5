"""Dockerfile.action stays honest without a Docker engine: what it copies exists, its pins match
the project's, and its CMD (with its ENV) starts a server that speaks the action protocol."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import requests

from actions.server import SENTINEL
from tests.fixtures.common import PYTHON, ROOT, ServiceProcess, free_port, wait_http

DOCKERFILE = ROOT / "Dockerfile.action"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines
            if line and not line.startswith("#")]


def one(name: str) -> str:
    found = [args for instr, args in instructions() if instr == name]
    assert len(found) == 1, f"expected one {name}, found {found}"
    return found[0]


def env_map() -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in instructions():
        if instr == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    return env


def test_copied_paths_exist():
    copies = [shlex.split(args)[:-1] for instr, args in instructions() if instr == "COPY"]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile.action copies {source}, which does not exist"


def test_base_torch_pin_and_user():
    args = dict(a.split("=", 1) for instr, a in instructions() if instr == "ARG" and "=" in a)
    assert args["BASE"].startswith("python:3.11-slim")
    assert args["TORCH_INDEX"].endswith("/whl/cpu")
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and args["TORCH_VERSION"] == pinned.group(1)
    user = one("USER")
    assert user not in ("root", "0")
    assert any(instr == "RUN" and "useradd" in a and a.split()[-1] == user for instr, a in instructions())


def test_runtime_requirements_keep_what_the_action_imports():
    run = next(a for instr, a in instructions() if instr == "RUN" and "runtime-reqs" in a)
    excluded = re.search(r"grep -v -E '\^\(([^)]*)\)'", run).group(1).split("|")
    reqs = [line.split("==")[0].split("[")[0] for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    kept = {r.lower() for r in reqs if not any(r.startswith(e) for e in excluded)}
    assert {"numpy", "safetensors", "flask", "gevent", "requests"} <= kept
    assert "torch" not in kept  # installed from its own index first


def test_cmd_starts_the_action_server(tmp_path):
    cmd = json.loads(one("CMD"))
    assert cmd[:3] == ["owtrain", "action", "serve"]
    port_at = cmd.index("--port")
    assert cmd[port_at + 1] == one("EXPOSE") == "8080"
    # The same command from the installed console script, on a free loopback port; the image's
    # ENV applies, except the listen address, which tests keep on loopback.
    port = free_port()
    argv = [str(Path(PYTHON).parent / cmd[0]), *cmd[1:port_at + 1], str(port), *cmd[port_at + 2:]]
    env = {**env_map(), "OWTRAIN_ACTION_HOST": "127.0.0.1", "OWTRAIN_SHARD_CACHE": str(tmp_path)}
    service = ServiceProcess(argv, tmp_path / "cmd.log", env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/", timeout=60, proc=service.proc)
        assert requests.post(url + "/init", json={"value": {"name": "dist-train"}}, timeout=60).status_code == 200
        reply = requests.post(url + "/run", json={"value": {}, "activation_id": "0" * 32}, timeout=60)
        assert reply.status_code == 200
        assert "missing required parameter(s): dataset_url" in reply.json()["error"]
        assert SENTINEL in service.log_text()
    finally:
        service.stop()
