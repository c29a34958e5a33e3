"""Every model config builds and gives one output per class for inputs of its size (on the meta device:
shapes without arithmetic), and the Moskovitz nets have the sizes SAME padding implies."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from fa_bench.models import MODELS, build_model

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"


def built(name):
    kwargs = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    with torch.device("meta"):
        return build_model(kwargs.pop("name"), **kwargs), kwargs


def input_for(model, kwargs):
    if "image_size" in kwargs:
        return torch.zeros(2, kwargs["in_channels"], kwargs["image_size"], kwargs["image_size"], device="meta")
    first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    return torch.zeros(2, first.in_features, device="meta")


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF.glob("*.yaml")))
def test_every_model_config_gives_one_output_per_class(name):
    model, kwargs = built(name)
    out = model.eval()(input_for(model, kwargs))
    last = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))][-1]
    n_out = kwargs.get("n_classes", getattr(last, "out_features", None) or kwargs.get("sizes", [None])[-1])
    assert tuple(out.shape) == (2, n_out)


def test_every_registered_model_has_a_config():
    registered = set(MODELS)
    configured = {OmegaConf.load(p).name for p in CONF.glob("*.yaml")}
    assert registered <= configured, registered - configured


def feature_sides(model, x):
    """The spatial side after each layer, in order."""
    sides = []
    for layer in model:
        x = layer(x)
        if x.dim() == 4 and isinstance(layer, (nn.Conv2d, nn.MaxPool2d)):
            sides.append(x.shape[-1])
    return sides


@pytest.mark.parametrize("name, sides", [
    ("moskovitz_mnist", [28, 14, 14, 7]),
    ("moskovitz_cifar1", [24, 12, 12, 6]),
    ("moskovitz_cifar2", [32, 32, 16, 16, 16, 8, 8, 8, 8]),
    ("moskovitz_imagenet1", [150, 75, 38, 19]),
    ("moskovitz_imagenet2", [75, 38, 13, 7, 7, 4, 4, 4, 4]),
])
def test_moskovitz_nets_have_the_sizes_same_padding_gives(name, sides):
    model, kwargs = built(name)
    assert feature_sides(model.eval(), input_for(model, kwargs)) == sides
    if name == "moskovitz_imagenet1":
        assert next(m for m in model if isinstance(m, nn.Linear)).in_features == 192 * 19 * 19 == 69312
    dropouts = [m.p for m in model if isinstance(m, nn.Dropout)]
    assert dropouts == {"moskovitz_mnist": [0.5], "moskovitz_cifar2": [0.2, 0.5, 0.5],
                        "moskovitz_imagenet2": [0.2, 0.5, 0.5]}.get(name, [])
