"""Matched feedback (Kolen & Pollack 1994; Lansdell 2020's "Matched"): B receives W's update."""
from typing import ClassVar

import torch

from fa_bench.rules.base import Rule, register


@register
class Matched(Rule):
    """B is a Parameter that receives W's update, and both decay: ∇W + λW for W, ∇W + λB for B.

    Whatever the optimizer, B moves by W's step; under SGD, W − B shrinks by (1 − ηλ) every step, so
    B converges to W (Kolen-Pollack). ``decay`` is λ (0 gives the pure "same update" rule); it is
    part of the rule, on top of any optimizer weight decay.
    """

    name = "matched"
    learns_feedback = True
    options: ClassVar[dict] = {"init": "kaiming_uniform", "scale": None, "decay": 1e-4}

    def feedback_matrix(self, layer):
        return layer.feedback_weight  # not detached: the Function must hand B its gradient

    def weight_grads(self, layer, grad_out, x):
        grad_w, grad_b = layer.local_grads(grad_out, x)
        decay = self.opts["decay"]
        if decay:
            # B's gradient ∇W + λB from the raw ∇W first (held for feedback_grad, which the same backward
            # calls next), then W's in place on this pass's own fresh tensor: two passes over W's size
            layer.__dict__["_feedback_grad"] = torch.add(grad_w, layer.feedback_weight.detach(), alpha=decay)
            grad_w.add_(layer.weight.detach(), alpha=decay)
        return grad_w, grad_b

    def feedback_grad(self, layer, grad_w):
        if not self.opts["decay"]:
            return grad_w
        return layer.__dict__.pop("_feedback_grad")
