"""Data sets load as tensors with the right shapes and values, offline, from the files conftest writes;
a missing, truncated or corrupted file, or a bad n_train/n_test, stops with a message saying what to do."""
import gzip
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fa_bench.config import compose_config
from fa_bench.data import batches, fake, idx, load_dataset
from fa_bench.data.errors import DataConfigError, DataCorruptError, DataFileNotFoundError
from fa_bench.run import run


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_idx_sets_give_back_exactly_the_files_bytes(fake_data, name, folder):
    written = fake_data[name]
    data = load_dataset(name, download=False, n_train=100, n_test=50)  # root from FA_DATA
    assert data.x_train.shape == (100, 1, 28, 28) and data.x_test.shape == (50, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    expect = torch.from_numpy(written["train-images-idx3-ubyte"][:100]).float().div(255).unsqueeze(1)
    assert torch.equal(data.x_train, expect)
    assert data.y_train.tolist() == written["train-labels-idx1-ubyte"][:100].tolist()
    assert data.y_test.tolist() == written["t10k-labels-idx1-ubyte"][:50].tolist()
    assert data.task == "classification" and data.n_outputs == 10


def test_whole_splits_by_default_and_normalize_uses_the_train_statistics(fake_data):
    data = load_dataset("mnist", download=False, normalize=True)
    assert len(data.x_train) == len(fake_data["mnist"]["train-labels-idx1-ubyte"])
    assert abs(data.x_train.mean().item()) < 1e-4 and abs(data.x_train.std().item() - 1) < 1e-3


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_code_path_on_the_session_files(fake_cifar_accepted, name):
    data = load_dataset(name, download=False)
    n_train = 40 * (5 if name == "cifar10" else 1)
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_test.shape == (40, 3, 32, 32)
    assert data.x_train.max() <= 1 and data.y_train.dtype == torch.int64
    assert data.n_outputs == (10 if name == "cifar10" else 100)


# ------------------------------------------------------------------------------------------------
# missing data
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST"),
                                          ("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
def test_missing_data_set_says_where_it_looked_and_what_to_get(tmp_path, name, folder):
    with pytest.raises(DataFileNotFoundError) as info:
        load_dataset(name, root=str(tmp_path), download=False)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert str(tmp_path.resolve() / folder) in msg and "FA_DATA" in msg and "data.root=" in msg
    assert "dataset.download=true" in msg
    if name in ("mnist", "fashion_mnist"):
        assert all(f"{f}.gz" in msg for f in idx.FILES)
    else:
        assert ("cifar-10-python.tar.gz" if name == "cifar10" else "cifar-100-python.tar.gz") in msg
    if name == "fashion_mnist":
        assert "apt-get install dataset-fashion-mnist" in msg and "/usr/share/datasets/fashion-mnist" in msg
        assert f"ln -s /usr/share/datasets/fashion-mnist/*.gz {tmp_path.resolve() / folder / 'raw'}/" in msg


def test_only_the_missing_files_are_named(tmp_path):
    fake.write_mnist_like(tmp_path, n_train=20, n_test=10)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataFileNotFoundError, match="missing t10k-labels-idx1-ubyte. Set FA_DATA"):
        load_dataset("mnist", root=str(tmp_path), download=False)


# ------------------------------------------------------------------------------------------------
# corrupt files
# ------------------------------------------------------------------------------------------------
def _copy_of_fake_mnist(fake_data, tmp_path) -> Path:
    shutil.copytree(fake_data["root"] / "MNIST", tmp_path / "MNIST")
    return tmp_path / "MNIST" / "raw"


def test_truncated_file_is_named_with_expected_and_found_sizes(fake_data, tmp_path):
    raw = _copy_of_fake_mnist(fake_data, tmp_path)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    expected = 16 + 1000 * 784
    with pytest.raises(DataCorruptError) as info:
        load_dataset("mnist", root=str(tmp_path), download=False)
    msg = str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(path.resolve()) in msg and "truncated" in msg and "1000 items" in msg
    assert f"{expected} bytes, but the file has {expected - 100} bytes" in msg and "Delete it and download" in msg


def test_not_an_idx_file(fake_data, tmp_path):
    raw = _copy_of_fake_mnist(fake_data, tmp_path)
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"<html>404</html>")
    with pytest.raises(DataCorruptError, match="t10k-labels-idx1-ubyte is not an uncompressed IDX label file"):
        load_dataset("mnist", root=str(tmp_path), download=False)


def test_file_claiming_the_official_count_is_checked_against_the_official_md5(fake_data, tmp_path):
    raw = _copy_of_fake_mnist(fake_data, tmp_path)
    labels = np.random.default_rng(0).integers(0, 10, 60000)  # right header and size, wrong bytes
    fake.write_idx(raw / "train-labels-idx1-ubyte", labels)
    found = hashlib.md5((raw / "train-labels-idx1-ubyte").read_bytes()).hexdigest()
    with pytest.raises(DataCorruptError) as info:
        load_dataset("mnist", root=str(tmp_path), download=False)
    msg = str(info.value)
    assert "train-labels-idx1-ubyte claims the official 60000 items" in msg
    assert f"MD5 is {found}, expected a25bea736e30d166cdddb491f175f624" in msg and "download it again" in msg


