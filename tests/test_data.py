"""Data sets load as device tensors with the right shapes, offline; a missing one names its folder."""
import pickle

import numpy as np
import pytest
import torch
import torchvision

from fa_bench.data import batches, load_dataset


def test_mnist_from_the_offline_copy():
    data = load_dataset("mnist", download=False, n_train=100, n_test=50)
    assert data.x_train.shape == (100, 1, 28, 28) and data.x_test.shape == (50, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    assert data.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the official training set's first labels
    assert data.task == "classification" and data.n_outputs == 10


def _fake_cifar(root, folder, train_files, test_file, label_key, n=12):
    """Write pickled batches in the layout torchvision's CIFAR classes read."""
    base = root / folder
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*train_files, test_file]:
        batch = {"data": rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8),
                 label_key: rng.integers(0, 10, n).tolist()}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    with open(base / ("batches.meta" if folder.startswith("cifar-10-") else "meta"), "wb") as f:
        key = "label_names" if folder.startswith("cifar-10-") else "fine_label_names"
        pickle.dump({key: [f"c{i}" for i in range(100)]}, f)


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_code_path_on_data_the_test_makes(tmp_path, monkeypatch, name):
    if name == "cifar10":
        _fake_cifar(tmp_path, "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                    "labels")
    else:
        _fake_cifar(tmp_path, "cifar-100-python", ["train"], "test", "fine_labels")
    # our files are not the real ones: skip torchvision's md5 checks, keep everything else
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    data = load_dataset(name, root=str(tmp_path), download=False)
    n_train = 12 * (5 if name == "cifar10" else 1)
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_test.shape == (12, 3, 32, 32)
    assert data.x_train.max() <= 1 and data.y_train.dtype == torch.int64
    assert data.n_outputs == (10 if name == "cifar10" else 100)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100"])
def test_missing_data_set_names_the_folder(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_dataset(name, root=str(tmp_path), download=False)


def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="cifar10.*linear_teacher.*mnist"):
        load_dataset("imagenet22k")


def test_batches_cover_every_example_once_per_epoch():
    order = torch.cat(batches(10, 4, torch.Generator().manual_seed(0), "cpu"))
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert [b.numel() for b in batches(10, 4, None, "cpu", shuffle=False)] == [4, 4, 2]
