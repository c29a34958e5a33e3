"""Convolutional networks."""
from torch import nn

from fa_bench.models import activation, register


@register
def moskovitz_mnist(in_channels=1, n_classes=10, image_size=28, hidden_activation="relu"):
    """Moskovitz et al. 2018, Section 7: two 5x5 conv layers (32, 64 channels), each followed by
    2x2 max-pooling, then a 1024-unit dense layer and the output layer."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2), activation(hidden_activation), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), activation(hidden_activation), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * side * side, 1024), activation(hidden_activation),
        nn.Linear(1024, n_classes),
    )
