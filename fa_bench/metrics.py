"""Metric definitions (docs/contracts.md §4), as plain functions of tensors. Everything is computed in float64."""
from __future__ import annotations

import math

import torch


def _f64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to(torch.float64)


def angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """arccos(a·b / (‖a‖‖b‖)) in degrees over the flattened tensors, in [0, 180]; NaN if either is 0."""
    a, b = _f64(a).flatten(), _f64(b).flatten()
    denom = a.norm() * b.norm()
    if denom == 0:
        return math.nan
    return math.degrees(math.acos(max(-1.0, min(1.0, float(a @ b / denom)))))


def rowwise_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between a[i] and b[i] for each leading index i (each flattened)."""
    a, b = _f64(a).flatten(1), _f64(b).flatten(1)
    cos = (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def batch_angle(a: torch.Tensor, b: torch.Tensor) -> float:
    """Per-example angle, averaged over the examples whose vectors are both non-zero."""
    angles = rowwise_angles(a, b)
    angles = angles[~torch.isnan(angles)]
    return float(angles.mean()) if angles.numel() else math.nan


def neuron_angles(weight: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
    """Per input unit j of a layer: angle between W[:, j] (its outgoing forward weights) and B[:, j]
    (the feedback weights that carry error into unit j: δ_j = Σ_k B[k, j] e_k)."""
    w, b = _f64(weight), _f64(feedback)
    if w.dim() > 2:  # conv: a unit is an input channel, its weights span outputs × kernel
        w, b = w.transpose(0, 1).flatten(1), b.transpose(0, 1).flatten(1)
    else:
        w, b = w.t(), b.t()
    return rowwise_angles(w, b)


def sign_congruence(weight: torch.Tensor, feedback: torch.Tensor) -> float:
    return float((torch.sign(weight) == torch.sign(feedback)).double().mean())


def rel_error(weight: torch.Tensor, feedback: torch.Tensor) -> float:
    w = _f64(weight)
    return float((w - _f64(feedback)).norm() / w.norm())


def norm_ratio(delta_bp: torch.Tensor, delta_rule: torch.Tensor) -> float:
    denom = _f64(delta_rule).norm()
    return float(_f64(delta_bp).norm() / denom) if denom > 0 else math.nan


def nse(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Σ squared errors / Σ squared deviations of the targets from their mean (Lillicrap Methods, eq. 2)."""
    p, t = _f64(pred).flatten(1), _f64(target).flatten(1)
    return float((p - t).pow(2).sum() / (t - t.mean(0)).pow(2).sum())


def error(out: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 classification error in %."""
    return 100.0 * float((out.argmax(1) != target).double().mean())


def top5_error(out: torch.Tensor, target: torch.Tensor) -> float:
    k = min(5, out.shape[1])
    hit = (out.topk(k, dim=1).indices == target[:, None]).any(1)
    return 100.0 * float((~hit).double().mean())
