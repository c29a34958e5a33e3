"""Synthetic regression tasks from Lillicrap 2016 (teachers drawn from the data seed)."""
import torch

from fa_bench.data import DataBundle, register
from fa_bench.seeding import generator


@register
def linear_teacher(n_in=30, n_out=10, n_train=20000, n_test=1000, teacher_scale=1.0, seed=0, root=None):
    """y* = T x, T uniform in [-teacher_scale, teacher_scale], x ~ N(0, I) (Lillicrap Fig. 2).

    The training set is the example stream: with one example per step and one epoch, every rule
    at a given seed sees the same sequence.
    """
    g = generator(seed, "data")
    T = (torch.rand(n_out, n_in, generator=g) * 2 - 1) * teacher_scale
    x_train = torch.randn(n_train, n_in, generator=g)
    x_test = torch.randn(n_test, n_in, generator=g)
    return DataBundle(x_train, x_train @ T.t(), x_test, x_test @ T.t(), "regression", n_out)
