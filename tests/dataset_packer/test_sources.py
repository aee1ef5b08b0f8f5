"""Sources: IDX folders, .npz (never unpickled), folders of images per class, torchvision (optional)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dataset_packer.sources import load_source
from dataset_packer.sources.torchvision_source import available as torchvision_available


def test_mnist_by_name_uses_the_published_normalisation(data_dir):
    ds = load_source("mnist", data_dir, offline=True)
    assert ds.train_x.shape == (60000, 1, 28, 28) and ds.test_x.shape == (10000, 1, 28, 28)
    assert ds.train_y.dtype == np.int64 and ds.classes == tuple("0123456789")
    assert (ds.mean, ds.std, ds.scale) == ((0.1307,), (0.3081,), 255.0)


def test_idx_folder_by_path(data_dir):
    ds = load_source(str(data_dir / "mnist"), data_dir)
    assert ds.name == "mnist" and len(ds.train_y) == 60000
    assert ds.mean[0] == pytest.approx(0.1307, abs=1e-3)


def test_npz_nhwc_floats(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "toy.npz"
    np.savez(path, x_train=rng.random((20, 8, 8, 3), dtype=np.float32), y_train=np.arange(20) % 4,
             x_test=rng.random((5, 8, 8, 3), dtype=np.float32), y_test=np.arange(5) % 4,
             classes=np.array(["a", "b", "c", "d"]))
    ds = load_source(str(path), tmp_path)
    assert ds.train_x.shape == (20, 3, 8, 8) and ds.train_x.dtype == np.float32 and ds.scale == 1.0
    assert ds.classes == ("a", "b", "c", "d") and len(ds.mean) == 3 and ds.test_x.shape == (5, 3, 8, 8)


def test_npz_with_object_arrays_is_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, x_train=np.array([object()], dtype=object), y_train=np.array([0]))
    with pytest.raises(ValueError, match="allow_pickle"):
        load_source(str(path), tmp_path)


def test_npz_without_train_arrays(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="x_train and y_train"):
        load_source(str(tmp_path / "x.npz"), tmp_path)


def _image_tree(root, mode, size=(6, 5)):
    for split, count in (("train", 3), ("test", 1)):
        for c, cls in enumerate(("cat", "dog")):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i in range(count):
                Image.new(mode, size, color=(40 * c + i) if mode == "L" else (c, i, 7)).save(folder / f"{i}.png")


def test_image_folder_grayscale_and_rgb(tmp_path):
    _image_tree(tmp_path / "gray", "L")
    ds = load_source(str(tmp_path / "gray"), tmp_path)
    assert ds.classes == ("cat", "dog") and ds.train_x.shape == (6, 1, 5, 6) and ds.train_x.dtype == np.uint8
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1] and ds.test_y.tolist() == [0, 1]
    assert ds.train_x[4, 0, 0, 0] == 41
    _image_tree(tmp_path / "rgb", "RGB")
    rgb = load_source(str(tmp_path / "rgb"), tmp_path)
    assert rgb.train_x.shape == (6, 3, 5, 6) and rgb.train_x[5, :, 0, 0].tolist() == [1, 2, 7]


def test_image_folder_with_mixed_sizes_is_refused(tmp_path):
    _image_tree(tmp_path / "mixed", "L")
    Image.new("L", (9, 9)).save(tmp_path / "mixed" / "train" / "dog" / "big.png")
    with pytest.raises(ValueError, match="resize"):
        load_source(str(tmp_path / "mixed"), tmp_path)


def test_unknown_source(tmp_path):
    with pytest.raises(ValueError, match="neither a dataset name"):
        load_source("no-such-thing", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not an IDX folder"):
        load_source(str(tmp_path / "empty"), tmp_path)


def test_torchvision_source_needs_torchvision(tmp_path):
    if torchvision_available():
        pytest.skip("torchvision is installed; this checks the error without it")
    with pytest.raises(ValueError, match="torchvision is not installed"):
        load_source("torchvision:CIFAR10", tmp_path)
