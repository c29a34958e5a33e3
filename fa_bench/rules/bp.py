"""Backpropagation: the feedback path is W itself."""
from fa_bench.rules.base import Rule, register


@register
class BP(Rule):
    """Exact backprop through the converted layers (the reference every other rule is measured by)."""

    name = "bp"
    has_feedback = False

    def feedback_matrix(self, layer):
        return layer.weight.detach()
