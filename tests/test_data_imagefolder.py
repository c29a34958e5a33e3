"""StreamingData from an ImageFolder tree the test writes: shapes, labels, reproducible order and
crops from (seed, epoch), whatever the worker count; a missing tree names what to build."""
import numpy as np
import pytest
import torch
from PIL import Image

from fa_bench.config import compose_config
from fa_bench.data import StreamingData, load_dataset
from fa_bench.data.errors import DataConfigError, DataFileNotFoundError

CLASSES = ["ant", "bee", "cat"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """3 classes, 4 train + 2 val 20x20 PNGs each; class k's images are mostly channel k, so labels
    can be checked from pixels."""
    root = tmp_path_factory.mktemp("tree")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for k, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 40, (20, 20, 3), dtype=np.uint8)
                pixels[..., k] = 200 + rng.integers(0, 56, (20, 20))
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def _all(loader):
    xs, ys = zip(*loader)
    return torch.cat(xs), torch.cat(ys)


def _data(tree, workers=0):
    return load_dataset("imagefolder", path=str(tree), size=16, num_workers=workers, mean=(0, 0, 0), std=(1, 1, 1))


def test_shapes_labels_and_the_interface(tree):
    data = _data(tree)
    assert isinstance(data, StreamingData) and data.task == "classification"
    assert (data.n_outputs, data.input_shape, data.n_train, data.n_test) == (3, (3, 16, 16), 12, 6)
    x, y = _all(data.train_loader(epoch=0, generator_seed=0, batch_size=5))
    assert x.shape == (12, 3, 16, 16) and x.dtype == torch.float32 and x.device.type == "cpu"
    assert sorted(y.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert [len(b[1]) for b in data.train_loader(0, 0, 5)] == [5, 5, 2]  # the short batch kept
    assert torch.equal(x.mean(dim=(2, 3)).argmax(1), y)  # each label is its image's class folder
    xt, yt = _all(data.test_loader(batch_size=4))
    assert xt.shape == (6, 3, 16, 16) and yt.tolist() == [0, 0, 1, 1, 2, 2]  # file order, no shuffle
    assert torch.equal(_all(data.test_loader(4))[0], xt)
    assert data.to("meta") is data and data.device == torch.device("meta")


def test_same_seed_and_epoch_same_batches_other_epoch_other_order(tree):
    a, b = _data(tree), _data(tree)
    xa, ya = _all(a.train_loader(3, 7, 4))
    xb, yb = _all(b.train_loader(3, 7, 4))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x1, y1 = _all(a.train_loader(4, 7, 4))
    x_seed, _ = _all(a.train_loader(3, 8, 4))
    assert not torch.equal(y1, ya) or not torch.equal(x1, xa)
    assert not torch.equal(x_seed, xa)
    # an iterable made earlier still gives its own epoch after later calls
    early = a.train_loader(3, 7, 4)
    a.train_loader(9, 7, 4)
    assert torch.equal(_all(early)[0], xa)


def test_random_crops_do_not_depend_on_worker_processes(tree):
    x0, y0 = _all(_data(tree, workers=0).train_loader(1, 5, 4))
    x2, y2 = _all(_data(tree, workers=2).train_loader(1, 5, 4))
    assert torch.equal(y0, y2) and torch.equal(x0, x2)


def test_missing_tree_says_what_to_build(tmp_path):
    with pytest.raises(DataFileNotFoundError) as info:
        load_dataset("imagefolder", path=str(tmp_path / "nope"), size=16)
    msg = str(info.value)
    assert str(tmp_path / "nope" / "train") in msg and "one sub-folder per class" in msg and "dataset.path=" in msg
    with pytest.raises(DataFileNotFoundError) as info:
        load_dataset("imagenet", root=str(tmp_path))
    msg = str(info.value)
    assert str(tmp_path / "imagenet") in msg and "FA_DATA" in msg and "ILSVRC2012_img_train.tar" in msg


def test_empty_class_tree_and_class_count_mismatch(tree, tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(DataFileNotFoundError, match="image tree not usable"):
        load_dataset("imagefolder", path=str(tmp_path), size=16)
    with pytest.raises(DataConfigError, match="dataset.n_classes=1000 but .* holds 3 class folders"):
        load_dataset("imagenet", path=str(tree), size=16)
    with pytest.raises(DataConfigError, match="dataset=imagefolder needs dataset.path="):
        load_dataset("imagefolder")


def test_configs_compose_with_the_documented_settings():
    net = compose_config(["dataset=imagenet"]).dataset
    assert (net.size, net.n_classes, net.num_workers) == (299, 1000, 2) and net.path.endswith("/imagenet")
    assert list(net.mean) == [0.485, 0.456, 0.406]
    folder = compose_config(["dataset=imagefolder", "dataset.path=/x"]).dataset
    assert (folder.size, folder.path, folder.n_classes) == (224, "/x", None)
