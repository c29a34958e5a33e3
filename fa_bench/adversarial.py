"""Adversarial training with the fast gradient sign method (Goodfellow, Shlens & Szegedy 2015), as
Nøkland 2016 used it for the "+ ADV" rows of Table 1.

Each training step perturbs its batch to x_adv = x + ε·sign(∇_x J(x, y)) and trains on Goodfellow's
objective J̃ = α·J(x, y) + (1 − α)·J(x_adv, y): the rule takes one step on the batch [x; x_adv] whose
per-example losses are weighted 2α and 2(1 − α), so the mean is exactly J̃.

Where ∇_x J comes from is an option, because a rule without weight transport has no exact input
gradient of its own:
- ``backprop`` (default): the true input gradient, by exact backprop through the same converted layers
  (their feedback is bypassed for the attack only). The attack is then the same threat for every
  rule, and a comparison of rules measures the learning rule, not the attacker.
- ``rule``: the signal the rule itself delivers to the input (FA: δ_1·B_1; DFA and IFA: e·B_0;
  shallow: none, so no perturbation). Needs a rule that learns by a backward pass.

The attack runs in eval mode (no dropout masks drawn, batch-norm statistics untouched), so the
perturbation targets the network that is tested and the training step's random draws are those a
run without the attack would make. The gradient is taken without touching any ``.grad``.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from fa_bench.convert import converted_layers
from fa_bench.layers import exact_backprop

INPUT_GRADS = ("backprop", "rule")


@dataclass(frozen=True)
class FGSM:
    epsilon: float = 0.25  # Goodfellow 2015's MNIST ε (Nøkland gives none); inputs in [0, 1]
    alpha: float = 0.5  # weight of the clean loss; Goodfellow's α (0: train on adversarial examples only)
    input_grad: str = "backprop"  # backprop | rule: where ∇_x J comes from

    def __post_init__(self):
        if not (isinstance(self.epsilon, (int, float)) and self.epsilon >= 0):
            raise ValueError(f"trainer.adversarial.epsilon must be a number >= 0, got {self.epsilon!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 <= self.alpha <= 1):
            raise ValueError(f"trainer.adversarial.alpha must be in [0, 1], got {self.alpha!r}")
        if self.input_grad not in INPUT_GRADS:
            raise ValueError(f"trainer.adversarial.input_grad must be one of {', '.join(INPUT_GRADS)}, "
                             f"got {self.input_grad!r}")

    @classmethod
    def from_config(cls, options: dict | None) -> FGSM | None:
        """None (off) or the trainer's ``adversarial`` mapping; unknown keys name the valid ones."""
        if options is None:
            return None
        if not isinstance(options, dict):
            raise ValueError(f"trainer.adversarial must be null or a mapping, got {options!r}")
        valid = set(cls.__dataclass_fields__)
        unknown = set(options) - valid
        if unknown:
            raise ValueError(f"trainer.adversarial got unknown key(s) {sorted(unknown)}; "
                             f"valid: {', '.join(sorted(valid))}")
        return cls(**options)

    def check_rule(self, rule):
        if self.input_grad == "rule" and not rule.uses_backward:
            raise ValueError(f"trainer.adversarial.input_grad=rule needs a rule that learns by a backward pass; "
                             f"{rule.name!r} does not: use input_grad=backprop")

    def perturb(self, model, x, target, loss_fn) -> torch.Tensor:
        g = input_gradient(model, x, target, loss_fn, self.input_grad)
        return (x + self.epsilon * torch.sign(g)).detach()

    def step(self, rule, model, x, target, loss_fn):
        """The rule's gradients for J̃ on [x; x_adv]; returns the clean half's (per-example loss, output)."""
        x_adv = self.perturb(model, x, target, loss_fn)
        n = x.shape[0]

        def weighted(out, t):
            per_example = loss_fn(out, t)
            # built in the loss's own dtype: a float32 0.6 would shift a float64 step by 1e-8
            weight = per_example.new_full(per_example.shape, 2 * (1 - self.alpha))
            weight[:n] = 2 * self.alpha
            return per_example * weight

        _, out = rule.compute_gradients(model, torch.cat([x, x_adv]), torch.cat([target, target]), weighted)
        clean = out[:n]
        with torch.no_grad():
            return loss_fn(clean, target).detach(), clean


def input_gradient(model, x, target, loss_fn, source: str = "backprop") -> torch.Tensor:
    """∂(mean loss)/∂x in eval mode, by exact backprop or by the rule's own feedback; no .grad written."""
    if source not in INPUT_GRADS:
        raise ValueError(f"input gradient source must be one of {', '.join(INPUT_GRADS)}, got {source!r}")
    layers = [layer for _, layer in converted_layers(model)]
    was_training = model.training
    x = x.detach().requires_grad_(True)
    with _parameters_frozen(model), exact_backprop(layers, source == "backprop"), torch.enable_grad():
        try:
            model.eval()
            loss = loss_fn(model(x), target).mean()
            (grad,) = torch.autograd.grad(loss, x, allow_unused=True)
        finally:
            model.train(was_training)
    return torch.zeros_like(x) if grad is None else grad  # shallow sends nothing to the input


@contextmanager
def _parameters_frozen(model):
    """Only x needs a gradient: the layers' backward then skips every weight gradient."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)
