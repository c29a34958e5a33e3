"""The models registry and what its modules share; fa_bench.models re-exports it (see that package's docstring)."""
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


def check_bias_init(bias_scale) -> None:
    if not (bias_scale is None or bias_scale == "fan_in"
            or (isinstance(bias_scale, (int, float)) and not isinstance(bias_scale, bool) and bias_scale >= 0)):
        raise ValueError(f"bias_init_scale must be null (zero biases), a number >= 0 (U[-s, s]) or 'fan_in' "
                         f"(U(±1/√fan_in) per layer), got {bias_scale!r}")


def bias_value_problem(bias_value, bias_scale=None, init="default") -> str | None:
    """What is wrong with a constant bias setting (None: nothing); the config check (fa_bench.validation)
    and check_bias_value both word their refusal with it."""
    if bias_value is None:
        return None
    if isinstance(bias_value, bool) or not isinstance(bias_value, (int, float)):
        return "must be null or a number (every bias set to it)"
    if bias_scale is not None:
        return (f"both set the biases with bias_init_scale={bias_scale!r}: keep bias_init_scale=null with a "
                f"constant bias")
    if init == "default":
        return "needs a weight init other than 'default' (torch's own init leaves torch's biases): set init"
    return None


def check_bias_value(bias_value, bias_scale=None, init="default") -> None:
    problem = bias_value_problem(bias_value, bias_scale, init)
    if problem:
        raise ValueError(f"bias_init_value {problem}, got {bias_value!r}")


def init_weights(model: nn.Module, init: str = "default", scale: float | None = None, bias_scale=None,
                 generator: torch.Generator | None = None, bias_value=None):
    """Re-initialise every Linear/Conv2d: 'default' (torch's), 'uniform' U[-scale, scale] (Lillicrap),
    'zero' (Nøkland's FA/DFA tanh nets), 'fan_in_uniform' U(±scale/√fan_in) (Nøkland's BP and ReLU nets).
    Biases: the constant bias_value if it is set (the constant 0.1 of Lansdell's autoencoder code),
    U[-bias_scale, bias_scale] if bias_scale is a number, U(±1/√fan_in) of their layer if it is 'fan_in'
    (Nøkland: "weights and biases were sampled from" that range), else zero (torch's own for 'default')."""
    check_init(init, scale)
    check_bias_init(bias_scale)
    check_bias_value(bias_value, bias_scale, init)
    if init == "default":
        return model
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        w = m.weight
        fan_in_bound = 1.0 / math.sqrt(w[0].numel())  # w[0]: in_features × receptive field
        with torch.no_grad():
            if init == "zero":
                w.zero_()
            else:
                bound = scale if init == "uniform" else (1.0 if scale is None else scale) * fan_in_bound
                w.copy_((torch.rand(w.shape, generator=generator) * 2 - 1) * bound)
            if m.bias is not None:
                if bias_value is not None:
                    m.bias.fill_(bias_value)
                elif bias_scale is None:
                    m.bias.zero_()
                else:
                    b_bound = fan_in_bound if bias_scale == "fan_in" else bias_scale
                    m.bias.copy_((torch.rand(m.bias.shape, generator=generator) * 2 - 1) * b_bound)
    return model


def build_model(name: str, *, init: str = "default", init_scale=None, bias_init_scale=None, bias_init_value=None,
                seed: int = 0, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(sorted(MODELS))}")
    torch.manual_seed(derive_seed(seed, "model"))  # torch's default init draws from the global stream
    model = MODELS[name](**kwargs)
    return init_weights(model, init, init_scale, bias_init_scale, generator(seed, "model"), bias_init_value)


def conv_pool_stack(in_channels, image_size, channels, kernels, hidden_activation):
    """Stride-1 'same' convolutions (odd kernels, padding k // 2), each followed by its activation and
    3x3 max-pooling at stride 2 rounding up (ceil_mode: cuda-convnet's and TF's 'SAME' sizes, 32 → 16 →
    8 → 4): the convolutional part of Nøkland's CONV net and Lansdell's CIFAR CNN. Returns the layers,
    the channels and the side of the last map (so the dense head reads channels · side² values)."""
    layers, c_in, side = [], in_channels, image_size
    for c_out, k in zip(channels, kernels, strict=True):
        if k % 2 == 0:
            raise ValueError(f"kernel {k}: 'same' padding needs an odd kernel")
        layers += [nn.Conv2d(c_in, c_out, k, padding=k // 2), activation(hidden_activation),
                   nn.MaxPool2d(3, stride=2, ceil_mode=True)]
        c_in, side = c_out, -(-(side - 3) // 2) + 1  # ceil((side − 3) / 2) + 1
    return layers, c_in, side
