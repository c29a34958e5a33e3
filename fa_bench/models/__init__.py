"""Model registry. Adding a model: a function here (or in a module imported below) under @register,
plus conf/model/<name>.yaml whose keys are its arguments."""
from __future__ import annotations

import math

import torch
from torch import nn

from fa_bench.seeding import derive_seed, generator

MODELS: dict = {}


def register(fn):
    MODELS[fn.__name__] = fn
    return fn


ACTIVATIONS = {"linear": nn.Identity, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
WEIGHT_INITS = ("default", "uniform", "zero", "fan_in_uniform")


def activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def check_init(init: str, scale) -> None:
    if init not in WEIGHT_INITS:
        raise ValueError(f"unknown weight init {init!r}; valid: {', '.join(WEIGHT_INITS)}")
    if init == "uniform" and scale is None:
        raise ValueError("init='uniform' draws U[-init_scale, init_scale]: set init_scale")


def init_weights(model: nn.Module, init: str = "default", scale: float | None = None, bias_scale=None,
                 generator: torch.Generator | None = None):
    """Re-initialise every Linear/Conv2d: 'default' (torch's), 'uniform' U[-scale, scale] (Lillicrap),
    'zero' (Nøkland's FA/DFA tanh nets), 'fan_in_uniform' U(±scale/√fan_in) (Nøkland's BP and ReLU nets).
    Biases: U[-bias_scale, bias_scale] if bias_scale is given, else zero (torch's own for 'default')."""
    check_init(init, scale)
    if init == "default":
        return model
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        w = m.weight
        with torch.no_grad():
            if init == "zero":
                w.zero_()
            else:
                bound = scale if init == "uniform" else (1.0 if scale is None else scale) / math.sqrt(w[0].numel())
                w.copy_((torch.rand(w.shape, generator=generator) * 2 - 1) * bound)
            if m.bias is not None:
                if bias_scale is None:
                    m.bias.zero_()
                else:
                    m.bias.copy_((torch.rand(m.bias.shape, generator=generator) * 2 - 1) * bias_scale)
    return model


def build_model(name: str, *, init: str = "default", init_scale=None, bias_init_scale=None, seed: int = 0,
                **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    torch.manual_seed(derive_seed(seed, "model"))  # torch's default init draws from the global stream
    model = MODELS[name](**kwargs)
    return init_weights(model, init, init_scale, bias_init_scale, generator(seed, "model"))


from fa_bench.models import convnets, mlp  # noqa: F401  (register)
