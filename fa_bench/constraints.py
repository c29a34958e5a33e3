"""Training options that reshape the weights or the learning rate during training (Moskovitz et al.
2018's settings, usable by any experiment). Each is a small object the rule engine calls around its
optimizer step; none draws random numbers.

- ``LRSchedule`` (``trainer.lr_schedule``): a step schedule by epochs. ``{milestones: [20], gamma: 0.1}``
  multiplies the learning rate by gamma at each listed epoch (1e-4 -> 1e-5 at epoch 20);
  ``{every: 30, gamma: 0.8}`` every 30 epochs. The rate is a function of the epoch alone (base rate
  times gamma to the number of milestones passed), so a resumed run needs no scheduler state.
- ``ConstNorm`` (``trainer.const_norm``, Moskovitz eq. 10): after every step, W_l <- ||W_l^0|| W_l / ||W_l||
  for every converted layer's weight (Frobenius norm, biases untouched), W_l^0 the weight at the start
  of training. Read as the "Const." rows: the norm is held, the direction learns.
- ``SignFreeze`` (``trainer.freeze_signs_at``, the E/I condition): once that fraction of the run's steps
  has passed, every converted weight keeps the sign it has then; a weight the optimizer pushes across
  zero is clipped to just above (or below) it, ``SIGN_EPS`` of its sign. Read as "each weight is clipped
  at just above or below zero so it keeps its sign". A weight exactly 0 at the freeze keeps no sign.
"""
from __future__ import annotations

import math

import torch

from fa_bench.layers import SeedStackedLinear

SIGN_EPS = 1e-8


class LRSchedule:
    def __init__(self, optimizer, spec: dict | None, steps_per_epoch: int):
        self.spec = check_schedule(spec)
        self.optimizer, self.steps_per_epoch = optimizer, max(int(steps_per_epoch), 1)
        self.base = [group["lr"] for group in optimizer.param_groups]

    def factor(self, epoch: int) -> float:
        if self.spec is None:
            return 1.0
        gamma = float(self.spec["gamma"])
        if "milestones" in self.spec:
            return gamma ** sum(1 for m in self.spec["milestones"] if epoch >= m)
        return gamma ** (epoch // int(self.spec["every"]))

    def at_step(self, step: int):
        factor = self.factor(step // self.steps_per_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * factor


def check_schedule(spec):
    """None, {milestones: [epoch, ...], gamma} or {every: epochs, gamma}; raises ValueError naming what is valid."""
    if spec is None:
        return None
    ok = isinstance(spec, dict) and isinstance(spec.get("gamma"), (int, float)) and spec["gamma"] > 0 and (
        (set(spec) == {"milestones", "gamma"} and isinstance(spec["milestones"], (list, tuple))
         and all(isinstance(m, int) and m >= 1 for m in spec["milestones"]))
        or (set(spec) == {"every", "gamma"} and isinstance(spec["every"], int) and spec["every"] >= 1))
    if not ok:
        raise ValueError(f"trainer.lr_schedule={spec!r}: give null, {{milestones: [epoch, ...], gamma: g}} or "
                         f"{{every: n_epochs, gamma: g}} (integer epochs >= 1, gamma > 0)")
    return dict(spec)


def _norms(layer) -> torch.Tensor:
    """||W|| of a layer: one per seed (a leading axis) for a seed-stacked layer, else a scalar."""
    w = layer.weight.detach()
    return w.flatten(1).norm(dim=1) if isinstance(layer, SeedStackedLinear) else w.norm()


class ConstNorm:
    def __init__(self, layers):
        self.layers = [layer for _, layer in layers]
        self.norms = [_norms(layer).clone() for layer in self.layers]

    @torch.no_grad()
    def apply(self):
        for layer, norm in zip(self.layers, self.norms):
            scale = norm / _norms(layer).clamp_min(1e-30)
            layer.weight.mul_(scale.view(-1, *[1] * (layer.weight.dim() - 1)) if scale.dim() else scale)


class SignFreeze:
    def __init__(self, layers, fraction: float, total_steps: int):
        if not (isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and 0 < fraction < 1):
            raise ValueError(f"trainer.freeze_signs_at={fraction!r}: a fraction of training in (0, 1), or null")
        self.layers = [layer for _, layer in layers]
        self.at = max(1, math.ceil(fraction * total_steps))
        self.signs: list[torch.Tensor] | None = None
        self.bounds: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _freeze(self, signs):
        self.signs = signs
        # per-weight clamp bounds, built once: one in-place clamp per step instead of a chain of temporaries
        inf = float("inf")
        self.bounds = [(torch.where(s > 0, SIGN_EPS, -inf).to(s.dtype), torch.where(s < 0, -SIGN_EPS, inf).to(s.dtype))
                       for s in signs]

    @torch.no_grad()
    def after_step(self, step: int):
        """``step``: the number of steps taken so far."""
        if self.signs is None:
            if step >= self.at:
                self._freeze([torch.sign(layer.weight) for layer in self.layers])
            return
        for layer, (low, high) in zip(self.layers, self.bounds):
            layer.weight.clamp_(min=low, max=high)

    def state(self):
        return None if self.signs is None else [s.clone() for s in self.signs]

    def load_state(self, signs):
        if signs is None:
            self.signs, self.bounds = None, []
        else:
            self._freeze([s.to(layer.weight.device) for s, layer in zip(signs, self.layers)])
