"""Lansdell, Prakash & Kording 2020's CIFAR CNN (Tables 1 and 2b; App. C.4)."""
from torch import nn

from fa_bench.models.registry import activation, conv_pool_stack, register


@register
def lansdell_cifar_cnn(in_channels=3, n_classes=10, image_size=32, hidden_activation="tanh",
                       channels=(32, 128, 256), kernels=(3, 5, 5), hidden=2048, dropout=0.5):
    """App. C.4: Conv(3x3, 32), MaxPool(3x3, 2x2), Conv(5x5, 128), MaxPool, Conv(5x5, 256), MaxPool,
    FC 2048, FC 2048, Softmax(n_classes), dropout 0.5. The defaults are the paper's; the authors' code
    (benlansdell/ssdfa, cifar10_conv_np.py) has a 5x5x96 first layer: ``kernels=[5, 5, 5]``,
    ``channels=[96, 128, 256]`` (conf/model/lansdell_cifar_cnn_code.yaml), which is Nøkland's CONV net
    with this dropout placement.

    Where the paper is silent, the code's choices: stride-1 'same' convolutions (padding k // 2), tanh
    units, and 3x3/2 max-pooling with TF's 'SAME' sizes (ceil_mode: 32 → 16 → 8 → 4, the last window
    running off the edge as TF's does), so the first dense layer reads 256·4·4 values; dropout after
    the activation of each of the two dense layers (the code's Dropout after FC1 and after FC2). torch's
    dropout rescales the kept units by 1/(1 − p); the code's does not (a constant factor at test time).
    """
    if len(channels) != len(kernels):
        raise ValueError(f"channels {list(channels)} and kernels {list(kernels)} must have the same length")
    layers, c_in, side = conv_pool_stack(in_channels, image_size, channels, kernels, hidden_activation)
    layers.append(nn.Flatten())
    n_in = c_in * side * side
    for _ in range(2):
        layers += [nn.Linear(n_in, hidden), activation(hidden_activation)]
        layers += [nn.Dropout(dropout)] if dropout else []
        n_in = hidden
    layers.append(nn.Linear(n_in, n_classes))
    return nn.Sequential(*layers)
