"""The image holds what the action needs at run time and nothing else: its Python packages are
exactly requirements-action.txt (no test or development tool), and a real training activation's
import trace (PYTHONPROFILEIMPORTTIME in the container) touches every package the action is
listed as importing."""

from __future__ import annotations

import json
import re
import uuid

from tests.actions.helpers import action_params, open_bucket, upload_shard
from tests.actions.test_dockerfile import ACTION_REQUIREMENTS, DEV_ONLY, action_pins

IMPORT_LINE = re.compile(r"stderr: import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$")
LIST_PACKAGES = ("import importlib.metadata as m, json; print(json.dumps({'dists': sorted({d.metadata['Name'] for d in "
                 "m.distributions()}), 'modules': m.packages_distributions()}))")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imported_by_the_action() -> set[str]:
    """The first section of requirements-action.txt: the packages the action imports itself."""
    text = ACTION_REQUIREMENTS.read_text()
    section = text.split("# imported by the action", 1)[1].split("# required by those", 1)[0]
    return {_normalise(line.split("==")[0]) for line in section.splitlines() if "==" in line}


def test_image_packages_are_the_action_pins_and_the_action_imports_its_own(docker_engine, docker_invoker, ps_server,
                                                                            swift_s3, tmp_path):
    listed = docker_engine.docker("run", "--rm", "--network", "host", docker_engine.image, "python", "-c",
                                  LIST_PACKAGES)
    assert listed.returncode == 0, listed.stderr
    packages = json.loads(listed.stdout)
    installed = {_normalise(d) for d in packages["dists"]}
    assert installed == set(action_pins()) | {"pip"}, installed ^ (set(action_pins()) | {"pip"})
    assert not installed & DEV_ONLY

    ps = ps_server(strategy="async", lr=0.05)
    shard = upload_shard(open_bucket(swift_s3, f"trace{uuid.uuid4().hex[:8]}"), tmp_path, "train-0.tar.gz", 128)
    invoker = docker_invoker(extra_env=(("PYTHONPROFILEIMPORTTIME", "1"),), timeout_ms=120_000)
    activation = invoker.wait(invoker.invoke("dist-train", action_params(ps, shard, threads=1, device="cpu")), 180)
    assert activation.success, activation.result
    # The first activation's logs start at the container's start: the server's imports, then the run's.
    top_level = {m.group(1).split(".")[0] for line in activation.logs if (m := IMPORT_LINE.search(line))}
    assert {"actions", "torch", "flask"} <= top_level, sorted(top_level)[:50]
    traced = {_normalise(dist) for module in top_level for dist in packages["modules"].get(module, [])}
    assert _imported_by_the_action() <= traced, _imported_by_the_action() - traced
