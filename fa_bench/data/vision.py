"""Image data sets through torchvision, kept as float tensors (they fit in memory)."""
import os

import torch

from fa_bench.data import DataBundle, default_root, register
from fa_bench.data.whitening import check as check_whitening
from fa_bench.data.whitening import whiten as apply_whitening


def _torchvision_set(cls, root, train, download):
    root = os.path.abspath(root or default_root())
    try:
        return cls(root, train=train, download=download)
    except (RuntimeError, OSError) as err:  # not found, or a download the network refused
        raise FileNotFoundError(
            f"{cls.__name__} not found under {root} (looked for {cls.__name__} files there"
            f"{'' if download else '; download=false'}). Set FA_DATA or data.root to the folder that "
            f"holds it, or allow the download. ({err})") from err


def _subset(bundle: DataBundle, n_train, n_test) -> DataBundle:
    """The first n examples of each split (quick runs, tests); None keeps a split whole."""
    if n_train is not None:
        bundle.x_train, bundle.y_train = bundle.x_train[:n_train], bundle.y_train[:n_train]
    if n_test is not None:
        bundle.x_test, bundle.y_test = bundle.x_test[:n_test], bundle.y_test[:n_test]
    return bundle


@register
def mnist(root=None, download=True, normalize=False, n_train=None, n_test=None):
    """MNIST as (N, 1, 28, 28) floats in [0, 1] (optionally standardised with the train mean/std)."""
    import torchvision

    train = _torchvision_set(torchvision.datasets.MNIST, root, True, download)
    test = _torchvision_set(torchvision.datasets.MNIST, root, False, download)
    x_tr = train.data.unsqueeze(1).float().div_(255)
    x_te = test.data.unsqueeze(1).float().div_(255)
    if normalize:
        mean, std = x_tr.mean(), x_tr.std()
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
    return _subset(DataBundle(x_tr, train.targets.clone(), x_te, test.targets.clone(), "classification", 10),
                   n_train, n_test)


def _cifar(cls, root, download, n_classes, n_train, n_test, whiten, zca_epsilon):
    """(N, 3, 32, 32) floats in [0, 1], or whitened (fa_bench.data.whitening) with statistics of the
    whole training set, whatever n_train keeps: a quick run sees the transform a full run does."""
    check_whitening(whiten, zca_epsilon)
    train = _torchvision_set(cls, root, True, download)
    test = _torchvision_set(cls, root, False, download)

    def to_tensor(d):
        return torch.from_numpy(d.data).permute(0, 3, 1, 2).float().div_(255)

    x_train, x_test = to_tensor(train), to_tensor(test)
    if whiten is not None:
        cache = os.path.join(os.path.abspath(root or default_root()), "whitening")
        x_train, x_test = apply_whitening(x_train, x_test, whiten, zca_epsilon, cache, cls.__name__.lower(),
                                          train.data)
    return _subset(DataBundle(x_train, torch.tensor(train.targets), x_test,
                              torch.tensor(test.targets), "classification", n_classes), n_train, n_test)


@register
def cifar10(root=None, download=True, n_train=None, n_test=None, whiten=None, zca_epsilon=0.1):
    """CIFAR-10; ``whiten``: null (inputs in [0, 1]), 'zca' or 'gcn_zca' (Nøkland's CONV net inputs)."""
    import torchvision

    return _cifar(torchvision.datasets.CIFAR10, root, download, 10, n_train, n_test, whiten, zca_epsilon)


@register
def cifar100(root=None, download=True, n_train=None, n_test=None, whiten=None, zca_epsilon=0.1):
    """CIFAR-100 (fine labels); ``whiten`` as for cifar10."""
    import torchvision

    return _cifar(torchvision.datasets.CIFAR100, root, download, 100, n_train, n_test, whiten, zca_epsilon)
