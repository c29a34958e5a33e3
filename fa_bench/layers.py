"""Linear and Conv2d layers whose backward pass is decided by a learning rule.

The forward pass is exactly ``F.linear`` / ``F.conv2d``. The backward pass is a custom
``autograd.Function`` that asks the layer's rule three questions: what to send to the layer below
(the rule's feedback path), what weight gradient to report, and whether the feedback matrix itself
learns. No module hooks and no re-entrant ``backward()``: everything happens inside one
``Function.backward``, so the cost of a step is one forward and one backward, as with autograd.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class _FeedbackFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback, layer, rule):
        ctx.save_for_backward(x, feedback)
        ctx.layer, ctx.rule = layer, rule
        ctx.has_bias = bias is not None
        # a layer that nothing upstream reaches (shallow's hidden layers) gets None, not zeros
        ctx.set_materialize_grads(False)
        return layer.affine(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        if grad_out is None:
            return None, None, None, None, None, None
        x, feedback = ctx.saved_tensors
        layer, rule = ctx.layer, ctx.rule
        if layer.exact_bp and rule is not EXACT_BACKPROP:
            # the probe's second backward through the rule's own forward (AlignmentProbe.shares_forward)
            rule, feedback = EXACT_BACKPROP, layer.weight.detach()
        x_dtype, fb_dtype = x.dtype, None if feedback is None else feedback.dtype
        # under autocast the forward ran in lower precision: the backward stays in it
        x = _as(x, grad_out.dtype)
        feedback = _as(feedback, grad_out.dtype)
        if layer.record is not None:
            layer.record["delta"] = grad_out.detach()
        grad_x = rule.error_to_input(layer, grad_out, feedback, x) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_w, grad_b = rule.weight_grads(layer, grad_out, x)
            if not ctx.has_bias:
                grad_b = None
        grad_fb = rule.feedback_grad(layer, grad_w) if ctx.needs_input_grad[3] else None
        return (_as(grad_x, x_dtype), _as(grad_w, layer.weight.dtype),
                _as(grad_b, None if layer.bias is None else layer.bias.dtype), _as(grad_fb, fb_dtype), None, None)


def _as(t, dtype):
    return t if t is None or dtype is None or t.dtype == dtype else t.to(dtype)


class FeedbackLayer(nn.Module):
    """Mixin for a layer trained by a rule: holds the rule, the feedback and a probe slot.

    ``record`` is ``None`` during training; the alignment probe sets it to a dict to capture the
    teaching signal the layer receives (see :mod:`fa_bench.probe`).
    """

    rule = None  # set by fa_bench.convert
    # the probe and the FGSM attack flip this to ask for the true gradient: read by the forward (which
    # then runs as backprop) and by the backward (a graph the rule's forward built then backpropagates)
    exact_bp = False
    record = None

    def forward(self, x):
        return (EXACT_BACKPROP if self.exact_bp else self.rule).forward(self, x)

    def run_rule(self, x, rule):
        if not torch.is_grad_enabled():  # evaluation: no backward, so no feedback to prepare
            return self.affine(x, self.weight, self.bias)
        # an input that needs no gradient (the data, at the first layer) is never sent an error, so a
        # feedback built from W each pass need not be built: the rule may defer it (LayerBackward.unsent_feedback)
        feedback = rule.feedback_matrix(self) if x.requires_grad else rule.unsent_feedback(self)
        return _FeedbackFn.apply(x, self.weight, self.bias, feedback, self, rule)

    # A rule that deferred this layer's feedback sets ``_deferred`` to itself; reading
    # ``feedback_weight`` (the probe, a test, state_dict) then builds it first, from the W of that moment.
    _deferred = None

    def __getattr__(self, name):
        if name == "feedback_weight":
            rule = self.__dict__.get("_deferred")
            if rule is not None:
                self.__dict__["_deferred"] = None
                rule.build_deferred(self)
        return super().__getattr__(name)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.__dict__.get("_deferred") is not None:
            self.__getattr__("feedback_weight")  # the saved B is the one for the saved W
        super()._save_to_state_dict(destination, prefix, keep_vars)

    # The four primitives a rule composes. Each layer type knows its own algebra.
    def affine(self, x, weight, bias):  # pragma: no cover - abstract
        raise NotImplementedError

    def propagate(self, grad_out, matrix, x):  # pragma: no cover - abstract
        """Send ``grad_out`` to the input through ``matrix`` (W's shape), as backprop would through W."""
        raise NotImplementedError

    def local_grads(self, grad_out, x):  # pragma: no cover - abstract
        """The true gradient of W (and b) given the teaching signal ``grad_out``: δ·xᵀ."""
        raise NotImplementedError

    def extra_repr(self):
        name = self.rule.name if self.rule is not None else "unset"
        return f"{super().extra_repr()}, rule={name}"


class FeedbackLinear(FeedbackLayer, nn.Linear):
    def affine(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def propagate(self, grad_out, matrix, x):
        return grad_out @ matrix

    def local_grads(self, grad_out, x):
        g = grad_out.reshape(-1, grad_out.shape[-1])
        grad_w = g.t() @ x.reshape(-1, x.shape[-1])
        grad_b = g.sum(0) if self.bias is not None else None
        return grad_w, grad_b


class FeedbackConv2d(FeedbackLayer, nn.Conv2d):
    """Conv2d under a rule. Padding that the convolution kernel cannot do itself (reflect, replicate,
    circular, or the uneven 'same' of an even kernel) is applied by F.pad *before* the rule's
    Function, so autograd routes the input gradient back through the padding exactly as nn.Conv2d
    would, and the rule sees a plain zero-padding convolution."""

    def _explicit_padding(self) -> bool:
        if self.padding_mode != "zeros":
            return True
        if self.padding == "same":
            return any(d * (k - 1) % 2 for d, k in zip(self.dilation, self.kernel_size))
        return False

    def run_rule(self, x, rule):
        if self._explicit_padding():
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
        return super().run_rule(x, rule)

    def padded_input_shape(self, shape):
        """The per-example input shape the rule's Function sees (after explicit padding)."""
        if not self._explicit_padding():
            return tuple(shape)
        left_w, right_w, top_h, bottom_h = self._reversed_padding_repeated_twice
        return (shape[0], shape[1] + top_h + bottom_h, shape[2] + left_w + right_w)

    def affine(self, x, weight, bias):
        return F.conv2d(x, weight, bias, self.stride, self._padding_list(), self.dilation, self.groups)

    def _conv_backward(self, grad_out, x, weight, mask):
        # aten's own convolution backward: the same kernels autograd would call for nn.Conv2d.
        return torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, self.stride, self._padding_list(), self.dilation,
            False, [0, 0], self.groups, mask)

    def _padding_list(self):
        if self.padding == "valid" or self._explicit_padding():
            return [0, 0]
        if self.padding == "same":
            return [d * (k - 1) // 2 for d, k in zip(self.dilation, self.kernel_size)]
        return list(self.padding)

    def propagate(self, grad_out, matrix, x):
        return self._conv_backward(grad_out, x, matrix, [True, False, False])[0]

    def local_grads(self, grad_out, x):
        _, grad_w, grad_b = self._conv_backward(
            grad_out, x, self.weight, [False, True, self.bias is not None])
        return grad_w, grad_b


class SeedStackedLinear(FeedbackLayer, nn.Module):
    """S seeds' copies of one Linear layer in one module: weight (S, out, in), bias (S, out), and the
    rule's feedback (S, ...) likewise; inputs are (S, batch, in).

    Only the three primitives differ from FeedbackLinear (batched matrix products over the seed axis),
    so every registered rule trains S seeds at once with its own unmodified algebra, and torch.optim
    updates each seed's slice exactly as it would update that seed's own model: seed s of a stacked
    layer is seed s's FeedbackLinear up to the rounding of bmm against mm. Built by
    fa_bench.stacking.stack_models from S converted models, never by hand.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.n_seeds, self.out_features, self.in_features = weight.shape

    def affine(self, x, weight, bias):
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    def propagate(self, grad_out, matrix, x):
        return torch.bmm(grad_out, matrix)

    def local_grads(self, grad_out, x):
        grad_w = torch.bmm(grad_out.transpose(1, 2), x)
        grad_b = grad_out.sum(1) if self.bias is not None else None
        return grad_w, grad_b

    def extra_repr(self):
        return (f"seeds={self.n_seeds}, in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, rule={self.rule.name if self.rule is not None else 'unset'}")


class LayerBackward:
    """The backward contract the layers' Function calls, with plain backprop's algebra as the default:
    send ``grad_out`` down through the matrix ``feedback_matrix`` returns, report δ·xᵀ, learn no
    feedback. fa_bench.rules.Rule builds on it (its matrix is B); ``EXACT_BACKPROP`` is it with W, what
    ``exact_bp`` switches a layer to, so the probe and the FGSM attack get the true gradient on the same
    forward pass. It lives here so the layers never import the rules that drive them."""

    name = "exact_backprop"

    def forward(self, layer, x):
        return layer.run_rule(x, self)

    def feedback_matrix(self, layer):
        return layer.weight.detach()

    def unsent_feedback(self, layer):
        """The feedback handed to a pass whose input needs no gradient (nothing is sent down): by default
        the same as ever (a learned B still needs its gradient); sign-concordant rules defer theirs."""
        return self.feedback_matrix(layer)

    def error_to_input(self, layer, grad_out, feedback, x):
        return layer.propagate(grad_out, feedback, x)

    def weight_grads(self, layer, grad_out, x):
        return layer.local_grads(grad_out, x)

    def feedback_grad(self, layer, grad_w):
        return None


EXACT_BACKPROP = LayerBackward()


@contextmanager
def exact_backprop(layers, on: bool = True):
    """``exact_bp`` on for these layers while inside (the probe's backprop pass, the FGSM attack's true
    input gradient), off again on the way out, whatever happens."""
    layers = list(layers) if on else []
    for layer in layers:
        layer.exact_bp = True
    try:
        yield
    finally:
        for layer in layers:
            layer.exact_bp = False


def swap_class(module: nn.Module) -> FeedbackLayer:
    """Turn an nn.Linear / nn.Conv2d into its feedback twin in place, sharing parameters."""
    if isinstance(module, FeedbackLayer):
        return module
    if type(module) is nn.Linear:
        module.__class__ = FeedbackLinear
    elif type(module) is nn.Conv2d:
        module.__class__ = FeedbackConv2d
    else:
        raise TypeError(f"cannot convert {type(module).__name__}; only nn.Linear and nn.Conv2d")
    return module
