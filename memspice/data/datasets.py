"""Classification datasets as float pixels in [0, 1], with fixed, documented splits.

* ``fashion-mnist``: the IDX files of the Debian package ``dataset-fashion-mnist``
  (``/usr/share/datasets/fashion-mnist``): 60 000 training and 10 000 test images, 28x28;
* ``mnist``: the same four IDX files of MNIST, which a user supplies (``data_dir``);
* ``digits``: scikit-learn's 8x8 handwritten digits (1797 images, shipped inside its wheel),
  split 1437 / 360 by a fixed permutation (seed 0).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memspice.data.idx import DatasetError, read_idx

DATASETS = ("digits", "fashion-mnist", "mnist")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass(frozen=True)
class Dataset:
    """Images flattened to ``(N, n_features)`` float32 in [0, 1]; labels ``(N,)`` int64."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    image_shape: tuple[int, int]

    @property
    def n_features(self) -> int:
        return self.train_x.shape[1]


def load_dataset(name: str, data_dir: str | os.PathLike | None = None) -> Dataset:
    """The dataset ``name`` (one of :data:`DATASETS`); ``data_dir`` holds the IDX files of
    ``fashion-mnist`` (default: the Debian package's folder) or ``mnist`` (required)."""
    if name == "digits":
        return _digits()
    if name == "fashion-mnist":
        folder = Path(data_dir) if data_dir else FASHION_MNIST_DIR
        hint = "install it with: apt-get install -y dataset-fashion-mnist (or pass --data-dir)"
        return _idx_dataset(name, folder, FASHION_MNIST_CLASSES, hint)
    if name == "mnist":
        if data_dir is None:
            raise DatasetError("MNIST is not shipped with memspice or Debian: download the four IDX files "
                               "(train-images-idx3-ubyte[.gz] ...) and pass their folder with --data-dir")
        return _idx_dataset(name, Path(data_dir), tuple(str(d) for d in range(10)),
                            "pass the folder holding MNIST's four IDX files with --data-dir")
    raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def _find(folder: Path, stem: str, hint: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"missing {stem}[.gz] in {folder}; {hint}")


def _idx_dataset(name: str, folder: Path, classes: tuple[str, ...], hint: str) -> Dataset:
    arrays, shape = {}, ()
    for split, (images, labels) in _IDX_FILES.items():
        x = read_idx(_find(folder, images, hint))
        y = read_idx(_find(folder, labels, hint))
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(f"{folder}: {split} images {x.shape} and labels {y.shape} do not match "
                               f"(expected (N, rows, cols) and (N,))")
        if y.min() < 0 or y.max() >= len(classes):
            raise DatasetError(f"{folder}: {split} labels span {y.min()}..{y.max()}, expected 0..{len(classes) - 1}")
        arrays[split] = (x.reshape(len(x), -1).astype(np.float32) / 255.0, y.astype(np.int64))
        shape = x.shape[1:]
    return Dataset(name, *arrays["train"], *arrays["test"], classes, shape)


def _digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DatasetError("the digits dataset comes with scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    n_train = int(round(0.8 * len(x)))
    train, test = order[:n_train], order[n_train:]
    return Dataset("digits", x[train], y[train], x[test], y[test], tuple(str(d) for d in range(10)), (8, 8))
