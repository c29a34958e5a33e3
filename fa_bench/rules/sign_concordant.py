"""Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018): B shares W's signs."""
import math
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


VARIANCE_PRESERVING = ("normal", "uniform")


@register
class USFInit(_SignConcordant):
    """Moskovitz et al.'s uSF "Init." method (eq. 4): B_t = |B₀| ∘ sign(W_t), B₀ drawn once.

    B₀ is FA's feedback draw with the paper's variance-preserving choice (§5.1): the backward weights
    get variance 1/n_out, "the number of incoming connections that a layer receives during the backward
    pass", i.e. torch's fan_out of W (out_features, or out_channels × kernel area for a conv). The
    paper does not give the distribution: ``distribution`` = normal, N(0, 1/n_out) (default), or
    uniform, U(±√(3/n_out)), which has the same variance. The forward half of the paper's scheme
    (W with variance 1/n_in) is the model's init, not the rule's.

    Unlike frsf (the same algebra with R from ``init``/``scale``), the magnitude is always this draw.
    """

    name = "usf_init"
    options: ClassVar[dict] = {"distribution": "normal"}

    def __init__(self, **options):
        super().__init__(**options)
        if self.opts["distribution"] not in VARIANCE_PRESERVING:
            raise ValueError(f"rule {self.name!r}: unknown distribution {self.opts['distribution']!r}; "
                             f"valid: {', '.join(VARIANCE_PRESERVING)}")

    def init_layer(self, layer, generator, input_shape):
        shape = tuple(layer.weight.shape)
        fan_out = shape[0] * math.prod(shape[2:])
        if self.opts["distribution"] == "normal":
            B0 = draw_feedback(shape, "normal", 1 / math.sqrt(fan_out), generator)
        else:  # U(±a) has variance a²/3
            B0 = draw_feedback(shape, "uniform", math.sqrt(3 / fan_out), generator)
        set_feedback(layer, B0.abs(), name="feedback_magnitude")
        set_feedback(layer, B0.abs() * torch.sign(layer.weight.detach().cpu()))

    def magnitude(self, layer):
        return layer.feedback_magnitude

    def refresh(self, layer):
        # from the stored |B₀|, not from |B|: where W was exactly 0 at the last forward, B was 0 too
        layer.feedback_weight.copy_(layer.feedback_magnitude * torch.sign(layer.weight.detach()))


@register
class USFSN(_SignConcordant):
    """Moskovitz et al.'s uSF "strict normalisation" (eq. 5): B_t = ‖W_t‖ · sign(W_t)/‖sign(W_t)‖.

    Reading ‖·‖₂ of a matrix as the Frobenius norm of the whole layer (eq. 8 calls it "the Euclidean
    norm"; §5.1's aim is "the norms of the feedback matrices ... equal to that of their feedforward
    counterparts"): every entry of B is ±‖W‖_F/√(number of nonzero W), so ‖B‖_F = ‖W‖_F, and a conv
    kernel is normalised as one tensor. On a seed-stacked layer each seed's slice is its own layer.
    """

    name = "usf_sn"

    def magnitude(self, layer):
        W = layer.weight.detach()
        dims = tuple(range(1 if self.seeds is not None else 0, W.dim()))
        # ‖sign W‖ = √(nonzero count); clamped so an all-zero W gives B = 0, not 0/0 (no host sync)
        sign_norm = torch.linalg.vector_norm(torch.sign(W), dim=dims, keepdim=True).clamp_min(1)
        return torch.linalg.vector_norm(W, dim=dims, keepdim=True) / sign_norm

    def init_layer(self, layer, generator, input_shape):
        set_feedback(layer, torch.sign(layer.weight.detach()) * self.magnitude(layer))

    def refresh(self, layer):
        layer.feedback_weight.copy_(torch.sign(layer.weight.detach()) * self.magnitude(layer))
