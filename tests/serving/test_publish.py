"""`owtrain local`'s end of run: the final model is published as the next version of its dataset's
model in RUN_DIR/models, with the signature of its shards and the scores the run measured."""

from __future__ import annotations

from dataclasses import replace

from dataset_packer.pack import pack
from dataset_packer.sources import load_source
from owtrain.model_repository_layout import LocalStorage
from owtrain.models import build_model
from serving.publish import publish_run
from serving.repository import Repository
from tests.serving.helpers import MNIST


def test_publish_run_writes_the_next_version_with_the_shards_signature(tmp_path):
    ds = load_source("mnist", tmp_path / "data", offline=True)
    ds = replace(ds, train_x=ds.train_x[:200], train_y=ds.train_y[:200], test_x=ds.test_x[:100],
                 test_y=ds.test_y[:100])
    pack(ds, 1, tmp_path / "shards", test_shard=True)
    model = build_model("lenet5", seed=3)
    scores = {"test": {"accuracy": 0.97, "loss": 0.1}, "validation": {}}
    first = publish_run(tmp_path / "run", "lenet5", model, tmp_path / "shards", scores, {"job": "j"})
    second = publish_run(tmp_path / "run", "lenet5", model, tmp_path / "shards", scores)
    assert (first.name, first.version, second.version) == ("mnist", 1, 2)
    assert first.path == tmp_path / "run" / "models" / "mnist" / "1"
    assert first.command(tmp_path / "run") == f"owtrain serve --run-dir {tmp_path / 'run'}"
    meta = Repository(LocalStorage(tmp_path / "run" / "models")).meta("mnist", 1)
    assert meta.signature.shape == MNIST.shape and meta.signature.classes == MNIST.classes
    assert meta.signature.mean == MNIST.mean and meta.signature.std == MNIST.std and meta.signature.scale == 255.0
    assert meta.scores == {"test": {"accuracy": 0.97, "loss": 0.1}} and meta.source == {"job": "j"}
