"""DataLoaders behind StreamingData: a seeded order per epoch and a seeded random transform per
example, so batches depend on (seed, epoch) only, never on worker count or scheduling."""
from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler
from torch.utils.data.distributed import DistributedSampler

from fa_bench.seeding import derive_seed


class _Seeded(Dataset):
    """Items are (seed, epoch, index); the wrapped set's transform draws from torch's global RNG, which
    is seeded from them for that one item and restored after (fork_rng), so a crop is a function of
    (seed, epoch, index) wherever it runs."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        seed, epoch, index = key
        with torch.random.fork_rng(devices=[]):
            # epoch and index in separate bit ranges: distinct seeds for distinct (epoch, index)
            torch.manual_seed((derive_seed(seed, "augment") ^ (epoch << 32) ^ index) % (2**63 - 1))
            return self.dataset[index]


class _EpochSampler(Sampler):
    """Yields (seed, epoch, index) for _Seeded. The order sampler is chosen when iterated: a
    DistributedSampler (this rank's share) when torch.distributed is initialised, else a RandomSampler
    whose generator is seeded from (seed, epoch)."""

    def __init__(self, n: int):
        self.n, self.seed, self.epoch, self.skip = n, 0, 0, 0

    def _order(self):
        base = derive_seed(self.seed, "order") + self.epoch
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            sampler = DistributedSampler(range(self.n), shuffle=True, seed=base - self.epoch)
            sampler.set_epoch(self.epoch)
            return sampler
        return RandomSampler(range(self.n), generator=torch.Generator().manual_seed(base))

    def __iter__(self):
        seed, epoch, skip = self.seed, self.epoch, self.skip
        return ((seed, epoch, i) for k, i in enumerate(self._order()) if k >= skip)

    def __len__(self):
        return max(len(self._order()) - self.skip, 0)


class _Epoch:
    """One epoch's batches: sets the shared sampler to (seed, epoch) when iterated."""

    def __init__(self, loader: DataLoader, sampler: _EpochSampler, seed: int, epoch: int, skip: int = 0):
        self.loader, self.sampler, self.seed, self.epoch, self.skip = loader, sampler, seed, epoch, skip

    def _set(self):
        self.sampler.seed, self.sampler.epoch, self.sampler.skip = self.seed, self.epoch, self.skip

    def __iter__(self):
        self._set()
        return iter(self.loader)

    def __len__(self):
        self._set()
        return len(self.loader)


def _seed_worker(worker_id: int):
    # numpy and random for user transforms that use them; torch's own stream is set per item
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


class Loaders:
    def __init__(self, train_set, test_set, num_workers: int):
        if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
            from fa_bench.data.errors import DataConfigError
            raise DataConfigError(f"dataset.num_workers={num_workers!r}: valid: an integer >= 0 "
                                  f"(0 loads in the training process).")
        self.train_set, self.test_set, self.num_workers = _Seeded(train_set), test_set, num_workers
        self._train: dict[int, tuple[DataLoader, _EpochSampler]] = {}
        self._test: dict[int, DataLoader] = {}

    def _options(self) -> dict:
        workers = self.num_workers
        # generator: each new iterator draws its workers' base seed from it, not from torch's global stream,
        # which dropout draws from (a resumed run starts its iterators at other points of that stream)
        return dict(num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                    worker_init_fn=_seed_worker if workers > 0 else None, generator=torch.Generator().manual_seed(0))

    def train(self, epoch: int, seed: int, batch_size: int, start_batch: int = 0) -> _Epoch:
        if batch_size not in self._train:  # one loader (and its workers) per batch size, reused every epoch
            sampler = _EpochSampler(len(self.train_set))
            loader = DataLoader(self.train_set, batch_size=batch_size, sampler=sampler, drop_last=False,
                                **self._options())
            self._train[batch_size] = (loader, sampler)
        loader, sampler = self._train[batch_size]
        return _Epoch(loader, sampler, seed, epoch, skip=start_batch * batch_size)  # a resumed epoch

    def test(self, batch_size: int) -> DataLoader:
        if batch_size not in self._test:
            self._test[batch_size] = DataLoader(self.test_set, batch_size=batch_size, shuffle=False,
                                                **self._options())
        return self._test[batch_size]
