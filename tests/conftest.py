import os
from pathlib import Path

import pytest
import torchvision

from fa_bench.data import fake

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def fake_data(tmp_path_factory):
    """Tiny MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 in their real on-disk formats, written once per
    session; FA_DATA points at them for every test and every subprocess a test starts.

    Unconditionally: CI exports FA_DATA at the real data, and the suite must give the same result with
    or without it (and without network or ../shared). Returns {"root": Path, "mnist": arrays written,
    "fashion_mnist": arrays written}.
    """
    root = tmp_path_factory.mktemp("fa_data")
    info = {"root": root,
            "mnist": fake.write_mnist_like(root, "MNIST", seed=0),
            "fashion_mnist": fake.write_mnist_like(root, "FashionMNIST", seed=1, layout="bars")}
    fake.write_cifar(root, "cifar10", seed=2)
    fake.write_cifar(root, "cifar100", seed=3)
    previous = os.environ.get("FA_DATA")
    os.environ["FA_DATA"] = str(root)
    yield info
    if previous is None:
        os.environ.pop("FA_DATA", None)
    else:
        os.environ["FA_DATA"] = previous


@pytest.fixture
def fake_cifar_accepted(monkeypatch):
    """The session's CIFAR files are not the official ones: switch off torchvision's MD5 check only."""
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)


@pytest.fixture
def repo():
    return REPO
