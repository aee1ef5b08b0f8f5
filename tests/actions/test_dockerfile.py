"""Dockerfile.action stays honest without a Docker engine: what it copies exists, its pins match
the project's, and its CMD (with its ENV) starts a server that speaks the action protocol.
tests/docker/ builds the image and runs it on a real engine."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import requests

from actions.server import SENTINEL
from tests.fixtures.common import PYTHON, ROOT, ServiceProcess, free_port, wait_http

DOCKERFILE = ROOT / "Dockerfile.action"
ACTION_REQUIREMENTS = ROOT / "requirements-action.txt"
DEV_ONLY = {"mypy", "pytest", "pytest-timeout", "moto", "ruff", "playwright", "matplotlib", "jsonschema", "hypothesis"}


def action_pins() -> dict[str, str]:
    """requirements-action.txt as {normalised name: version}."""
    pins = {}
    for line in ACTION_REQUIREMENTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


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
    # From the build context only: not `--from=stage` copies, nor the wheelhouse glob of offline builds.
    copies = [shlex.split(args)[:-1] for instr, args in instructions() if instr == "COPY" and "--from" not in args]
    assert copies
    for sources in copies:
        for source in sources:
            if "[" not in source:
                assert (ROOT / source).exists(), f"Dockerfile.action copies {source}, which does not exist"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert all(f"!{source}" in ignored for sources in copies for source in sources if "[" not in source), \
        ".dockerignore must let every copied path into the build context"


def test_base_torch_pin_and_user():
    args = dict(a.split("=", 1) for instr, a in instructions() if instr == "ARG" and "=" in a)
    assert args["BASE"].startswith("python:3.11-slim")
    assert args["TORCH_INDEX"].endswith("/whl/cpu")
    pinned = re.search(r"^torch==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned and args["TORCH_VERSION"] == pinned.group(1) == action_pins()["torch"]
    user = one("USER")
    assert user not in ("root", "0")
    assert any(instr == "RUN" and "useradd" in a and a.split()[-1] == user for instr, a in instructions())


def test_action_pins_are_the_tested_versions_and_no_development_tool():
    pins = action_pins()
    assert {"torch", "numpy", "safetensors", "flask", "werkzeug", "gevent", "requests"} <= pins.keys()
    assert not pins.keys() & DEV_ONLY, "a test or development tool would be in the image"
    # The image runs exactly what the tests run in the development venv.
    for name, version in pins.items():
        assert metadata.version(name).split("+")[0] == version, f"{name}: image {version}, venv {metadata.version(name)}"


def test_cmd_starts_the_action_server(tmp_path):
    cmd = json.loads(one("CMD"))
    assert cmd == ["owtrain", "action", "serve"] and one("EXPOSE") == "8080"  # 8080 is the default port
    # The same command from the installed console script; the image's ENV applies, except the listen
    # address and port, which tests keep on a free loopback port (as the docker invoker does).
    port = free_port()
    argv = [str(Path(PYTHON).parent / cmd[0]), *cmd[1:]]
    env = {**env_map(), "OWTRAIN_ACTION_HOST": "127.0.0.1", "OWTRAIN_ACTION_PORT": str(port),
           "OWTRAIN_SHARD_CACHE": str(tmp_path)}
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


def test_build_script_usage_and_shellcheck():
    script = ROOT / "scripts" / "build-image.sh"
    for args in ([], ["--gpu", "t:1"], ["a:1", "b:1"]):
        done = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and "usage: scripts/build-image.sh [--offline] [--cuda] TAG" in done.stderr
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, checked.stdout
