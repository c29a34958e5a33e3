"""Lansdell, Prakash & Kording 2020's MNIST autoencoder (Fig. 3, Table 2a; App. C.2).

784-200-2-200-784 with activations, in order, tanh, identity, tanh, relu: the last one is the output's
(the authors' code: ``y_p = relu(n4)``), so the reconstruction is non-negative like the pixels. The
paper's width is 200; the authors' code trains its NP, SG and Matched nets 50 wide (``nn = 50``
overwrites the 200-wide variables), which is ``width: 50`` (conf/model/lansdell_ae50.yaml).
"""
from torch import nn

from fa_bench.models.registry import activation, register


@register
def autoencoder(n_in=784, width=200, latent=2, activations=("tanh", "linear", "tanh", "relu"), bias=True):
    """n_in-width-latent-width-n_in; ``activations``: one per layer, the last the output's. Inputs of any
    shape are flattened; the output is (batch, n_in)."""
    sizes = [n_in, width, latent, width, n_in]
    activations = list(activations)
    if len(activations) != len(sizes) - 1:
        raise ValueError(f"autoencoder: {len(sizes) - 1} activations (one per layer), got {activations}")
    if not all(isinstance(v, int) and v >= 1 for v in (n_in, width, latent)):
        raise ValueError(f"autoencoder: n_in, width and latent must be integers >= 1, got {n_in}, {width}, {latent}")
    layers: list[nn.Module] = [nn.Flatten()]
    for n_from, n_to, act in zip(sizes[:-1], sizes[1:], activations):
        layers += [nn.Linear(n_from, n_to, bias=bias), activation(act)]
    return nn.Sequential(*layers)
