"""Optimizers by name."""
import torch

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def build_optimizer(model, name="sgd", lr=0.01, **kwargs):
    """Every parameter, learned feedback (``matched``) included, so B gets W's step under any optimizer."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name](model.parameters(), lr=lr, **kwargs)
