"""Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018): B shares W's signs."""
import torch

from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback
from fa_bench.seeding import generator


@register
class USF(Rule):
    """Uniform sign-concordant feedback: B = sign(W), refreshed at every forward pass."""

    name = "usf"

    def init_layer(self, layer, generator, input_shape):
        set_feedback(layer, torch.sign(layer.weight.detach()))

    def feedback_matrix(self, layer):
        B = torch.sign(layer.weight.detach())
        # keep the buffer showing what the backward pass used; the fresh tensor is what gets saved,
        # so a later in-place refresh can never corrupt a pending backward
        layer.feedback_weight.copy_(B)
        return B


@register
class FRSF(Rule):
    """Fixed random-magnitude sign-concordant feedback: B = |R| ∘ sign(W), R drawn once."""

    name = "frsf"

    def init_layer(self, layer, generator, input_shape):
        R = draw_feedback(tuple(layer.weight.shape), self.opts["init"], self.opts["scale"], generator)
        set_feedback(layer, R.abs(), name="feedback_magnitude")
        set_feedback(layer, R.abs() * torch.sign(layer.weight.detach().cpu()))

    def feedback_matrix(self, layer):
        B = layer.feedback_magnitude * torch.sign(layer.weight.detach())
        layer.feedback_weight.copy_(B)
        return B


@register
class BRSF(Rule):
    """Batchwise random-magnitude sign-concordant feedback: B = |R_t| ∘ sign(W), R_t redrawn per batch."""

    name = "brsf"

    def attach(self, layers, input_shapes=None):
        # B is redrawn from this rule's own stream, so the global RNG (data order, dropout) is untouched
        self.generator = generator(self.opts["seed"], "brsf")
        super().attach(layers, input_shapes)

    def init_layer(self, layer, generator, input_shape):
        set_feedback(layer, torch.sign(layer.weight.detach()))

    def feedback_matrix(self, layer):
        R = draw_feedback(tuple(layer.weight.shape), self.opts["init"], self.opts["scale"], self.generator)
        B = R.abs().to(layer.weight.device, layer.weight.dtype) * torch.sign(layer.weight.detach())
        layer.feedback_weight.copy_(B)
        return B