def test_md5_check_accepts_the_right_bytes_and_catches_one_flipped_byte(fake_data, tmp_path, monkeypatch):
    raw = _copy_of_fake_mnist(fake_data, tmp_path)
    # make the tiny files "official" for this test, with their own sums as the known ones
    monkeypatch.setitem(idx.OFFICIAL_COUNT, "train", 1000)
    monkeypatch.setitem(idx.OFFICIAL_COUNT, "t10k", 500)
    sums = {f: hashlib.md5((raw / f).read_bytes()).hexdigest() for f in idx.FILES}
    monkeypatch.setitem(idx.OFFICIAL_MD5, "MNIST", sums)
    assert len(load_dataset("mnist", root=str(tmp_path), download=False).x_train) == 1000
    path = raw / "t10k-images-idx3-ubyte"
    body = bytearray(path.read_bytes())
    body[5000] ^= 0xFF
    path.write_bytes(bytes(body))
    with pytest.raises(DataCorruptError, match=f"t10k-images-idx3-ubyte claims.*expected {sums[path.name]}"):
        load_dataset("mnist", root=str(tmp_path), download=False)


def test_images_and_labels_of_different_releases(fake_data, tmp_path):
    raw = _copy_of_fake_mnist(fake_data, tmp_path)
    fake.write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(499))
    with pytest.raises(DataCorruptError, match="holds 500 images but .* holds 499 labels"):
        load_dataset("mnist", root=str(tmp_path), download=False)


def test_gz_files_alone_are_extracted_and_a_broken_one_is_named(fake_data, tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for f in idx.FILES:
        with gzip.open(raw / f"{f}.gz", "wb") as out:
            out.write((fake_data["root"] / "FashionMNIST" / "raw" / f).read_bytes())
    data = load_dataset("fashion_mnist", root=str(tmp_path), download=False, n_test=7)
    assert data.y_test.tolist() == fake_data["fashion_mnist"]["t10k-labels-idx1-ubyte"][:7].tolist()
    assert all((raw / f).is_file() for f in idx.FILES)
    (raw / "train-images-idx3-ubyte").unlink()
    (raw / "train-images-idx3-ubyte.gz").write_bytes((raw / "train-images-idx3-ubyte.gz").read_bytes()[:500])
    with pytest.raises(DataCorruptError, match="train-images-idx3-ubyte.gz is not a readable gzip archive"):
        load_dataset("fashion_mnist", root=str(tmp_path), download=False)
    assert not (raw / "train-images-idx3-ubyte").exists()  # no half-written file left behind


@pytest.mark.skipif(not Path(idx.DEBIAN_FASHION).is_dir(), reason="Debian's dataset-fashion-mnist not installed")
def test_real_fashion_mnist_through_the_debian_package_and_the_documented_links(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in Path(idx.DEBIAN_FASHION).glob("*.gz"):
        (raw / gz.name).symlink_to(gz)
    data = load_dataset("fashion_mnist", root=str(tmp_path), download=False)  # MD5-checked: official counts
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.y_train[:5].tolist() == [9, 0, 0, 3, 0]  # the official training set's first labels
    assert torch.bincount(data.y_test).tolist() == [1000] * 10


# ------------------------------------------------------------------------------------------------
# n_train / n_test
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key, value", [("n_train", 0), ("n_train", -5), ("n_train", 1001), ("n_test", 0),
                                        ("n_test", 501), ("n_train", 2.5), ("n_test", True)])
def test_bad_subset_size_names_the_key_value_and_range(key, value):
    with pytest.raises(DataConfigError) as info:
        load_dataset("mnist", download=False, **{key: value})
    msg = str(info.value)
    assert isinstance(info.value, ValueError) and f"dataset.{key}={value}" in msg
    assert f"valid: [1, {1000 if key == 'n_train' else 500}]" in msg and "null for the whole split" in msg


def test_subset_bounds_are_inclusive():
    data = load_dataset("mnist", download=False, n_train=1000, n_test=1)
    assert len(data.x_train) == 1000 and len(data.x_test) == 1


@pytest.mark.parametrize("name", ["linear_teacher", "teacher_net", "quadratic_teacher"])
def test_synthetic_sets_refuse_empty_splits(name):
    with pytest.raises(DataConfigError, match="dataset.n_test=0 is out of range; valid: an integer >= 1"):
        load_dataset(name, n_train=4, n_test=0)


def test_n_train_zero_from_the_command_line_stops_with_the_setting(tmp_path):
    cfg = compose_config(["dataset=mnist", "dataset.download=false", "dataset.n_train=0", "trainer.progress=false"])
    with pytest.raises(ValueError, match=r"dataset.n_train=0 is out of range \(the split holds 1000 examples\)"):
        run(cfg, tmp_path / "run")


# ------------------------------------------------------------------------------------------------
# registry and batching
# ------------------------------------------------------------------------------------------------
def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="cifar10.*fashion_mnist.*linear_teacher.*mnist"):
        load_dataset("imagenet22k")


def test_batches_cover_every_example_once_per_epoch():
    order = torch.cat(batches(10, 4, torch.Generator().manual_seed(0), "cpu"))
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    assert [b.numel() for b in batches(10, 4, None, "cpu", shuffle=False)] == [4, 4, 2]
