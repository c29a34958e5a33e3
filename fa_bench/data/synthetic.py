"""Synthetic regression tasks from Lillicrap 2016 (teachers drawn from the data seed)."""
import torch

from fa_bench.data.errors import check_count
from fa_bench.data.registry import DataBundle, register
from fa_bench.seeding import generator


def _counts(n_train, n_test):
    """Synthetic sets draw as many examples as asked, but at least one per split (an empty split
    fails much later, far from the setting)."""
    return check_count("dataset.n_train", n_train), check_count("dataset.n_test", n_test)


@register
def linear_teacher(n_in=30, n_out=10, n_train=20000, n_test=1000, teacher_scale=1.0, seed=0, root=None):
    """y* = T x, T uniform in [-teacher_scale, teacher_scale], x ~ N(0, I) (Lillicrap Fig. 2).

    The training set is the example stream: with one example per step and one epoch, every rule
    at a given seed sees the same sequence.
    """
    n_train, n_test = _counts(n_train, n_test)
    g = generator(seed, "data")
    T = (torch.rand(n_out, n_in, generator=g) * 2 - 1) * teacher_scale
    x_train = torch.randn(n_train, n_in, generator=g)
    x_test = torch.randn(n_test, n_in, generator=g)
    return DataBundle(x_train, x_train @ T.t(), x_test, x_test @ T.t(), "regression", n_out)


@register
def teacher_net(sizes=(30, 20, 10, 10), activation="tanh", weight_scale=0.5, n_train=20000, n_test=1000,
                seed=0, teacher_seed=None, root=None):
    """y* = W_L f(... f(W_0 x + b_0) ...) + b_L: a random network with ``activation`` hidden units and a
    linear output, weights and biases uniform in [-weight_scale, weight_scale], x ~ N(0, I) (Lillicrap
    Fig. 3d). ``teacher_seed`` fixes one target across seeds (the paper's 'fixed for the corresponding
    simulations'); the inputs are always the run seed's."""
    from fa_bench.models import activation as make_activation

    n_train, n_test = _counts(n_train, n_test)
    sizes = list(sizes)
    if len(sizes) < 2:
        raise ValueError(f"teacher_net needs sizes [n_in, ..., n_out], got {sizes}")
    g_teacher = generator(seed if teacher_seed is None else teacher_seed, "teacher")
    layers = [((torch.rand(o, i, generator=g_teacher) * 2 - 1) * weight_scale,
               (torch.rand(o, generator=g_teacher) * 2 - 1) * weight_scale) for i, o in zip(sizes[:-1], sizes[1:])]
    f = make_activation(activation)

    def target(x):
        for k, (W, b) in enumerate(layers):
            x = x @ W.t() + b
            if k < len(layers) - 1:
                x = f(x)
        return x

    g = generator(seed, "data")
    x_train = torch.randn(n_train, sizes[0], generator=g)
    x_test = torch.randn(n_test, sizes[0], generator=g)
    return DataBundle(x_train, target(x_train), x_test, target(x_test), "regression", sizes[-1])


@register
def quadratic_teacher(n_in=20, n_out=20, x_range=2.0, q_scale=0.5, n_train=20000, n_test=1000, seed=0,
                      root=None):
    """y*_k = xᵀ Q_k x with Q_k uniform in [-q_scale, q_scale] and x uniform in [-x_range, x_range]
    (Lillicrap Fig. 5)."""
    n_train, n_test = _counts(n_train, n_test)
    g = generator(seed, "data")
    Q = (torch.rand(n_out, n_in, n_in, generator=g) * 2 - 1) * q_scale
    x_train = (torch.rand(n_train, n_in, generator=g) * 2 - 1) * x_range
    x_test = (torch.rand(n_test, n_in, generator=g) * 2 - 1) * x_range

    def target(x):
        return torch.einsum("ni,kij,nj->nk", x, Q, x)

    return DataBundle(x_train, target(x_train), x_test, target(x_test), "regression", n_out)
