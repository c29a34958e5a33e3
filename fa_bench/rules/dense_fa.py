"""Dense feedback alignment (Moskovitz et al. 2018 "DenseFA", after Baldi et al. 2016's learning channel)."""
import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback
from fa_bench.seeding import generator as seeded_generator


@register
class DenseFA(Rule):
    """Every hidden layer receives the error of every layer above it, each through its own fixed B.

    δ_l = (Σ_{k>l} B_{l,k} δ_k) ⊙ f′(u_l), where δ_k = ∂/∂u_k is the error reaching converted layer k's
    output as this rule delivers it, and the output layer's δ is the output error e (so e is one of the
    δ_k, as in DFA). The paper says only that DenseFA "adds residual feedback connections from every
    downstream layer"; read here, as in Baldi et al.'s "learning channel", as an unweighted sum that
    includes the adjacent term, which is FA's: B_{l,l+1} has W_{l+1}'s shape and is the layer's
    ``feedback_weight``, drawn exactly as fa draws it (same options, same generator, so dense_fa seed s
    has fa seed s's B). With ``only_adjacent=True`` only that term is kept and the rule is fa.

    In the layers' terms: the backward runs from the output layer down, each converted layer remembers
    the δ reaching its output, and converted layer j sends to its input
    δ_j·B_j + Σ_{d≥1} δ_{j+d}·D_{j,d}, where D_{j,d} (buffer ``dense_feedback_<d>``) has shape
    (numel of δ_{j+d} per example, numel of layer j's input per example) and maps the error of the layer
    d above to layer j's input. The signal then passes through whatever plain modules lie below
    (f′, pooling, flatten), giving the δ above; on a convnet, as in DFA, a conv's output error enters
    through its flattened per-example numel, and the sizes come from ``example_input``. The bottom layer
    sends the same kind of sum to the model's input. D is drawn like B (``init``, ``scale``, with the
    (out, in) shape's fans) from a generator of its own.

    "The layers above" are the converted layers after it in module order, which must form a chain (each
    one's backward runs before the one below it; a layer used twice in one pass is not supported).
    Memory grows with the product of layer sizes, which is why the paper ran it on small models only.
    """

    name = "dense_fa"
    needs_input_shapes = True  # a conv layer's input and output numels size its dense feedback
    options: ClassVar[dict] = {"init": "kaiming_uniform", "scale": None, "only_adjacent": False}

    def __init__(self, **options):
        super().__init__(**options)
        if not isinstance(self.opts["only_adjacent"], bool):
            raise ValueError(f"rule {self.name!r}: only_adjacent must be true or false, "
                             f"got {self.opts['only_adjacent']!r}")

    def bind(self, layers, seeds=None):
        super().bind(layers, seeds)
        self.index = {id(layer): j for j, (_, layer) in enumerate(self.layers)}
        self.deltas = {}

    def attach(self, layers, input_shapes=None):
        self.bind(layers)
        init, scale = self.opts["init"], self.opts["scale"]
        adjacent = seeded_generator(self.opts["seed"], "feedback")  # fa's own stream: fa's B
        dense = seeded_generator(self.opts["seed"], "dense_feedback")
        shapes = [None if input_shapes is None else input_shapes.get(n) for n, _ in self.layers]
        sizes = [self._numels(layer, shape) for (_, layer), shape in zip(self.layers, shapes)]
        for j, (_, layer) in enumerate(self.layers):
            set_feedback(layer, draw_feedback(tuple(layer.weight.shape), init, scale, adjacent))
            if self.opts["only_adjacent"]:
                continue
            for d in range(1, len(self.layers) - j):
                D = draw_feedback((sizes[j + d][1], sizes[j][0]), init, scale, dense)
                set_feedback(layer, D, name=f"dense_feedback_{d}")

    @staticmethod
    def _numels(layer, input_shape):
        """(input numel, output numel) per example (per position for a Linear on token inputs)."""
        if hasattr(layer, "in_features"):
            return layer.in_features, layer.out_features
        if input_shape is None:  # convert refuses a convnet without example_input before this
            raise ValueError("dense_fa on a Conv2d layer needs example_input to size its feedback")
        padded = layer.padded_input_shape(input_shape)
        # the output's shape only: on the meta device nothing is computed or allocated
        out = F.conv2d(torch.empty((1, *padded), device="meta"), torch.empty(layer.weight.shape, device="meta"),
                       None, layer.stride, layer._padding_list(), layer.dilation, layer.groups)
        return math.prod(padded), out[0].numel()

    def _send(self, delta, D, x):
        if delta.shape[:-1] == x.shape[:-1] and D.shape[-2:] == (delta.shape[-1], x.shape[-1]):
            return delta @ D  # Linear layers: per example (per position, per seed when stacked)
        flat = delta.reshape(x.shape[0], -1)
        if flat.shape[1] != D.shape[-2] or x[0].numel() != D.shape[-1]:
            raise RuntimeError(f"dense_fa: cannot send an error of shape {tuple(delta.shape)} to an input of "
                               f"shape {tuple(x.shape)} through a feedback matrix {tuple(D.shape)}")
        return (flat @ D).view(x.shape)

    def _done(self, layer):
        if self.index[id(layer)] == 0:  # the bottom of the chain: no layer below needs these errors
            self.deltas = {}

    def error_to_input(self, layer, grad_out, feedback, x):
        j = self.index[id(layer)]
        signal = layer.propagate(grad_out, feedback, x)
        if not self.opts["only_adjacent"]:
            self.deltas[id(layer)] = grad_out
            for d, (name, above) in enumerate(self.layers[j + 1:], start=1):
                delta = self.deltas.get(id(above))
                if delta is None:
                    raise RuntimeError(f"dense_fa: layer {self.layers[j][0]!r} ran its backward before layer "
                                       f"{name!r} above it; the converted layers must form a chain")
                D = getattr(layer, f"dense_feedback_{d}").to(grad_out.dtype)
                signal = signal + self._send(delta, D, x)
        self._done(layer)
        return signal

    def weight_grads(self, layer, grad_out, x):
        grads = layer.local_grads(grad_out, x)
        self._done(layer)
        return grads

    def compute_gradients(self, model, x, target, loss_fn):
        self.deltas = {}
        try:
            return super().compute_gradients(model, x, target, loss_fn)
        finally:
            self.deltas = {}  # don't hold the batch's errors (and their memory) between steps
