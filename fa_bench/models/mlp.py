"""Fully connected networks: one definition for every rule (the rule lives in fa_bench.convert)."""
from torch import nn

from fa_bench.models import activation, register


@register
def mlp(sizes, hidden_activation="tanh", output_activation="linear", bias=True, dropout=0.0,
        input_dropout=0.0):
    """sizes = [n_in, h1, ..., n_out]. Inputs of any shape are flattened.

    ``output_activation`` is part of the model (Lillicrap's logistic outputs); for losses that take
    logits (cross-entropy, bce) leave it 'linear'.
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp needs at least [n_in, n_out], got sizes={list(sizes)}")
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
