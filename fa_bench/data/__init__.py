"""Data sets as tensors on the training device. Adding one: a loader under @register here (or in a
module imported below), plus conf/dataset/<name>.yaml whose keys are its arguments."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DATASETS: dict = {}


def register(fn):
    DATASETS[fn.__name__] = fn
    return fn


@dataclass
class DataBundle:
    """Train and test tensors, already on the device. Targets are class indices or regression targets."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str  # "classification" or "regression"
    n_outputs: int

    def to(self, device):
        for f in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, f, getattr(self, f).to(device))
        return self


def default_root() -> str:
    return os.environ.get("FA_DATA", "./data")


def load_dataset(name: str, device="cpu", **kwargs) -> DataBundle:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(sorted(DATASETS))}")
    return DATASETS[name](**kwargs).to(device)


def batches(n: int, batch_size: int, generator: torch.Generator | None, device, shuffle: bool = True):
    """Index tensors for one epoch: a permutation drawn on the data's device, cut into batches.

    A final short batch is kept (every example is seen once per epoch).
    """
    if shuffle:
        order = torch.randperm(n, generator=generator, device="cpu").to(device)
    else:
        order = torch.arange(n, device=device)
    return order.split(batch_size)


from fa_bench.data import synthetic, vision  # noqa: E402,F401  (register)
