"""Image data sets through torchvision, kept as float tensors (they fit in memory)."""
import os

import torch

from fa_bench.data import idx
from fa_bench.data.augment import centre_crop, check_crop
from fa_bench.data.errors import DataFileNotFoundError, check_count
from fa_bench.data.registry import DataBundle, default_root, register
from fa_bench.data.whitening import check as check_whitening
from fa_bench.data.whitening import whiten as apply_whitening

CIFAR_FOLDERS = {"CIFAR10": ("cifar-10-batches-py", "cifar-10-python.tar.gz"),
                 "CIFAR100": ("cifar-100-python", "cifar-100-python.tar.gz")}


def _torchvision_set(cls, root, train, download):
    """A CIFAR set through torchvision, whose own MD5 checks cover its pickled batches; any failure
    (missing, corrupted, download refused) is reported with the folder and the archive to fetch."""
    root = os.path.abspath(root or default_root())
    try:
        return cls(root, train=train, download=download)
    except (RuntimeError, OSError) as err:  # torchvision: "Dataset not found or corrupted", or a refused download
        folder, archive = CIFAR_FOLDERS.get(cls.__name__, (cls.__name__, cls.__name__))
        raise DataFileNotFoundError(
            f"{cls.__name__} not found or corrupted: looked in {os.path.join(root, folder)} (data root {root}). "
            f"Set FA_DATA (or pass data.root=...) to the folder that holds {folder}/, or download {archive} "
            f"from https://www.cs.toronto.edu/~kriz/ and extract it there (it unpacks into {folder}/; a "
            f"corrupted batch file fails torchvision's MD5 check: delete the folder and extract it again)"
            f"{'' if download else ', or allow the download (dataset.download=true) with network access'}. "
            f"(torchvision said: {err})") from err


def _subset(bundle: DataBundle, n_train, n_test) -> DataBundle:
    """The first n examples of each split (quick runs, tests); None keeps a split whole. Checked against
    what the split holds, so 0, negatives and too-large values stop here with the valid range."""
    n_train = check_count("dataset.n_train", n_train, len(bundle.x_train))
    n_test = check_count("dataset.n_test", n_test, len(bundle.x_test))
    if n_train is not None:
        bundle.x_train, bundle.y_train = bundle.x_train[:n_train], bundle.y_train[:n_train]
    if n_test is not None:
        bundle.x_test, bundle.y_test = bundle.x_test[:n_test], bundle.y_test[:n_test]
    return bundle


TARGETS = ("class", "image")


def _image_targets(bundle: DataBundle) -> DataBundle:
    """An autoencoder's data: each target is its own input, flattened (a view, no copy), and the task a
    regression; the test classes stay as ``labels_test`` (to colour a latent space by digit)."""
    bundle.labels_test = bundle.y_test
    bundle.y_train, bundle.y_test = bundle.x_train.flatten(1), bundle.x_test.flatten(1)
    bundle.task, bundle.n_outputs = "regression", bundle.y_train.shape[1]
    return bundle


def _idx_set(cls, root, download, normalize, n_train, n_test, target="class") -> DataBundle:
    """MNIST-layout sets: (N, 1, 28, 28) floats in [0, 1], optionally standardised with the (whole)
    training set's mean and std. The IDX files are checked first (fa_bench.data.idx). ``target``:
    'class' (the digit) or 'image' (the image itself, flattened: an autoencoder's target)."""
    if target not in TARGETS:
        raise ValueError(f"dataset target {target!r}: valid: {', '.join(TARGETS)}")
    root = os.path.abspath(root or default_root())
    idx.prepare(cls, root, download)
    train = cls(root, train=True, download=False)
    test = cls(root, train=False, download=False)
    x_tr = train.data.unsqueeze(1).float().div_(255)
    x_te = test.data.unsqueeze(1).float().div_(255)
    if normalize:
        mean, std = x_tr.mean(), x_tr.std()
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    bundle = _subset(DataBundle(x_tr, train.targets.clone(), x_te, test.targets.clone(), "classification", 10),
                     n_train, n_test)
    return _image_targets(bundle) if target == "image" else bundle


@register
def mnist(root=None, download=True, normalize=False, n_train=None, n_test=None, target="class"):
    """MNIST as (N, 1, 28, 28) floats in [0, 1] (optionally standardised with the train mean/std);
    ``target``: 'class' (the digit) or 'image' (the flattened image: Lansdell's autoencoder)."""
    import torchvision

    return _idx_set(torchvision.datasets.MNIST, root, download, normalize, n_train, n_test, target)


@register
def fashion_mnist(root=None, download=True, normalize=False, n_train=None, n_test=None, target="class"):
    """Fashion-MNIST (Xiao et al. 2017), same layout and arguments as mnist, read from
    <root>/FashionMNIST/raw/ (torchvision's folder name)."""
    import torchvision

    return _idx_set(torchvision.datasets.FashionMNIST, root, download, normalize, n_train, n_test, target)


def _cifar(cls, root, download, n_classes, n_train, n_test, whiten, zca_epsilon, crop=None):
    """(N, 3, 32, 32) floats in [0, 1], or whitened (fa_bench.data.whitening) with statistics of the
    whole training set, whatever n_train keeps: a quick run sees the transform a full run does.
    ``crop``: a side; training batches are then random crops of that side and the test images their
    centre crops (fa_bench.data.augment)."""
    check_whitening(whiten, zca_epsilon)
    check_crop(crop, 32)
    train = _torchvision_set(cls, root, True, download)
    test = _torchvision_set(cls, root, False, download)

    def to_tensor(d):
        return torch.from_numpy(d.data).permute(0, 3, 1, 2).float().div_(255)

    x_train, x_test = to_tensor(train), to_tensor(test)
    if whiten is not None:
        cache = os.path.join(os.path.abspath(root or default_root()), "whitening")
        x_train, x_test = apply_whitening(x_train, x_test, whiten, zca_epsilon, cache, cls.__name__.lower(),
                                          train.data)
    if crop is not None:
        x_test = centre_crop(x_test, crop).contiguous()
    return _subset(DataBundle(x_train, torch.tensor(train.targets), x_test, torch.tensor(test.targets),
                              "classification", n_classes, train_crop=crop), n_train, n_test)


@register
def cifar10(root=None, download=True, n_train=None, n_test=None, whiten=None, zca_epsilon=0.1, crop=None):
    """CIFAR-10; ``whiten``: null (inputs in [0, 1]), 'zca' or 'gcn_zca' (Nøkland's CONV net inputs);
    ``crop``: null, or 24 (Moskovitz's Model 1: random training crops, centre test crops)."""
    import torchvision

    return _cifar(torchvision.datasets.CIFAR10, root, download, 10, n_train, n_test, whiten, zca_epsilon, crop)


@register
def cifar100(root=None, download=True, n_train=None, n_test=None, whiten=None, zca_epsilon=0.1, crop=None):
    """CIFAR-100 (fine labels); ``whiten`` and ``crop`` as for cifar10."""
    import torchvision

    return _cifar(torchvision.datasets.CIFAR100, root, download, 100, n_train, n_test, whiten, zca_epsilon, crop)
