"""Seed stacking: S converted copies of one MLP become one model whose tensors carry a leading seed axis.

Each seed's model is built and converted by fa_bench's own builders first (its weights, feedback,
sparsity masks from its own generators), then ``stack_models`` stacks them: every converted Linear
becomes a ``SeedStackedLinear`` (W (S, out, in), b (S, out), B (S, ...)), and a fresh instance of the
same rule class, with the same options, is bound to the stacked layers with the seed list. The rule's
own algebra then runs on all seeds at once and ``torch.optim`` steps every seed's slice as it would
step that seed's model alone; per-step draws (brsf's R_t, node perturbation's noise) come from each
seed's own stream. No rule has seed-batching code of its own.

What stacks: an ``nn.Sequential`` of converted Linear layers, elementwise activations and a leading
Flatten. Dropout does not (its masks come from each run's global stream, which a stacked model cannot
reproduce per seed), nor does anything else; ``stack_refusal`` says why.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from fa_bench.convert import ConversionReport, converted_layers, rule_of
from fa_bench.layers import FeedbackLinear, SeedStackedLinear

ELEMENTWISE = (nn.Identity, nn.Tanh, nn.Sigmoid, nn.ReLU)


def stack_refusal(model: nn.Module) -> str | None:
    """Why the converted ``model`` cannot be seed-stacked; None when it can."""
    if not isinstance(model, nn.Sequential):
        return f"the model is a {type(model).__name__}, not an nn.Sequential of Linear layers"
    for name, module in model.named_children():
        if isinstance(module, nn.Flatten) and (module.start_dim, module.end_dim) == (1, -1):
            continue
        if type(module) is FeedbackLinear or isinstance(module, ELEMENTWISE):
            continue
        return (f"module {name} is a {type(module).__name__}; seed stacking takes Linear layers and "
                f"elementwise activations only")
    if not rule_of(model).seed_batchable:
        return f"rule {rule_of(model).name!r} does not seed-batch"
    return None


def _stacked(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors]).clone()


def stack_models(models: list[nn.Module], seeds: list[int]) -> nn.Sequential:
    """One model for ``seeds``' converted ``models`` (same architecture and rule), seed i along axis 0."""
    if len(models) != len(seeds) or not models:
        raise ValueError(f"stack one model per seed: {len(models)} models for seeds {seeds}")
    for model in models:
        reason = stack_refusal(model)
        if reason:
            raise ValueError(f"cannot seed-stack this model: {reason}")
    first_rule = rule_of(models[0])
    children = []
    for name, module in models[0].named_children():
        twins = [dict(m.named_children())[name] for m in models]
        if isinstance(module, nn.Flatten):
            children.append((name, nn.Flatten(2)))  # keep the seed and batch axes
        elif isinstance(module, FeedbackLinear):
            stacked = SeedStackedLinear(_stacked([t.weight for t in twins]),
                                        None if module.bias is None else _stacked([t.bias for t in twins]))
            # the rule's tensors (B, frsf's magnitudes, sparsity masks) keep their kind: matched's B learns
            for key in module._parameters:
                if key not in ("weight", "bias"):
                    stacked.register_parameter(key, nn.Parameter(_stacked([getattr(t, key) for t in twins])))
            for key, value in module._buffers.items():
                if value is not None:
                    stacked.register_buffer(key, _stacked([getattr(t, key) for t in twins]))
            children.append((name, stacked))
        else:
            children.append((name, type(module)()))
    stacked_model = nn.Sequential(OrderedDict(children))
    rule = type(first_rule)(**first_rule.opts)
    rule.bind(converted_layers(stacked_model), seeds=seeds)
    report = ConversionReport(rule=rule.name, converted=[n for n, _ in converted_layers(stacked_model)])
    stacked_model.fa_report = report
    return stacked_model


def seed_state(model: nn.Module, index: int) -> dict[str, torch.Tensor]:
    """Seed ``index``'s tensors of a stacked model, under the names its own model's state_dict uses."""
    return {k: v[index] for k, v in model.state_dict().items()}


def seed_axis_loss(loss_fn):
    """A per-example loss for outputs (S, N, ...) and targets (S, N, ...): (S, N) losses."""
    def per_seed(out, target):
        S, N = out.shape[:2]
        flat = loss_fn(out.reshape(S * N, *out.shape[2:]), target.reshape(S * N, *target.shape[2:]))
        return flat.view(S, N)
    per_seed.base_loss = loss_fn  # fa_bench.losses.mean_grad writes its gradient out
    return per_seed
