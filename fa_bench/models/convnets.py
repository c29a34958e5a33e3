"""Convolutional networks."""
from torch import nn

from fa_bench.models.registry import activation, conv_pool_stack, register


@register
def nokland_cifar_conv(in_channels=3, n_classes=10, image_size=32, hidden_activation="tanh",
                       channels=(96, 128, 256), hidden=2048, dropout=0.0):
    """Nøkland 2016's CONV net (Tables 2, 3): the CIFAR net of the dropout paper (Srivastava et al. 2014)
    with tanh units. Three 5x5 conv layers (96, 128, 256 channels, stride 1, 'same' padding), each
    followed by 3x3 max-pooling at stride 2, then two dense layers of 2048 units and the output layer.

    Pooling rounds up (ceil_mode), as cuda-convnet's did for that net: 32 → 16 → 8 → 4, so the first
    dense layer reads 256·4·4 values. Under dfa every converted layer's input is a feedback point, so
    the error enters after each max-pooling layer, as the paper says. ``dropout`` (default off) drops
    the dense layers' inputs.
    """
    layers, c_in, side = conv_pool_stack(in_channels, image_size, channels, [5] * len(channels), hidden_activation)
    layers.append(nn.Flatten())
    n_in = c_in * side * side
    for _ in range(2):
        layers += [nn.Dropout(dropout)] if dropout else []
        layers += [nn.Linear(n_in, hidden), activation(hidden_activation)]
        n_in = hidden
    layers += [nn.Dropout(dropout)] if dropout else []
    layers.append(nn.Linear(n_in, n_classes))
    return nn.Sequential(*layers)
