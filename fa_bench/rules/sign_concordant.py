"""Sign-concordant feedback (Liao, Leibo & Poggio 2016; Moskovitz et al. 2018): B shares W's signs."""
import math
from typing import ClassVar

import torch

from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback
from fa_bench.seeding import DeviceStreams


def _version_of(layer):
    """Which W a B is built from: the Parameter itself (a layer given a new one is stale whatever its
    counter says) and its in-place version counter."""
    return layer.weight, layer.weight._version


def _is_current(layer) -> bool:
    built = layer.__dict__.get("_built_from")
    return built is not None and built[0] is layer.weight and built[1] == layer.weight._version


class _SignConcordant(Rule):
    """B = M ∘ sign(W), recomputed from the current W at every training forward pass.

    The buffer ``feedback_weight`` shows the B the last backward pass used; the fresh tensor is what
    the pass saves, so a later refresh can never corrupt a pending backward. The buffer is rebound to
    that tensor rather than copied into (a copy per step was a measurable part of a usf step).

    A layer whose input needs no gradient (the first layer, reading the data) sends nothing down, so
    its B is not built in the pass (on a 784-1000-10 MLP that build was the whole cost of usf over
    fa): it is built when read (``layer.feedback_weight``: the probe, state_dict), from the W of that
    moment (LayerBackward.unsent_feedback, FeedbackLayer.__getattr__).

    Each built B remembers the version of W it was built from (``W._version``, which every in-place
    change of W bumps: the optimizer step, load_state_dict), so ``refresh`` rebuilds only a B that is
    stale: the probe reads every B after a step, and its own rule pass has just rebuilt most of them.
    """

    def magnitude(self, layer, sign_w=None):
        raise NotImplementedError

    def init_layer(self, layer, generator, input_shape):
        set_feedback(layer, torch.sign(layer.weight.detach()))

    def feedback_matrix(self, layer):
        B = torch.sign(layer.weight.detach())
        magnitude = self.magnitude(layer, B)  # B is sign(W) here: usf_sn's norm reads it
        if magnitude is not None:
            B.mul_(magnitude)
        layer._buffers["feedback_weight"] = B
        # this B is the layer's now, and of this W (dict writes: no Module.__setattr__)
        layer.__dict__["_deferred"] = None
        layer.__dict__["_built_from"] = _version_of(layer)
        return B

    def unsent_feedback(self, layer):
        layer.__dict__["_deferred"] = self
        return None

    def build_deferred(self, layer):
        self.feedback_matrix(layer)

    def refresh(self, layer):
        if layer.__dict__.get("_deferred") is self or _is_current(layer):
            return  # B is the one of this W already, or will be when read (build_deferred)
        self.rebuild(layer)
        layer.__dict__["_built_from"] = _version_of(layer)

    def rebuild(self, layer):
        """B from the current W, keeping its magnitude."""
        layer.feedback_weight.copy_(layer.feedback_weight.abs() * torch.sign(layer.weight.detach()))


@register
class USF(_SignConcordant):
    """Uniform sign-concordant feedback: B = sign(W)."""

    name = "usf"

    def magnitude(self, layer, sign_w=None):
        return None  # |B| = 1: sign(W) alone

    def rebuild(self, layer):
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

    def magnitude(self, layer, sign_w=None):
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

    def magnitude(self, layer, sign_w=None):
        W = layer.weight
        init, scale = self.opts["init"], self.opts["scale"]
        R = self.random_tensor(lambda shape, g: draw_feedback(shape, init, scale, g), W.shape, W.device,
                               streams=self._read_streams if self._reading else None)
        return R.abs_().to(W.dtype)

    _reading = False

    def bind(self, layers, seeds=None):
        super().bind(layers, seeds)
        # the R_t of a layer whose B is only read, never sent through (build_deferred), comes from a
        # stream of its own: reading it (the probe) never moves the draws training makes
        if self.seeds is None:
            self._read_streams = DeviceStreams(self.opts["seed"], "brsf_read")
        else:
            self._read_streams = [DeviceStreams(s, "brsf_read") for s in self.seeds]

    def _all_read_streams(self):
        return self._read_streams if isinstance(self._read_streams, list) else [self._read_streams]

    def rng_state(self):
        # the read streams too: a resumed run reads the B a straight one would
        return {"train": super().rng_state(), "read": [s.get_state() for s in self._all_read_streams()]}

    def set_rng_state(self, state):
        super().set_rng_state(state["train"])
        for streams, st in zip(self._all_read_streams(), state["read"]):
            streams.set_state(st)

    def build_deferred(self, layer):
        self._reading = True
        try:
            self.feedback_matrix(layer)
        finally:
            self._reading = False


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

    def magnitude(self, layer, sign_w=None):
        return layer.feedback_magnitude

    def rebuild(self, layer):
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

    def magnitude(self, layer, sign_w=None):
        W = layer.weight.detach()
        dims = tuple(range(1 if self.seeds is not None else 0, W.dim()))
        if sign_w is None:
            sign_w = torch.sign(W)
        # ‖sign W‖ = √(nonzero count), from the sign(W) the pass builds anyway (torch.count_nonzero over
        # dims was 3x slower on the CPU); clamped so an all-zero W gives B = 0, not 0/0 (no host sync)
        sign_norm = torch.linalg.vector_norm(sign_w, dim=dims, keepdim=True).clamp_min(1)
        return torch.linalg.vector_norm(W, dim=dims, keepdim=True) / sign_norm

    def init_layer(self, layer, generator, input_shape):
        sign_w = torch.sign(layer.weight.detach())
        set_feedback(layer, sign_w * self.magnitude(layer, sign_w))

    def rebuild(self, layer):
        sign_w = torch.sign(layer.weight.detach())
        layer.feedback_weight.copy_(sign_w * self.magnitude(layer, sign_w))
