"""TensorBoard event files from a real parameter server, read back with TensorBoard's own reader."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import requests
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dataset_packer.shard import ShardInfo, read_shard, write_shard
from localrun.trackers import write_test_scalars
from param_server.evaluator import evaluate
from param_server.tensorboard_log import TensorBoardLog
from tests.fixtures.common import PYTHON, ServiceProcess, free_port
from tests.param_server.helpers import batch, grads, lenet, meta


def _val_shard(path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (64, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, 64).astype(np.int64)
    info = ShardInfo(dataset="tiny", split="val", index=0, num_shards=1, sample_range=None,
                     classes=tuple(str(i) for i in range(10)), mean=(0.1307,), std=(0.3081,), scale=255.0)
    write_shard(path, x, y, info)
    return path


def test_server_writes_loss_validation_throughput_staleness_and_worker_counts(ps_server, tmp_path):
    shard = _val_shard(tmp_path / "tiny-val.tar.gz")
    logdir = tmp_path / "tensorboard"
    ps = ps_server(eval_shard=shard, extra=["--eval-interval", "0.2", "--eval-every", "1",
                                            "--history-interval", "0.2", "--tensorboard-dir", str(logdir)])
    workers = {"w1": ps.client("w1"), "w2": ps.client("w2")}
    for name, client in workers.items():
        client.register(name)
    pushes = {"w1": 3, "w2": 2}
    for name, client in workers.items():
        for seq in range(pushes[name]):
            version, params = client.pull(None)
            client.push(grads(lenet(params), *batch(8, seed=seq)), meta(name, seq, version, samples=8, loss=2.0))
    deadline = time.monotonic() + 30
    while workers["w1"].accuracy()["evaluated_version"] != 5:
        assert time.monotonic() < deadline, "the server did not evaluate version 5"
        time.sleep(0.1)
    time.sleep(0.5)  # a history point after the last push
    final_params = workers["w1"].pull(None)[1]
    ps.stop()  # SIGTERM: the server closes (flushes) its writer

    events = EventAccumulator(str(logdir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "val/accuracy", "val/loss", "server/updates_per_s", "server/staleness", "server/workers",
            "workers/w1/pushes", "workers/w1/samples", "workers/w2/pushes", "workers/w2/samples"} <= tags

    # the last validation point is the true accuracy of version 5 on the shard
    val = {s.step: s.value for s in events.Scalars("val/accuracy")}
    xv, yv = read_shard(shard).to_tensors()
    loss, accuracy = evaluate(lenet(final_params), xv, yv, batch=1000)
    assert val[5] == pytest.approx(accuracy, abs=1e-6)
    assert events.Scalars("val/loss")[-1].value == pytest.approx(loss, rel=1e-5)
    assert events.Scalars("workers/w1/pushes")[-1].value == 3
    assert events.Scalars("workers/w2/samples")[-1].value == 16
    assert events.Scalars("train/loss")[-1].value == pytest.approx(2.0)
    assert max(s.value for s in events.Scalars("server/updates_per_s")) > 0
    assert events.Scalars("server/updates_per_s")[-1].step == 5  # steps are model versions


def test_tensorboard_itself_serves_the_run_folder(tmp_path):
    """`tensorboard --logdir RUN_DIR/tensorboard` (the real server, over HTTP) lists and serves the scalars."""
    logdir = tmp_path / "tensorboard"
    board = TensorBoardLog(logdir)
    for version, accuracy in ((5, 0.5), (10, 0.8)):
        board.evaluated("val", version, 1.0 - accuracy, accuracy)
    board.sampled(10, 0.4, 12.5, 0.5, 2, {"w1": {"pushes": 7, "samples": 448}})
    board.close()
    write_test_scalars(logdir, {"accuracy": 0.79, "loss": 0.3, "version": 10})
    port = free_port()
    server = ServiceProcess([str(Path(PYTHON).with_name("tensorboard")), "--logdir", str(logdir), "--host",
                             "127.0.0.1", "--port", str(port)], tmp_path / "tensorboard.log")
    try:
        url = f"http://127.0.0.1:{port}/data/plugin/scalars"
        deadline = time.monotonic() + 90
        tags: dict = {}
        while "test/accuracy" not in tags.get(".", {}):  # it loads the files in the background
            assert time.monotonic() < deadline, server.log_text()[-2000:]
            time.sleep(0.5)
            try:
                tags = requests.get(f"{url}/tags", timeout=5).json()
            except requests.RequestException:
                continue
        assert {"val/accuracy", "train/loss", "server/updates_per_s", "workers/w1/samples"} <= set(tags["."])
        points = requests.get(f"{url}/scalars", params={"run": ".", "tag": "val/accuracy"}, timeout=5).json()
        assert [(step, round(value, 4)) for _, step, value in points] == [(5, 0.5), (10, 0.8)]
        test = requests.get(f"{url}/scalars", params={"run": ".", "tag": "test/accuracy"}, timeout=5).json()
        assert [(step, round(value, 4)) for _, step, value in test] == [(10, 0.79)]
    finally:
        server.stop()
