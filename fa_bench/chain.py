"""A graph-free training pass for chains: the rule's own backward calls, made in order by hand.

Why: on small nets at small batches (Lillicrap's 30-20-10 at batch 1, Lansdell's 784-50-20-10 at 32)
building and walking autograd's graph costs several times the arithmetic (scripts/fig2_step_floor.py:
one FA step of the 10-seed fig2 stack took 203 µs under plain autograd, 34 µs written by hand).

A chain is an ``nn.Sequential`` of converted Linear layers (FeedbackLinear or SeedStackedLinear),
elementwise activations (Identity, Tanh, Sigmoid, ReLU) and a Flatten ahead of the first layer: the
models fa_bench.stacking stacks. Its backward is fixed: autograd would call each layer's
``_FeedbackFn.backward`` (fa_bench.layers) in reverse module order, with each activation's derivative
in between. ``ChainPass`` makes exactly those calls, in that order, with the same arguments and the same
gradient kernels (tanh_backward, sigmoid_backward, threshold_backward), so a rule cannot tell the two
apart: its ``feedback_matrix``, ``error_to_input``, ``weight_grads`` and ``feedback_grad`` run unchanged,
draw from their streams in the same order, and leave the same ``.grad``. tests/test_chain.py holds every
registered rule to that, bit for bit, on plain and seed-stacked chains.

Anything else is left to autograd (``ChainPass.of`` returns None): another module, a module or global
hook (training noise is a pre-hook), autocast, the attack's exact_bp pass, an input that requires grad, a
rule with a forward of its own (node perturbation, IFA, NP, SG), or a rule that opts out.

The alignment probe's two backward passes (under the rule, then exact backprop, on one forward) are
``teaching_signals``: the same calls, recording δ as the layers' Function does, with no weight gradient
formed unless the probe asks for it (fa_bench.probe forms the update angle of a wide layer from Gram
matrices instead).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules import module as torch_module

from fa_bench.layers import EXACT_BACKPROP, FeedbackLinear, LayerBackward, SeedStackedLinear
from fa_bench.losses import loss_and_mean_grad

_LAYER, _FLATTEN = "layer", "flatten"
# each activation's forward and autograd's own backward formula for it, from the saved output
_ACTIVATIONS = {
    nn.Identity: (None, None),
    nn.Tanh: (torch.tanh, torch.ops.aten.tanh_backward),
    nn.Sigmoid: (torch.sigmoid, torch.ops.aten.sigmoid_backward),
    nn.ReLU: (torch.relu, lambda g, y: torch.ops.aten.threshold_backward(g, y, 0)),
}


def chain_plan(model: nn.Module) -> list | None:
    """``[(kind, module, forward, backward)]`` for a chain, or None when ``model`` is not one."""
    if not isinstance(model, nn.Sequential):
        return None
    plan, seen_layer = [], False
    for module in model:
        if type(module) in (FeedbackLinear, SeedStackedLinear):
            plan.append((_LAYER, module, None, None))
            seen_layer = True
        elif type(module) in _ACTIVATIONS:
            plan.append(("act", module, *_ACTIVATIONS[type(module)]))
        elif isinstance(module, nn.Flatten) and not seen_layer:  # on the data: nothing flows back through it
            plan.append((_FLATTEN, module, None, None))
        else:
            return None
    return plan if seen_layer else None


class ChainPass:
    """One rule's graph-free training pass over one chain model (built by ``of``, cached on the rule)."""

    def __init__(self, model: nn.Module, plan: list, rule):
        self.model, self.plan, self.rule = model, plan, rule
        self.modules = [m for _, m, _, _ in plan]
        self.layers = [m for kind, m, _, _ in plan if kind == _LAYER]

    @classmethod
    def of(cls, model: nn.Module, rule, x: torch.Tensor | None = None, own_forward: bool = False) -> ChainPass | None:
        """The pass for ``model`` under ``rule`` when this step (on input ``x``) can take it, else None
        (use autograd). An input that wants its own gradient (an attack's, a test's) goes to autograd.
        ``own_forward``: only ``forward`` will be used, so a rule with a forward of its own qualifies."""
        if x is not None and x.requires_grad:
            return None
        if not rule.chain_backward or (
                not own_forward and type(rule).forward is not LayerBackward.forward):
            return None
        cached = rule.__dict__.get("_chain_pass")
        if cached is None or cached[0] is not model:
            plan = chain_plan(model)
            cached = (model, None if plan is None else cls(model, plan, rule))
            rule.__dict__["_chain_pass"] = cached
        chain = cached[1]
        return chain if chain is not None and chain.usable(backward=not own_forward) else None

    def usable(self, backward: bool = True) -> bool:
        """What may change between steps and would make the hand-made pass differ from autograd's
        (``backward``: the whole training pass; else only ``forward``)."""
        if (backward and not torch.is_grad_enabled()) or torch.is_autocast_enabled(self.layers[0].weight.device.type):
            return False
        if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
            return False
        for m in self.modules:
            if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks:
                return False
        trains = False
        for layer in self.layers:
            if layer.exact_bp or layer.record is not None or layer.rule is not self.rule:
                return False
            trains = trains or _trains(layer)
        return trains  # nothing to train: let autograd raise its own error, as it would for this model

    def forward(self, x):
        """``model(x)`` without nn.Module's call machinery (usable() has checked there are no hooks): each
        layer through its rule's forward, as FeedbackLayer.forward sends it (node perturbation's two
        passes a step)."""
        rule = self.rule
        for kind, module, forward, _ in self.plan:
            if kind == _LAYER:
                x = rule.forward(module, x)
            elif kind == _FLATTEN:
                x = module(x)
            elif forward is not None:
                x = forward(x)
        return x

    def _forward(self, x):
        """The forward pass, keeping what the backward reads: per layer (layer, input, feedback, whether
        the input would require grad under autograd), per activation (None, output, derivative, same)."""
        rule = self.rule
        saved, needs = [], False
        h = x
        for kind, module, forward, backward in self.plan:
            if kind == _LAYER:
                feedback = rule.feedback_matrix(module) if needs else rule.unsent_feedback(module)
                saved.append((module, h, feedback, needs))
                h = module.affine(h, module.weight, module.bias)
                needs = needs or _trains(module) or (feedback is not None and feedback.requires_grad)
            elif kind == _FLATTEN:
                h = module(h)
            elif forward is not None:
                h = forward(h)
                saved.append((None, h, backward, needs))
        return saved, h

    @staticmethod
    def _loss_grad(h, target, loss_fn):
        """(per-example loss, ∂(mean loss)/∂output), the loss's gradient written out where
        fa_bench.losses has it."""
        fused = loss_and_mean_grad(loss_fn, h, target)
        if fused is not None:
            return fused
        with torch.enable_grad():  # a loss fa_bench.losses does not write out: autograd on the loss alone
            out = h.detach().requires_grad_()
            per_example = loss_fn(out, target)
            loss = per_example.mean(-1)
            (grad,) = torch.autograd.grad(loss.sum() if loss.dim() else loss, out)
        return per_example, grad

    @staticmethod
    def _walk(saved, grad, layer_backward):
        """The backward in autograd's order: each activation's derivative, each layer's
        ``layer_backward(layer, input, feedback, input_needs_grad, grad_out)``, down to where nothing
        reaches (shallow's hidden layers: autograd never calls them)."""
        for layer, value, extra, needed in reversed(saved):
            if grad is None or not (needed or layer is not None):
                break
            if layer is None:
                grad = extra(grad, value)  # the activation's derivative, from its saved output
            else:
                grad = layer_backward(layer, value, extra, needed, grad)

    @torch.no_grad()
    def gradients(self, x, target, loss_fn):
        """Forward, loss, and the rule's gradients into ``.grad``; returns (per-example loss, output).

        All of it under no_grad: the rule's feedback_matrix too, which autograd's forward calls with grad
        on, so a rule whose B is computed *with* a graph (none is) must set ``chain_backward = False``."""
        saved, h = self._forward(x)
        per_example, grad = self._loss_grad(h, target, loss_fn)
        given = set()  # tensors already handed to a .grad this step: a second parameter gets a copy
        self._walk(saved, grad, lambda layer, value, feedback, needed, g:
                   self._layer_backward(layer, value, feedback, needed, g, given))
        return per_example, h

    @torch.no_grad()
    def teaching_signals(self, x, target, loss_fn, wants_grad):
        """The alignment probe's two backward passes on one forward (fa_bench.probe): for each layer, in
        order, ``(input, δ_rule, δ_BP, g_rule, g_BP)``: its input, the signal at its output under the rule
        and under exact backprop (None where nothing reaches it), and the two weight gradients where
        ``wants_grad(layer)`` (else None). The rule sees the calls of its autograd backward, in the same
        order (error_to_input, then weight_grads if asked), never feedback_grad; no ``.grad`` is written.
        The backprop pass sends through W, as ``exact_bp`` makes a layer's backward do (fa_bench.layers)."""
        saved, h = self._forward(x)
        _, grad = self._loss_grad(h, target, loss_fn)
        found = {}

        def step(rule, slot):
            def layer_backward(layer, value, feedback, needed, g):
                entry = found.setdefault(layer, [value, None, None, None, None])
                if rule is EXACT_BACKPROP:
                    feedback = layer.weight.detach()
                layer.record = {"delta": g}  # as _FeedbackFn.backward records it; a rule may replace it (bp_noise)
                try:
                    grad_x = rule.error_to_input(layer, g, feedback, value) if needed else None
                    if wants_grad(layer) and _trains(layer):
                        entry[3 + slot] = rule.weight_grads(layer, g, value)[0]
                    entry[1 + slot] = layer.record.get("delta")
                finally:
                    layer.record = None
                return grad_x
            return layer_backward

        self._walk(saved, grad, step(self.rule, 0))
        self._walk(saved, grad, step(EXACT_BACKPROP, 1))
        return [tuple(found.get(layer, (None,) * 5)) for layer in self.layers]

    def _layer_backward(self, layer, x, feedback, x_needs_grad, grad_out, given):
        """fa_bench.layers._FeedbackFn.backward's calls, in its order; returns the gradient sent down."""
        rule = self.rule
        grad_x = rule.error_to_input(layer, grad_out, feedback, x) if x_needs_grad else None
        weight, bias = layer.weight, layer.bias
        grad_w = None
        if weight.requires_grad or (bias is not None and bias.requires_grad):
            grad_w, grad_b = rule.weight_grads(layer, grad_out, x)
            _accumulate(weight, grad_w, given)
            if bias is not None:
                _accumulate(bias, grad_b, given)
        if feedback is not None and feedback.requires_grad:  # a learned B (a leaf: the chain pass builds no graph)
            _accumulate(feedback, rule.feedback_grad(layer, grad_w), given)
        return grad_x


def _trains(layer) -> bool:
    return layer.weight.requires_grad or (layer.bias is not None and layer.bias.requires_grad)


def _accumulate(param: torch.Tensor, grad: torch.Tensor | None, given: set):
    """Autograd's AccumulateGrad: the first gradient becomes ``.grad`` (a copy if another parameter
    already holds that tensor), later ones add into it."""
    if grad is None or not param.requires_grad:
        return
    if param.grad is None:
        param.grad = grad.clone() if id(grad) in given else grad
        given.add(id(grad))
    else:
        param.grad.add_(grad)
