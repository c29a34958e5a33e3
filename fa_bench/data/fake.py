"""Tiny data sets written in the real on-disk formats torchvision reads (IDX files, pickled CIFAR
batches), so the loaders' whole code path runs without the real data (the test suite, smoke runs).

Each class is a bright blob at its own place on a noisy background, so a tiny run can learn it; the
files have non-official counts, which fa_bench.data.idx accepts without an MD5 check.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fa_bench.data.idx import FILES


def write_idx(path: Path, array: np.ndarray):
    """One uncompressed IDX file (uint8): magic 00 00 08 <ndim>, big-endian int32 dims, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + array.tobytes())


def blob_images(labels: np.ndarray, side: int, channels: int, n_classes: int, rng, layout: str = "grid"):
    """(N, side, side, channels) uint8: noise in [0, 60) plus, for class c, a bright square whose
    place encodes c (`grid`) or a horizontal bar at row c (`bars`: another look for Fashion-MNIST)."""
    n = len(labels)
    x = rng.integers(0, 60, (n, side, side, channels), dtype=np.uint8)
    cells = int(np.ceil(np.sqrt(n_classes)))
    block = max(1, side // cells)
    for i, c in enumerate(labels):
        c = int(c)
        if layout == "bars":
            h = max(1, side // n_classes)
            r = (c * side) // n_classes
            x[i, r:r + h, :, :] = rng.integers(180, 256, dtype=np.uint8)
        else:
            r, q = divmod(c % (cells * cells), cells)
            x[i, r * block:(r + 1) * block, q * block:(q + 1) * block, :] = rng.integers(180, 256, dtype=np.uint8)
    return x


def write_mnist_like(root: Path, folder: str = "MNIST", n_train: int = 1000, n_test: int = 500, seed: int = 0,
                     layout: str = "grid") -> dict:
    """<root>/<folder>/raw/ with the four IDX files torchvision's MNIST/FashionMNIST read. Returns the
    arrays written, {file name: array}, so a test can compare what the loader gives back."""
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        written[f"{split}-images-idx3-ubyte"] = blob_images(labels, 28, 1, 10, rng, layout)[..., 0]
        written[f"{split}-labels-idx1-ubyte"] = labels
    raw = Path(root) / folder / "raw"
    for name in FILES:
        write_idx(raw / name, written[name])
    return written


def write_cifar(root: Path, name: str, n_per_file: int = 40, seed: int = 0) -> Path:
    """Pickled batches in the layout torchvision's CIFAR10 (`cifar10`) or CIFAR100 (`cifar100`)
    reads. They are not the official files: loading them needs torchvision's MD5 check switched off
    (monkeypatch torchvision.datasets.cifar.check_integrity)."""
    ten = name == "cifar10"
    folder, train_files, test_file, label_key, n_classes = (
        ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", 10) if ten
        else ("cifar-100-python", ["train"], "test", "fine_labels", 100))
    base = Path(root) / folder
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for file in [*train_files, test_file]:
        labels = rng.integers(0, n_classes, n_per_file)
        images = blob_images(labels, 32, 3, n_classes, rng)  # (N, H, W, C) -> CIFAR's channel-major rows
        batch = {"data": images.transpose(0, 3, 1, 2).reshape(n_per_file, -1), label_key: labels.tolist()}
        with open(base / file, "wb") as f:
            pickle.dump(batch, f)
    meta_key = "label_names" if ten else "fine_label_names"
    with open(base / ("batches.meta" if ten else "meta"), "wb") as f:
        pickle.dump({meta_key: [f"c{i}" for i in range(n_classes)]}, f)
    return base


def write_image_tree(root: Path, n_classes: int = 6, n_train: int = 6, n_val: int = 3, side: int = 20,
                     seed: int = 0) -> Path:
    """An ImageFolder tree (``train/``, ``val/``, a folder of PNGs per class) whose class k's images have
    a bright square at a place of their own on dim noise: enough for tiny runs of the streaming path."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    cells = int(np.ceil(np.sqrt(n_classes)))
    patch = side // cells
    for split, n in (("train", n_train), ("val", n_val)):
        for k in range(n_classes):
            folder = Path(root) / split / f"class{k:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = rng.integers(0, 60, (side, side, 3), dtype=np.uint8)
                r, c = divmod(k, cells)
                pixels[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch] = 230
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return Path(root)
