"""Linear and Conv2d layers whose backward pass is decided by a learning rule.

The forward pass is exactly ``F.linear`` / ``F.conv2d``. The backward pass is a custom
``autograd.Function`` that asks the layer's rule three questions: what to send to the layer below
(the rule's feedback path), what weight gradient to report, and whether the feedback matrix itself
learns. No module hooks and no re-entrant ``backward()``: everything happens inside one
``Function.backward``, so the cost of a step is one forward and one backward, as with autograd.
"""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class _FeedbackFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, feedback, layer, rule):
        ctx.save_for_backward(x, feedback)
        ctx.layer, ctx.rule = layer, rule
        ctx.has_bias = bias is not None
        return layer.affine(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, feedback = ctx.saved_tensors
        layer, rule = ctx.layer, ctx.rule
        if layer.record is not None:
            layer.record["delta"] = grad_out.detach()
        grad_x = rule.error_to_input(layer, grad_out, feedback, x) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_w, grad_b = rule.weight_grads(layer, grad_out, x)
            if not ctx.has_bias:
                grad_b = None
        grad_fb = rule.feedback_grad(layer, grad_w) if ctx.needs_input_grad[3] else None
        return grad_x, grad_w, grad_b, grad_fb, None, None


class FeedbackLayer(nn.Module):
    """Mixin for a layer trained by a rule: holds the rule, the feedback and a probe slot.

    ``record`` is ``None`` during training; the alignment probe sets it to a dict to capture the
    teaching signal the layer receives (see :mod:`fa_bench.probe`).
    """

    rule = None  # set by fa_bench.convert
    exact_bp = False  # the probe flips this to ask for the true gradient on the same forward pass
    record = None

    def forward(self, x):
        return (_exact_backprop() if self.exact_bp else self.rule).forward(self, x)

    def run_rule(self, x, rule):
        feedback = rule.feedback_matrix(self)
        return _FeedbackFn.apply(x, self.weight, self.bias, feedback, self, rule)

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
    def affine(self, x, weight, bias):
        if self.padding_mode != "zeros":
            raise ValueError(f"{type(self).__name__} supports padding_mode='zeros' only, got {self.padding_mode!r}")
        return F.conv2d(x, weight, bias, self.stride, self._padding_list(), self.dilation, self.groups)

    def _conv_backward(self, grad_out, x, weight, mask):
        # aten's own convolution backward: the same kernels autograd would call for nn.Conv2d.
        return torch.ops.aten.convolution_backward(
            grad_out, x, weight, None, self.stride, self._padding_list(), self.dilation,
            False, [0, 0], self.groups, mask)

    def _padding_list(self):
        if self.padding == "valid":
            return [0, 0]
        if self.padding == "same":
            total = [d * (k - 1) for d, k in zip(self.dilation, self.kernel_size)]
            if any(t % 2 for t in total):
                raise ValueError("padding='same' with an even effective kernel pads unevenly; "
                                 "give explicit padding to a converted Conv2d")
            return [t // 2 for t in total]
        return list(self.padding)

    def propagate(self, grad_out, matrix, x):
        return self._conv_backward(grad_out, x, matrix, [True, False, False])[0]

    def local_grads(self, grad_out, x):
        _, grad_w, grad_b = self._conv_backward(
            grad_out, x, self.weight, [False, True, self.bias is not None])
        return grad_w, grad_b


@functools.cache
def _exact_backprop():
    from fa_bench.rules import get_rule  # local: the rules package imports this module

    return get_rule("bp")


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
