"""The data registry and what its modules share; fa_bench.data re-exports it (see that package's docstring)."""
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
    labels_test: torch.Tensor | None = None  # the test classes when the targets are not (an autoencoder's images)
    # a side: training batches are random windows of it, redrawn each epoch (fa_bench.data.augment);
    # x_test then already holds the centre windows
    train_crop: int | None = None

    def to(self, device):
        for f in ("x_train", "y_train", "x_test", "y_test"):
            setattr(self, f, getattr(self, f).to(device))
        if self.labels_test is not None:
            self.labels_test = self.labels_test.to(device)
        return self


class StreamingData:
    """A classification set read from disk batch by batch (ImageNet does not fit in memory).

    The interface the trainer uses, and nothing else:

    - ``task`` ("classification"), ``n_outputs``, ``input_shape`` (C, H, W), ``n_train``, ``n_test``;
    - ``train_loader(epoch, generator_seed, batch_size)``: an iterable of CPU ``(x, y)`` batches, every
      training example once (a final short batch kept). ``generator_seed`` is read as the run seed:
      the order comes from ``derive_seed(generator_seed, "order") + epoch`` (a RandomSampler, or a
      DistributedSampler with ``set_epoch`` when torch.distributed is initialised, chosen on each
      iteration), and each example's random transform from (run seed, epoch, example index), so the
      same arguments give the same batches whatever ``num_workers`` is, and another epoch another
      order and other crops. The epoch is applied when the iterable is iterated, so a returned
      iterable stays valid after later calls. Workers persist across epochs (one DataLoader per
      batch size), pinned memory when CUDA is available;
    - ``test_loader(batch_size)``: the test split in file order, no randomness;
    - ``to(device)`` records the device (batches stay on the CPU; the trainer moves them) and returns self.
    """

    task = "classification"

    def __init__(self, train_set, test_set, n_outputs: int, input_shape: tuple, num_workers: int = 2):
        from fa_bench.data.streaming import Loaders  # torch.utils.data machinery, kept apart

        self.n_outputs, self.input_shape = int(n_outputs), tuple(input_shape)
        self.n_train, self.n_test = len(train_set), len(test_set)
        self.device = torch.device("cpu")
        self._loaders = Loaders(train_set, test_set, num_workers)

    def to(self, device):
        self.device = torch.device(device)
        return self

    def train_loader(self, epoch: int, generator_seed: int, batch_size: int, start_batch: int = 0):
        """``start_batch``: begin the epoch's order there (a resumed run), without loading what precedes."""
        return self._loaders.train(int(epoch), int(generator_seed), int(batch_size), int(start_batch))

    def test_loader(self, batch_size: int):
        return self._loaders.test(int(batch_size))


def default_root() -> str:
    return os.environ.get("FA_DATA", "./data")


def load_dataset(name: str, device="cpu", **kwargs) -> DataBundle | StreamingData:
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
