"""Matched feedback (Kolen & Pollack 1994; Lansdell 2020's "Matched"): B receives W's update."""
from fa_bench.rules.base import Rule, register


@register
class Matched(Rule):
    """B is a Parameter whose gradient is W's gradient, so any optimizer moves B exactly as it moves W.

    With weight decay λ on both, W − B shrinks by (1 − ηλ) each step and B converges to W
    (Kolen-Pollack). ``decay`` sets the weight decay applied to B (``None``: the optimizer's).
    """

    name = "matched"
    learns_feedback = True
    options = {"decay": None}

    def feedback_grad(self, layer, grad_w):
        return grad_w

    def feedback_matrix(self, layer):
        return layer.feedback_weight  # not detached: the Function must hand B its gradient
