"""Moskovitz, Litwin-Kumar & Abbott 2018, Tables 2 and 3: the MNIST, CIFAR-10 and ImageNet networks.

Padding is not stated; SAME padding is the reading, because only SAME gives the pooling sizes the
paper implies (MNIST 28→14→7, CIFAR Model 1 24→12→6, CIFAR Model 2 32→16→8 before its "8×8" global
pool, ImageNet Model 2 299→…→4 before its "4×4" pool). SAME is done with symmetric zero padding chosen
so each layer's output side is ceil(input / stride), as TensorFlow's SAME gives (TensorFlow puts an odd
extra padding row on the bottom/right; ours splits it, a one-pixel shift, the sizes identical).
Every ReLU stage is conv → ReLU; the final 10- or 1000-way layer is linear (the softmax is the loss's).
Dropout sits where §7.1 puts it: after the MNIST net's dense layer (0.5), after the all-convolutional
net's input (0.2) and its two downsampling layers (0.5); the ImageNet nets, "scaled variations of the
two CIFAR-10 architectures", take their CIFAR twin's dropout places (Model 2) or none (Model 1, as
CIFAR Model 1 has none) [inferred; the paper is silent].
"""
from __future__ import annotations

import math

from torch import nn

from fa_bench.models.registry import register


def _same(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """(symmetric padding, output side) giving SAME's output side ceil(n / stride)."""
    out = math.ceil(n / stride)
    pad = max(0, math.ceil(((out - 1) * stride + kernel - n) / 2))
    if (n + 2 * pad - kernel) // stride + 1 != out:
        raise ValueError(f"no symmetric padding gives SAME's size for n={n}, kernel={kernel}, stride={stride}")
    return pad, out


class _Builder:
    """Appends layers and tracks the spatial side, so each conv's SAME padding follows from its input."""

    def __init__(self, channels: int, side: int):
        self.layers: list[nn.Module] = []
        self.channels, self.side = channels, side

    def conv(self, out_channels, kernel, stride=1):
        pad, self.side = _same(self.side, kernel, stride)
        self.layers += [nn.Conv2d(self.channels, out_channels, kernel, stride, pad), nn.ReLU()]
        self.channels = out_channels
        return self

    def pool(self):
        self.layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))  # SAME pooling: ceil(side / 2)
        self.side = math.ceil(self.side / 2)
        return self

    def dropout(self, p):
        if p:
            self.layers.append(nn.Dropout(p))
        return self

    def dense(self, sizes, n_classes, dropout=0.0):
        n_in = self.channels * self.side * self.side
        self.layers.append(nn.Flatten())
        for size in sizes:
            self.layers += [nn.Linear(n_in, size), nn.ReLU()]
            n_in = size
        self.dropout(dropout)
        self.layers.append(nn.Linear(n_in, n_classes))
        return nn.Sequential(*self.layers)

    def global_pool(self):
        self.layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        return nn.Sequential(*self.layers)


@register
def moskovitz_mnist(in_channels=1, n_classes=10, image_size=28, hidden_activation="relu", dropout=0.0):
    """MNIST (Table 2): 5×5 conv 32, pool, 5×5 conv 64, pool, 1024 dense, (dropout), 10."""
    if hidden_activation != "relu":
        raise ValueError(f"moskovitz_mnist is a ReLU net (Table 2); hidden_activation={hidden_activation!r}")
    return _Builder(in_channels, image_size).conv(32, 5).pool().conv(64, 5).pool().dense([1024], n_classes, dropout)


@register
def moskovitz_cifar1(in_channels=3, n_classes=10, image_size=24):
    """CIFAR-10 Model 1, LeNet-style (Table 2), on 24×24 crops: 5×5 conv 64, pool, 5×5 conv 64, pool,
    384 dense, 192 dense, 10."""
    return _Builder(in_channels, image_size).conv(64, 5).pool().conv(64, 5).pool().dense([384, 192], n_classes)


@register
def moskovitz_cifar2(in_channels=3, n_classes=10, image_size=32, input_dropout=0.2, dropout=0.5):
    """CIFAR-10 Model 2, all-convolutional (Table 2): 3×3 conv 96 ×2, 3×3 conv 96 stride 2, 3×3 conv 192
    ×2, 3×3 conv 192 stride 2, 3×3 conv 192, 1×1 conv 192, 1×1 conv 10 (ReLU, as the table lists it),
    global average pooling over the 8×8 map."""
    b = _Builder(in_channels, image_size).dropout(input_dropout)
    b.conv(96, 3).conv(96, 3).conv(96, 3, 2).dropout(dropout)
    b.conv(192, 3).conv(192, 3).conv(192, 3, 2).dropout(dropout)
    return b.conv(192, 3).conv(192, 1).conv(n_classes, 1).global_pool()


@register
def moskovitz_imagenet1(in_channels=3, n_classes=1000, image_size=299):
    """ImageNet Model 1 (Table 3): 9×9 conv 192 stride 2, pool, 5×5 conv 192 stride 2, pool, 512 dense,
    512 dense, 1000 (299 → 150 → 75 → 38 → 19: the dense layer reads 192·19·19 = 69,312 values)."""
    b = _Builder(in_channels, image_size).conv(192, 9, 2).pool().conv(192, 5, 2).pool()
    return b.dense([512, 512], n_classes)


@register
def moskovitz_imagenet2(in_channels=3, n_classes=1000, image_size=299, input_dropout=0.2, dropout=0.5):
    """ImageNet Model 2 (Table 3): 9×9 conv 192 stride 4, 3×3 conv 192 stride 2, 3×3 conv 192 stride 3,
    5×5 conv 256 stride 2, 3×3 conv 256, 3×3 conv 256 stride 2, 3×3 conv 512, 1×1 conv 512, 1×1 conv
    1000, global average pooling over the 4×4 map (299 → 75 → 38 → 13 → 7 → 7 → 4)."""
    b = _Builder(in_channels, image_size).dropout(input_dropout)
    b.conv(192, 9, 4).conv(192, 3, 2).conv(192, 3, 3).dropout(dropout)
    b.conv(256, 5, 2).conv(256, 3).conv(256, 3, 2).dropout(dropout)
    return b.conv(512, 3).conv(512, 1).conv(n_classes, 1).global_pool()
