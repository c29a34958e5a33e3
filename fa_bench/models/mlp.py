"""Fully connected networks: one definition for every rule (the rule lives in fa_bench.convert)."""
from torch import nn

from fa_bench.models.registry import activation, register


@register
def mlp(sizes, hidden_activation="tanh", output_activation="linear", bias=True, dropout=0.0,
        input_dropout=0.0, depth=None, width=None):
    """sizes = [n_in, h1, ..., n_out]. Inputs of any shape are flattened.

    ``depth`` and ``width`` spell a deep uniform net without a long list (Nøkland's 100x240): with
    them, sizes = [n_in, n_out] and ``depth`` hidden layers of ``width`` units go between.
    ``output_activation`` is part of the model (Lillicrap's logistic outputs); for losses that take
    logits (cross-entropy, bce) leave it 'linear'. ``input_dropout`` drops inputs, ``dropout`` every
    hidden layer's output (Nøkland's DO: 0.1 and 0.5).
    """
    sizes = list(sizes)
    if (depth is None) != (width is None):
        raise ValueError(f"mlp: give depth and width together (got depth={depth!r}, width={width!r})")
    if depth is not None:
        if len(sizes) != 2 or not (isinstance(depth, int) and depth >= 0 and isinstance(width, int) and width >= 1):
            raise ValueError(f"mlp: with depth and width, sizes must be [n_in, n_out] and depth >= 0, width >= 1; "
                             f"got sizes={sizes}, depth={depth!r}, width={width!r}")
        sizes = [sizes[0], *[width] * depth, sizes[1]]
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least [n_in, n_out], got sizes={sizes}")
    layers: list[nn.Module] = [nn.Flatten()]
    if input_dropout:
        layers.append(nn.Dropout(input_dropout))
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out, bias=bias))
        last = i == len(sizes) - 2
        layers.append(activation(output_activation if last else hidden_activation))
        if dropout and not last:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
