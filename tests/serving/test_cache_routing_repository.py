"""Pure parts: the LRU cache, the sticky canary split, labels (promote / rollback), the version
policy, and the repository's layout and publishing rules on a local folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from owtrain.errors import BadRequest, ConfigError, ObjectMissing
from owtrain.model_repository_layout import LocalStorage
from serving.cache import PredictionCache, digest
from serving.repository import Labels, Repository, parse_policy, select_versions
from serving.routing import bucket, route
from tests.serving.helpers import MNIST, publish_seeded, seeded_state


def test_lru_evicts_the_least_recent_and_counts_hits_and_misses():
    cache = PredictionCache(2)
    a, b, c = (("m", 1, digest(np.full((1, 2, 2), v, np.float32))) for v in (1, 2, 3))
    cache.put(a, np.array([1.0]))
    cache.put(b, np.array([2.0]))
    assert cache.get(a) is not None  # a is now the most recent
    cache.put(c, np.array([3.0]))
    assert cache.get(b) is None and cache.get(a) is not None and cache.get(c) is not None
    assert (cache.hits, cache.misses) == (3, 1)
    assert cache.get(("m", 2, a[2])) is None  # another version never answers from this one's entries
    off = PredictionCache(0)
    off.put(a, np.array([1.0]))
    assert off.get(a) is None and len(off) == 0


def test_digest_is_the_same_for_the_same_pixels_whatever_the_input_dtype():
    x = np.arange(784, dtype=np.uint8).reshape(1, 28, 28)
    assert digest(x) == digest(x.astype(np.float64)) != digest(x[:, ::-1])


def test_the_canary_split_is_sticky_and_close_to_its_share():
    labels = Labels(stable=1, canary=2, canary_percent=25.0)
    callers = [f"caller-{i}" for i in range(4000)]
    first = [route("m", c, labels, [1, 2]) for c in callers]
    assert first == [route("m", c, labels, [1, 2]) for c in callers]  # sticky
    share = first.count(2) / len(first)
    assert 0.22 < share < 0.28
    assert all(0 <= bucket("m", c) < 100 for c in callers[:50])
    assert route("m", "x", Labels(stable=1, canary=3, canary_percent=100), [1, 2]) == 1  # canary not loaded
    assert route("m", "x", Labels(), [1, 4]) == 4  # no labels: the newest loaded version
    with pytest.raises(ObjectMissing):
        route("m", "x", Labels(), [])


def test_promote_and_rollback():
    labels = Labels(stable=1).with_canary(2, 10)
    promoted = labels.promoted()
    assert (promoted.stable, promoted.canary, promoted.history) == (2, None, (1,))
    assert labels.rolled_back() == Labels(stable=1)  # rollback with a canary drops the canary
    back = promoted.rolled_back()  # without one: the previous stable again
    assert (back.stable, back.history) == (1, ())
    with pytest.raises(ConfigError):
        back.rolled_back()
    with pytest.raises(ConfigError):
        Labels(stable=1).promoted()
    with pytest.raises(ConfigError):
        Labels().with_canary(2, 101)


def test_version_policy():
    assert parse_policy("latest:2") == ("latest", (2,))
    assert parse_policy("all") == ("all", ())
    assert parse_policy("specific:1,3") == ("specific", (1, 3))
    for bad in ("latest:0", "newest", "specific:", "all:2", "latest:x"):
        with pytest.raises(ConfigError):
            parse_policy(bad)
    available = [1, 2, 3, 4]
    assert select_versions(("latest", (2,)), available, Labels()) == [3, 4]
    assert select_versions(("latest", (1,)), available, Labels(stable=2)) == [2, 4]  # a labelled one stays
    assert select_versions(("specific", (1, 9)), available, Labels()) == [1]
    assert select_versions(("all", ()), available, Labels()) == available


def test_publish_numbers_versions_and_a_version_without_meta_is_not_complete(tmp_path):
    assert publish_seeded(tmp_path, 1) == 1
    assert publish_seeded(tmp_path, 2) == 2
    (tmp_path / "mnist" / "3").mkdir()
    (tmp_path / "mnist" / "3" / "model.safetensors").write_bytes(b"half-written")
    repo = Repository(LocalStorage(tmp_path))
    assert repo.models() == ["mnist"] and repo.versions("mnist") == [1, 2]
    meta = repo.meta("mnist", 2)
    assert meta.signature == MNIST and meta.model == "lenet5" and meta.source == {"seed": 2}
    weights = repo.weights("mnist", 2, meta)
    assert all(np.array_equal(weights[k], v) for k, v in seeded_state(2).items())
    (tmp_path / "mnist" / "1" / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(BadRequest, match="does not match its sha256"):
        repo.weights("mnist", 1, repo.meta("mnist", 1))
    with pytest.raises(ConfigError, match="no version 7"):
        repo.set_labels("mnist", Labels(stable=7))
    repo.set_labels("mnist", Labels(stable=1, canary=2, canary_percent=5))
    assert json.loads((tmp_path / "mnist" / "labels.json").read_text())["canary"] == 2
    assert repo.labels("mnist").canary_percent == 5
