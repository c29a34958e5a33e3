"""fa_bench.convert: put any nn.Module under a learning rule (docs/contracts.md §2)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from fa_bench.layers import FeedbackLayer, swap_class
from fa_bench.rules import Rule, get_rule

CONVERTIBLE = (nn.Linear, nn.Conv2d)


@dataclass
class ConversionReport:
    rule: str
    converted: list[str] = field(default_factory=list)
    left_on_backprop: dict[str, str] = field(default_factory=dict)  # leaf module name -> type

    def __str__(self):
        left = ", ".join(f"{n} ({t})" for n, t in self.left_on_backprop.items()) or "nothing"
        return (f"rule {self.rule}: {len(self.converted)} layer(s) converted ({', '.join(self.converted)}); "
                f"left on plain backprop: {left}")


def _convertible(module: nn.Module) -> bool:
    return isinstance(module, FeedbackLayer) or type(module) in CONVERTIBLE


def _input_shapes(model: nn.Module, example_input, names) -> dict[str, tuple]:
    """Each layer's per-example input shape, from one forward pass at conversion time.

    The pass runs in eval mode without autograd, so batch-norm statistics, dropout and the random
    streams are untouched: converting never changes the model's state.
    """
    shapes, handles = {}, []
    modules = dict(model.named_modules())
    for name in names:
        def grab(mod, args, name=name):
            shapes[name] = tuple(args[0].shape[1:])
        handles.append(modules[name].register_forward_pre_hook(grab))
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example_input)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return shapes


def convert(model: nn.Module, rule: str | Rule = "fa", *, example_input: torch.Tensor | None = None,
            **rule_options) -> nn.Module:
    """Train ``model``'s Linear and Conv2d layers with ``rule``; returns the same module, converted in place.

    Only exact ``nn.Linear`` / ``nn.Conv2d`` instances are converted: a subclass with a forward of its
    own (MultiheadAttention's out_proj) is left on backprop and listed in the report.

    The forward pass and the weights are unchanged. Each converted layer gets ``layer.rule`` and,
    for rules with feedback, ``layer.feedback_weight`` (a buffer, or a Parameter where B learns).
    Everything else (activations, pooling, normalization, dropout) stays on autograd's plain
    backprop; ``model.fa_report`` lists it. ``rule_options`` go to the rule (``init``, ``scale``,
    ``seed``, ``output_layer``, and the rule's own); ``example_input`` is one batch, needed by rules
    whose feedback shape depends on the input size (DFA on convnets).

    The output layer is the last converted layer in module order unless ``output_layer`` names one.
    DFA takes its output error from the gradient that reaches that layer's pre-activation.
    """
    rule_obj = get_rule(rule, **rule_options) if isinstance(rule, str) else rule
    if not isinstance(rule_obj, Rule):
        raise TypeError(f"rule must be a rule name or a Rule, got {type(rule).__name__}")
    modules = dict(model.named_modules())
    names = [n for n, m in modules.items() if _convertible(m)]
    _refuse(model, rule_obj, names, modules, example_input)  # before anything is swapped
    shapes = None
    if rule_obj.needs_input_shapes and example_input is not None:
        shapes = _input_shapes(model, example_input, names)
    report = ConversionReport(rule=rule_obj.name)
    layers = []
    saved = {name: _snapshot(modules[name]) for name in names}
    try:
        for name, module in modules.items():
            if _convertible(module):
                layers.append((name, swap_class(module)))
                report.converted.append(name)
            elif name and (not any(True for _ in module.children()) or module._parameters):
                # leaves (activations, pooling, norms) and containers with weights of their own
                # (e.g. MultiheadAttention's in_proj) train by plain autograd
                report.left_on_backprop[name] = type(module).__name__
        rule_obj.attach(layers, shapes)
    except Exception:
        # a refusal only the rule itself can find (a bad dfa `direct` layer, ifa's chain) must not leave
        # the caller's model half converted either
        for name, state in saved.items():
            _restore(modules[name], state)
        raise
    model.fa_report = report
    return model


def _refuse(model, rule, names, modules, example_input):
    """Every refusal convert can see before it touches the model, each with its reason."""
    if not names:
        raise ValueError(f"{type(model).__name__} has no nn.Linear or nn.Conv2d layer to convert")
    convs = [n for n in names if isinstance(modules[n], nn.Conv2d)]
    if convs and not rule.supports_conv:
        raise ValueError(f"{rule.name} applies only to fully connected nets, but layers {convs} are "
                         f"convolutions: {rule.conv_refusal}")
    if convs and rule.needs_input_shapes and example_input is None:
        raise ValueError(f"{rule.name} on a model with Conv2d layers ({convs}) needs the input shape of each "
                         f"layer: pass example_input=<one batch> to fa_bench.convert")
    wanted = rule.opts.get("output_layer")
    if wanted is not None and wanted not in names:
        raise ValueError(f"output_layer {wanted!r} is not a layer convert would convert; converted layers would "
                         f"be: {names}")
    if not rule.uses_backward:
        stray = [n for n, _ in model.named_parameters() if (n.rsplit(".", 1)[0] if "." in n else "") not in names]
        if stray:
            raise ValueError(f"rule {rule.name!r} trains only converted layers, but the model has "
                             f"other parameters: {stray}")


def _snapshot(module):
    return module.__class__, dict(module.__dict__), dict(module._parameters), dict(module._buffers)


def _restore(module, state):
    cls, attrs, params, buffers = state
    module.__class__ = cls
    module.__dict__.clear()
    module.__dict__.update(attrs)
    # the saved attributes hold the live parameter and buffer dicts, mutated since: put back the copies
    module.__dict__["_parameters"] = params
    module.__dict__["_buffers"] = buffers


def converted_layers(model: nn.Module) -> list[tuple[str, FeedbackLayer]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, FeedbackLayer)]


def rule_of(model: nn.Module) -> Rule:
    """The rule a converted model trains with."""
    layers = converted_layers(model)
    if not layers:
        raise ValueError("model has not been converted; call fa_bench.convert first")
    return layers[0][1].rule
