"""Exact t-SNE (van der Maaten & Hinton 2008) in torch, for the few thousand points of a figure, and
the hidden features it embeds (Nøkland 2016, Fig. 3). scikit-learn is not a dependency: this is the
O(N²) algorithm with scikit-learn's default schedule, deterministic for a given seed.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


def pca(x: torch.Tensor, dims: int) -> torch.Tensor:
    """Project centred rows on their ``dims`` leading principal components (all of them if fewer).

    The usual first step of t-SNE (van der Maaten's reference code: 50 dimensions): it removes noise
    and makes the distances cheap; pairwise distances do not depend on the components' signs.
    """
    x = x - x.mean(0)
    if x.shape[1] <= dims:
        return x
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    return x @ v[:dims].T


def _sq_distances(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1)
    return (sq[:, None] + sq[None, :] - 2 * x @ x.T).clamp_min_(0).fill_diagonal_(0)


def joint_probabilities(x: torch.Tensor, perplexity: float, tol: float = 1e-5, max_iter: int = 100) -> torch.Tensor:
    """P of t-SNE: each row's Gaussian precision found by bisection so that its conditional
    distribution has the given perplexity, then symmetrised, P = (P + Pᵀ) / 2N."""
    n = x.shape[0]
    if not 1 <= perplexity < n:
        raise ValueError(f"t-SNE perplexity must be in [1, n_points), got {perplexity} for {n} points")
    d = _sq_distances(x)
    d = d / d[d > 0].median()  # scale-free: the bisection starts near the answer for any feature scale
    target = math.log(perplexity)
    beta = torch.ones(n, dtype=x.dtype)
    lo = torch.full((n,), 0.0, dtype=x.dtype)
    hi = torch.full((n,), math.inf, dtype=x.dtype)
    eye = torch.eye(n, dtype=torch.bool)
    for _ in range(max_iter):
        logits = (-d * beta[:, None]).masked_fill_(eye, -math.inf)
        p = torch.softmax(logits, 1)
        entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1)
        diff = entropy - target
        if diff.abs().max() < tol:
            break
        too_flat = diff > 0  # entropy too high: sharpen (raise beta)
        lo = torch.where(too_flat, beta, lo)
        hi = torch.where(too_flat, hi, beta)
        beta = torch.where(torch.isinf(hi), beta * 2, (lo + hi) / 2)
    p = (p + p.T) / (2 * n)
    return p.clamp_min(1e-12)


def _student_kernel(y: torch.Tensor) -> torch.Tensor:
    """1 / (1 + ‖y_i − y_j‖²) with a zero diagonal, computed in place (one N × N buffer)."""
    sq = (y * y).sum(1)
    num = y @ y.T
    num.mul_(-2).add_(sq[:, None]).add_(sq[None, :]).clamp_min_(0).add_(1).reciprocal_()
    return num.fill_diagonal_(0)


def kl_divergence(p: torch.Tensor, y: torch.Tensor) -> float:
    """KL(P ‖ Q) of an embedding: the cost t-SNE minimises."""
    p, y = p.double(), y.double()
    num = _student_kernel(y)
    q = (num / num.sum()).clamp_min(1e-12)
    mask = ~torch.eye(p.shape[0], dtype=torch.bool)
    return float((p[mask] * (p[mask] / q[mask]).log()).sum())


def tsne(x, dims: int = 2, perplexity: float = 30.0, n_iter: int = 1000, seed: int = 0, pca_dims: int | None = 50,
         early_exaggeration: float = 12.0, exaggeration_iter: int = 250, learning_rate: float | None = None,
         return_kl: bool = False):
    """Embed the rows of ``x`` (N × D, array or tensor) in ``dims`` dimensions; returns an N × dims
    float32 array (and the final KL divergence if ``return_kl``).

    scikit-learn's exact method and schedule: PCA to ``pca_dims`` first, early exaggeration 12 for 250
    iterations with momentum 0.5, then momentum 0.8; gradient descent with per-coordinate gains
    (delta-bar-delta); learning rate max(N / 12 / 4, 50) unless given. The start is N(0, 1e-4 I)
    from a generator seeded with ``seed``; everything runs on the CPU (P in float64, the descent in
    float32), so the same seed and input give the same embedding.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same sums in the same order on any machine (and, for
    try:                      # matrices this small, faster than several threads contending)
        return _tsne(x, dims, perplexity, n_iter, seed, pca_dims, early_exaggeration, exaggeration_iter,
                     learning_rate, return_kl)
    finally:
        torch.set_num_threads(threads)


def _tsne(x, dims, perplexity, n_iter, seed, pca_dims, early_exaggeration, exaggeration_iter, learning_rate,
          return_kl):
    x = torch.tensor(np.array(x, dtype=np.float64))  # a copy: arrays read from .npz are read-only
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"t-SNE needs an N × D matrix with N >= 3, got shape {tuple(x.shape)}")
    n = x.shape[0]
    if pca_dims:
        x = pca(x, pca_dims)
    p = joint_probabilities(x, perplexity)
    lr = learning_rate if learning_rate is not None else max(n / early_exaggeration / 4, 50.0)
    # the descent runs in float32 (it is memory-bound on N × N matrices; P is calibrated in float64)
    p = p.to(torch.float32)
    p_exaggerated = p * early_exaggeration
    g = torch.Generator().manual_seed(int(seed))
    y = (1e-2 * torch.randn(n, dims, generator=g, dtype=torch.float64)).to(torch.float32)
    update = torch.zeros_like(y)
    gains = torch.ones_like(y)
    for it in range(n_iter):
        exaggerate = it < exaggeration_iter
        momentum = 0.5 if exaggerate else 0.8
        num = _student_kernel(y)
        # gradient 4 Σ_j (p_ij − q_ij) num_ij (y_i − y_j), with q = num / Σ num
        pq = torch.sub(p_exaggerated if exaggerate else p, num, alpha=1 / float(num.sum())).mul_(num)
        grad = 4 * (pq.sum(1, keepdim=True) * y - pq @ y)
        same_sign = (grad > 0) == (update > 0)
        gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min_(0.01)
        update = momentum * update - lr * gains * grad
        y = y + update
        y = y - y.mean(0)
    out = y.to(torch.float32).numpy()
    return (out, kl_divergence(p, y)) if return_kl else out


def knn_accuracy(y: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-nearest-neighbour accuracy (%) of ``labels`` in an embedding: how well the
    classes separate there (a number for what the eye sees in a t-SNE panel, or in an autoencoder's
    latent). Euclidean; majority vote, a tie going to the label of the nearest neighbour among the tied
    ones (not to the lowest label, which would favour some digits). Equal distances keep index order."""
    y = torch.tensor(np.array(y, dtype=np.float64))
    labels = torch.tensor(np.array(labels, dtype=np.int64))
    d = _sq_distances(y).fill_diagonal_(math.inf)
    nearest = torch.sort(d, dim=1, stable=True).indices[:, :k]
    voters = labels[nearest]  # (N, k), nearest first
    votes = torch.nn.functional.one_hot(voters, int(labels.max()) + 1).sum(1)
    tied = votes == votes.max(1, keepdim=True).values  # (N, classes): the labels with the most votes
    first = tied.gather(1, voters).to(torch.int8).argmax(1)  # the nearest voter whose label is tied
    guess = voters.gather(1, first[:, None]).squeeze(1)
    return 100.0 * float((guess == labels).double().mean())


@torch.no_grad()
def layer_inputs(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000) -> list[tuple[str, torch.Tensor]]:
    """(name, input) of every converted layer of ``model`` in module order, for the examples ``x``,
    flattened per example: the network input, then each hidden layer's output as the next layer reads
    it. In eval mode (no dropout), without autograd; the model's training mode is restored."""
    from fa_bench.convert import converted_layers

    layers = converted_layers(model)
    grabbed: dict[str, list] = {name: [] for name, _ in layers}
    handles = [layer.register_forward_pre_hook(lambda mod, args, name=name: grabbed[name].append(
        args[0].flatten(1).float().cpu())) for name, layer in layers]
    was_training = model.training
    model.eval()
    try:
        for xb in x.split(batch_size):
            model(xb)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return [(name, torch.cat(grabbed[name])) for name, _ in layers]


def save_activations(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, path: Path | str,
                     pca_dims: int | None = 50, samples: int = 0) -> Path:
    """Write what a t-SNE figure of ``model``'s features needs into ``path`` (.npz): ``labels``,
    ``names`` (the converted layers, in order) and ``feature_<i>``, the input of layer i for every
    example, projected on its ``pca_dims`` leading principal components (t-SNE's own first step),
    float32. For a 3x400 net and 2000 images that is 1.6 MB instead of 16 MB of raw activations.
    ``samples``: also ``sample_inputs`` and ``sample_outputs``, the first that many examples' raw input
    and the model's output (eval mode), flattened (an autoencoder's sample reconstructions)."""
    arrays = {"labels": labels.detach().cpu().numpy().astype(np.int64)}
    inputs = layer_inputs(model, x)
    arrays["names"] = np.array([name for name, _ in inputs])
    for i, (_, feat) in enumerate(inputs):
        feat = feat.double()
        arrays[f"feature_{i}"] = (pca(feat, pca_dims) if pca_dims else feat).float().numpy()
    if samples:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            out = model(x[:samples])
        model.train(was_training)
        arrays["sample_inputs"] = x[:samples].flatten(1).float().cpu().numpy()
        arrays["sample_outputs"] = out.flatten(1).float().cpu().numpy()
    path = Path(path)
    np.savez(path, **arrays)
    return path
