"""Shallow learning: only the output layer learns (Lillicrap Fig. 2/3, the lower bound)."""
from fa_bench.rules.base import Rule, register


@register
class Shallow(Rule):
    """The output layer gets its exact gradient; hidden layers get none and are never updated.

    The output layer sends nothing downstream, so the hidden layers' backward receives no gradient
    (it returns at once) and their ``.grad`` stays ``None``: optimizers skip them, weight decay included.
    """

    name = "shallow"
    has_feedback = False

    def error_to_input(self, layer, grad_out, feedback, x):
        return None

    def weight_grads(self, layer, grad_out, x):
        if not layer.is_output:
            return None, None
        return layer.local_grads(grad_out, x)
