"""Exp3 model selection: traffic drifts to the version that earns rewards (pure, seeded), and the
HTTP face (`--selection exp3`, POST NAME:observe) over real loopback."""

from __future__ import annotations

import random

import pytest
import requests

from owtrain.errors import BadRequest, ObjectMissing
from serving.selection import Exp3
from tests.serving.helpers import publish_seeded, random_images


def test_exp3_moves_traffic_to_the_rewarded_version():
    bandit = Exp3(gamma=0.1, rng=random.Random(0))
    versions = [1, 2, 3]
    assert bandit.probabilities("m", versions) == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 1 / 3})
    truth = {1: 0.2, 2: 0.9, 3: 0.4}  # chance that each version's answer is right
    rng = random.Random(1)
    for _ in range(1500):
        v = bandit.select("m", versions)
        bandit.observe("m", v, 1.0 if rng.random() < truth[v] else 0.0, versions)
    probs = bandit.probabilities("m", versions)
    assert probs[2] > 0.8 and min(probs.values()) >= 0.1 / 3 - 1e-9  # exploration never stops
    assert set(bandit.probabilities("m", [2, 4])) == {2, 4}  # arms follow the loaded versions
    for bad in (1.5, -0.1, True, "1", None):
        with pytest.raises(BadRequest):
            bandit.observe("m", 2, bad, [2, 4])
    with pytest.raises(ObjectMissing):
        bandit.observe("m", 9, 1.0, [2, 4])


def test_observe_over_http(tmp_path, serve_process):
    for seed in (1, 2):
        publish_seeded(tmp_path / "repo", seed)
    server = serve_process(["--repository", str(tmp_path / "repo"), "--selection", "exp3", "--exp3-gamma", "0.2",
                            "--anon-rate", "0"])
    seen = {server.predict("mnist", {"instances": random_images(1, seed=i).tolist()}).json()["version"]
            for i in range(30)}
    assert seen == {1, 2}  # both are explored
    url = f"{server.url}/v1/models/mnist:observe"
    for _ in range(40):
        reply = requests.post(url, json={"version": 1, "reward": 1.0}, timeout=10)
        assert reply.status_code == 200, reply.text
    assert reply.json()["probabilities"]["1"] > 0.85
    assert requests.post(url, json={"version": 1, "reward": 2}, timeout=10).status_code == 400
    assert requests.post(url, json={"version": 7, "reward": 1}, timeout=10).status_code == 404
    assert requests.post(url, data=b"x", timeout=10).status_code == 400
    assert requests.get(url, timeout=10).status_code == 400
