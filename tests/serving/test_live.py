"""A running server follows its repository: a new version dropped in is served, a removed one is
not, `owtrain serve canary / promote / rollback` move traffic with no restart (sticky per caller),
and per-caller rate limits tell authenticated callers from anonymous ones."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import requests

from owtrain.tokens import mint_token
from tests.fixtures.common import PYTHON, ROOT
from tests.serving.helpers import publish_seeded, random_images

IMAGE = {"instances": random_images(1).tolist()}
SECRET = "serving-secret"


def labels_cli(*args: str) -> dict:
    out = subprocess.run([PYTHON, "-m", "commands", "serve", *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def versions_of(status: dict) -> list[str]:
    return [r["version"] for r in status["model_version_status"] if r["state"] == "AVAILABLE"]


def test_new_versions_are_picked_up_and_removed_ones_unloaded_while_serving(tmp_path, serve_process):
    repo = tmp_path / "repo"
    publish_seeded(repo, 1)
    server = serve_process(["--repository", str(repo), "--poll-s", "0.2", "--policy", "latest:2"])
    assert server.predict("mnist", IMAGE).json()["version"] == 1
    publish_seeded(repo, 2)
    server.wait_for(lambda s: versions_of(s) == ["1", "2"], "mnist")
    assert server.predict("mnist", IMAGE).json()["version"] == 2
    publish_seeded(repo, 3)
    server.wait_for(lambda s: versions_of(s) == ["2", "3"], "mnist")  # latest:2 unloads version 1
    assert server.predict("mnist/versions/1", IMAGE).status_code == 404
    shutil.rmtree(repo / "mnist" / "3")  # removing the newest folder rolls back
    server.wait_for(lambda s: versions_of(s) == ["1", "2"], "mnist")
    assert server.predict("mnist", IMAGE).json()["version"] == 2
    publish_seeded(repo, 4, name="fashion")  # a new model too
    server.wait_for(lambda s: versions_of(s) == ["1"], "fashion")


def test_canary_promote_and_rollback_take_effect_without_a_restart(tmp_path, serve_process):
    repo = tmp_path / "repo"
    for seed in (1, 2):
        publish_seeded(repo, seed)
    (tmp_path / "secret").write_text(SECRET)
    server = serve_process(["--repository", str(repo), "--poll-s", "0.2", "--secret-file", str(tmp_path / "secret"),
                            "--job", "serving"])
    where = ["--repository", str(repo), "--model", "mnist"]
    tokens = [mint_token(SECRET, "serving", f"caller-{i}", 600) for i in range(60)]

    def answered_by() -> list[int]:
        return [server.predict("mnist", IMAGE, headers={"Authorization": f"Bearer {t}"}).json()["version"]
                for t in tokens]

    assert labels_cli("canary", *where, "--version", "2", "--percent", "0")["canary"] == 2
    assert labels_cli("promote", *where)["stable"] == 2
    assert labels_cli("canary", *where, "--version", "1", "--percent", "30")["canary_percent"] == 30
    server.wait_for(lambda s: s["labels"]["canary"] == 1, "mnist")
    first = answered_by()
    assert set(first) == {1, 2} and 0.1 < first.count(1) / len(first) < 0.55
    assert answered_by() == first  # sticky per caller
    assert server.predict("mnist/labels/canary", IMAGE).json()["version"] == 1
    assert server.predict("mnist/labels/stable", IMAGE).json()["version"] == 2
    labels_cli("promote", *where)  # version 1 becomes stable for everyone
    server.wait_for(lambda s: s["labels"]["stable"] == 1 and s["labels"]["canary"] is None, "mnist")
    assert set(answered_by()) == {1}
    after = labels_cli("rollback", *where)  # no canary: back to the previous stable, version 2
    assert after["stable"] == 2
    server.wait_for(lambda s: s["labels"]["stable"] == 2, "mnist")
    assert set(answered_by()) == {2}
    metrics = requests.get(f"{server.url}/metrics", timeout=10).text
    assert 'owtrain_serve_instances_total{model="mnist",version="1"}' in metrics


def test_rate_limits_are_per_caller_and_larger_for_authenticated_callers(tmp_path, serve_process):
    repo = tmp_path / "repo"
    publish_seeded(repo, 1)
    (tmp_path / "secret").write_text(SECRET)
    server = serve_process(["--repository", str(repo), "--secret-file", str(tmp_path / "secret"),
                            "--anon-rate", "1", "--anon-burst", "3", "--auth-rate", "1", "--auth-burst", "20"])
    anonymous = [server.predict("mnist", IMAGE) for _ in range(6)]
    codes = [r.status_code for r in anonymous]
    assert codes[:3] == [200] * 3 and 429 in codes[3:], codes
    throttled = next(r for r in anonymous if r.status_code == 429)
    assert int(throttled.headers["Retry-After"]) >= 1 and "anonymous caller" in throttled.json()["error"]
    alice = {"Authorization": f"Bearer {mint_token(SECRET, 'serving', 'alice', 600)}"}
    bob = {"Authorization": f"Bearer {mint_token(SECRET, 'serving', 'bob', 600)}"}
    assert all(server.predict("mnist", IMAGE, headers=alice).status_code == 200 for _ in range(15))
    assert server.predict("mnist", IMAGE, headers=bob).status_code == 200  # alice's use is not bob's
    expired = {"Authorization": f"Bearer {mint_token(SECRET, 'serving', 'carol', -1)}"}
    assert server.predict("mnist", IMAGE, headers=expired).status_code == 401
    other_job = {"Authorization": f"Bearer {mint_token(SECRET, 'training', 'carol', 600)}"}
    assert server.predict("mnist", IMAGE, headers=other_job).status_code == 403
    time.sleep(1.1)
    assert server.predict("mnist", IMAGE).status_code == 200  # the anonymous bucket refills
