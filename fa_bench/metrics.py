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


# --- The same metrics over a leading seed axis: tensors (S, ...) in, a float64 tensor (S,) (or (S, units))
# out, nothing read back to the host. The probe reads all of a measurement's values in one transfer, and
# every W-sized tensor is converted and squared once, where the per-value functions above did it per metric.

def _degrees(dot: torch.Tensor, norm_a: torch.Tensor, norm_b: torch.Tensor) -> torch.Tensor:
    """arccos(a·b / (‖a‖‖b‖)) in degrees; NaN where either norm is 0 (0/0)."""
    return torch.rad2deg(torch.arccos((dot / (norm_a * norm_b)).clamp(-1.0, 1.0)))


CHUNK = 1 << 16  # elements per seed converted to float64 at a time: the working set stays in cache


def _chunks(t: torch.Tensor, dim: int):
    """Slices of ``t`` along ``dim`` of about CHUNK elements per seed (whole rows)."""
    per_row = max(1, t[0].numel() // max(1, t.shape[dim]))
    return t.split(max(1, CHUNK // per_row), dim=dim)


def _pair(a: torch.Tensor, b: torch.Tensor, dims):
    """(a·b, ‖a‖, ‖b‖) over ``dims`` in float64."""
    a, b = _f64(a), _f64(b)
    return ((a * b).sum(dims), torch.linalg.vector_norm(a, dim=dims), torch.linalg.vector_norm(b, dim=dims))


def seed_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """angle() of each seed's slices a[s], b[s]: float64 sums, accumulated chunk by chunk."""
    a, b = a.detach().flatten(1), b.detach().flatten(1)
    dot = sq_a = sq_b = 0
    for ca, cb in zip(_chunks(a, 1), _chunks(b, 1)):
        ca, cb = ca.double(), cb.double()
        dot = dot + (ca * cb).sum(1)
        sq_a, sq_b = sq_a + ca.square().sum(1), sq_b + cb.square().sum(1)
    return _degrees(dot, sq_a.sqrt(), sq_b.sqrt())


def seed_delta_metrics(delta_rule: torch.Tensor, delta_bp: torch.Tensor):
    """Per seed: batch_angle(δ_rule, δ_BP), norm_ratio(δ_BP, δ_rule), and whether δ_rule is non-zero
    anywhere (a layer nothing reaches, shallow's hidden ones, gets zeros: no signal to measure).
    The tensors are (S, N, ...): examples along the second axis."""
    dot, n_rule, n_bp = _pair(delta_rule.flatten(2), delta_bp.flatten(2), 2)  # (S, N) each
    angle = _degrees(dot, n_rule, n_bp).nanmean(1)
    total_rule, total_bp = torch.linalg.vector_norm(n_rule, dim=1), torch.linalg.vector_norm(n_bp, dim=1)
    sent = total_rule > 0
    return angle, torch.where(sent, total_bp / total_rule, torch.nan), sent


def count_true(mask: torch.Tensor) -> torch.Tensor:
    """Per seed, the number of True entries of (S, ...) as float64: an integer sum (exact, and several
    times faster than summing booleans straight into float64)."""
    return mask.flatten(1).sum(1).to(torch.float64)


def seed_weight_metrics(weight: torch.Tensor, feedback: torch.Tensor, weight_sign: torch.Tensor | None = None):
    """Per seed, for W and B of shape (S, out, in, *kernel): weight_angle, sign_congruence and
    rel_error, each (S,), and neuron_angles (S, in). ``weight_sign`` is sign(W) when the caller has it."""
    sign_w = torch.sign(weight) if weight_sign is None else weight_sign
    congruence = count_true(sign_w == torch.sign(feedback)) / sign_w[0].numel()
    unit_dims = (1, *range(3, weight.dim()))  # a unit is an input column (a conv's input channel)
    dot = sq_w = sq_b = sq_diff = 0
    for cw, cb in zip(_chunks(weight.detach(), 1), _chunks(feedback.detach(), 1)):  # chunks of output rows
        cw, cb = cw.double(), cb.double()
        dot = dot + (cw * cb).sum(unit_dims)
        sq_w, sq_b = sq_w + cw.square().sum(unit_dims), sq_b + cb.square().sum(unit_dims)
        sq_diff = sq_diff + (cw - cb).flatten(1).square().sum(1)
    norm_w, norm_b = sq_w.sqrt(), sq_b.sqrt()
    total_w = sq_w.sum(1).sqrt()
    total = _degrees(dot.sum(1), total_w, sq_b.sum(1).sqrt())
    rel = sq_diff.sqrt() / total_w
    return total, congruence, rel, _degrees(dot, norm_w, norm_b)


def seed_outer_product_angles(x: torch.Tensor, delta_a: torch.Tensor, delta_b: torch.Tensor) -> torch.Tensor:
    """seed_angles(δa_sᵀ x_s, δb_sᵀ x_s) for inputs x (S, N, ..., in) and signals δ (S, N, ..., out),
    without forming either out×in product: ⟨δaᵀx, δbᵀx⟩ = Σ_nm (δa δbᵀ)_nm (x xᵀ)_nm, and the norms
    likewise, from float64 Gram matrices over the N examples (exact products, as seed_angles has)."""
    X, A, B = (t.detach().flatten(1, -2).double() for t in (x, delta_a, delta_b))
    gram_x = torch.bmm(X, X.transpose(1, 2))

    def inner(P, Q):
        return (torch.bmm(P, Q.transpose(1, 2)) * gram_x).sum((1, 2))
    # Σ of the Hadamard product of two PSD matrices is ≥ 0 (Schur); the clamp only guards rounding
    return _degrees(inner(A, B), inner(A, A).clamp_min(0).sqrt(), inner(B, B).clamp_min(0).sqrt())
