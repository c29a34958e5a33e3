"""Shallow learning: only the output layer learns (Lillicrap Fig. 2/3, the lower bound)."""
from fa_bench.rules.base import Rule, register


@register
class Shallow(Rule):
    """The output layer gets its exact gradient; hidden layers get none and are never updated.

    The output layer sends nothing downstream, so no work is done below it in the backward pass and
    the hidden layers' ``.grad`` stays ``None`` (optimizers then skip them, weight decay included).
    """

    name = "shallow"
    has_feedback = False

    def init_layer(self, layer, generator, input_shape):
        pass

    def feedback_matrix(self, layer):
        return layer.weight.detach()

    def error_to_input(self, layer, grad_out, feedback, x):
        return None

    def weight_grads(self, layer, grad_out, x):
        if not layer.is_output:
            return None, None
        return layer.local_grads(grad_out, x)
