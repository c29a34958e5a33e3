"""Backprop with an alignment penalty towards fixed random matrices (Moskovitz et al. 2018, eq. 9)."""
from typing import ClassVar

from fa_bench.rules.base import draw_feedback, register, set_feedback
from fa_bench.rules.bp import BP


@register
class BPAlign(BP):
    """Backprop on J + λ Σ_l Σ_ij (W^l_ij − V^l_ij)², V^l fixed and random: grad W_l += 2λ(W_l − V_l).

    Readings of eq. 9:
    - the sum runs over every converted layer (Linear and Conv2d), the output layer included; biases
      are not in it (the paper's w^l_ij are the weight matrices), nor are parameters that stay on
      plain backprop (batch-norm, embeddings);
    - V_l has W_l's shape; its distribution is not given, so it is drawn like FA's B (``init``,
      ``scale``; default kaiming_uniform, nn.Linear's own init U(±1/√fan_in), a "fresh W"), from the
      rule's feedback generator, and kept as the buffer ``layer.align_target`` (in state_dict);
    - the penalty enters the gradient once per step (the loss is the batch mean per seed, so each
      seed's W gets 2λ(W − V) of its own on a seed-stacked model); the per-example loss that training
      reports is the data loss alone;
    - λ = ``lam`` = 1e-3, the paper's value.

    The backward is exact backprop (the penalty needs no feedback path), so the rule has no
    ``feedback_weight``.
    """

    name = "bp_align"
    options: ClassVar[dict] = {"lam": 1e-3, "init": "kaiming_uniform", "scale": None}

    def __init__(self, **options):
        super().__init__(**options)
        if not self.opts["lam"] >= 0:
            raise ValueError(f"rule {self.name!r}: lam must be >= 0, got {self.opts['lam']!r}")

    def init_layer(self, layer, generator, input_shape):
        V = draw_feedback(tuple(layer.weight.shape), self.opts["init"], self.opts["scale"], generator)
        set_feedback(layer, V, name="align_target")

    def weight_grads(self, layer, grad_out, x):
        grad_w, grad_b = layer.local_grads(grad_out, x)
        W = layer.weight.detach()
        return grad_w + (2 * self.opts["lam"]) * (W.to(grad_w.dtype) - layer.align_target.to(grad_w.dtype)), grad_b
