"""Sparse connectivity (Lillicrap 2016's control): a fixed fraction of every converted layer's forward
weights W and feedback weights B removed at initialization and kept absent for the whole run.

W's and B's masks are drawn independently, so with half of each removed a pair of neurons has a 25 %
chance of being connected both ways (the paper's 'reciprocal connection')."""
from __future__ import annotations

import torch
from torch import nn

from fa_bench.convert import converted_layers


def sparsify(model: nn.Module, fraction: float, generator: torch.Generator) -> list[nn.Module]:
    """Zero a random ``fraction`` of each converted layer's W and B; the masks stay on the layer as
    buffers (``weight_mask``, ``feedback_mask``) so ``reapply`` can hold the removed entries at zero
    against gradients, weight decay and momentum. Returns the masked layers."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {fraction!r}")
    if fraction == 0.0:
        return []
    layers = []
    for _, layer in converted_layers(model):
        for tensor_name, mask_name in (("weight", "weight_mask"), ("feedback_weight", "feedback_mask")):
            tensor = getattr(layer, tensor_name, None)
            if tensor is None:
                continue
            keep = torch.rand(tensor.shape, generator=generator) >= fraction
            layer.register_buffer(mask_name, keep.to(device=tensor.device, dtype=tensor.dtype))
        layers.append(layer)
    reapply(layers)
    return layers


def masked_layers(model: nn.Module) -> list[nn.Module]:
    return [layer for _, layer in converted_layers(model) if getattr(layer, "weight_mask", None) is not None]


@torch.no_grad()
def reapply(layers) -> None:
    """Put the removed entries back to zero (after every optimizer step)."""
    for layer in layers:
        layer.weight.mul_(layer.weight_mask)
        if getattr(layer, "feedback_mask", None) is not None and layer.feedback_weight is not None:
            layer.feedback_weight.mul_(layer.feedback_mask)
