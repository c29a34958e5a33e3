"""Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018): B shares W's signs."""
from typing import ClassVar

import torch

from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback


class _SignConcordant(Rule):
    """B = M ∘ sign(W), recomputed from the current W at every training forward pass.

    The buffer ``feedback_weight`` shows the B the last backward pass used; the fresh tensor is what
    the pass saves, so a later refresh can never corrupt a pending backward. The buffer is rebound to
    that tensor rather than copied into (a copy per step was a measurable part of a usf step).
    """

    def magnitude(self, layer):
        raise NotImplementedError

    def init_layer(self, layer, generator, input_shape):
        set_feedback(layer, torch.sign(layer.weight.detach()))

    def feedback_matrix(self, layer):
        B = torch.sign(layer.weight.detach())
        magnitude = self.magnitude(layer)
        if magnitude is not None:
            B.mul_(magnitude)
        layer._buffers["feedback_weight"] = B
        return B

    def refresh(self, layer):
        layer.feedback_weight.copy_(layer.feedback_weight.abs() * torch.sign(layer.weight.detach()))


@register
class USF(_SignConcordant):
    """Uniform sign-concordant feedback: B = sign(W)."""

    name = "usf"

    def magnitude(self, layer):
        return None  # |B| = 1: sign(W) alone

    def refresh(self, layer):
        layer.feedback_weight.copy_(torch.sign(layer.weight.detach()))


@register
class FRSF(_SignConcordant):
    """Fixed random-magnitude sign-concordant feedback: B = |R| ∘ sign(W), R drawn once."""

    name = "frsf"
    options: ClassVar[dict] = {"init": "normal", "scale": None}

    def init_layer(self, layer, generator, input_shape):
        R = draw_feedback(tuple(layer.weight.shape), self.opts["init"], self.opts["scale"], generator)
        set_feedback(layer, R.abs(), name="feedback_magnitude")
        set_feedback(layer, R.abs() * torch.sign(layer.weight.detach().cpu()))

    def magnitude(self, layer):
        return layer.feedback_magnitude


@register
class BRSF(_SignConcordant):
    """Batchwise random-magnitude sign-concordant feedback: B = |R_t| ∘ sign(W), R_t redrawn per batch.

    R_t comes from the rule's own stream on the layer's device (the global RNG, which orders data and
    drops units, is untouched), and only in passes that build a graph: evaluation draws nothing.
    """

    name = "brsf"
    options: ClassVar[dict] = {"init": "normal", "scale": None}
    random_stream = "brsf"

    def magnitude(self, layer):
        W = layer.weight
        init, scale = self.opts["init"], self.opts["scale"]
        R = self.random_tensor(lambda shape, g: draw_feedback(shape, init, scale, g), W.shape, W.device)
        return R.abs().to(W.dtype)
