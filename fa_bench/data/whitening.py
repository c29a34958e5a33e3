"""Input whitening for the CIFAR convnets (Nøkland 2016: "for the convolutional networks, the data was
whitened"). His CONV net is the dropout paper's (Srivastava et al. 2014), whose CIFAR inputs were
globally contrast-normalised and then ZCA-whitened; both steps are offered:

- ``zca``: x ↦ W (x − μ) with W = U (Λ + εI)^(-1/2) Uᵀ, C = U Λ Uᵀ the training covariance of the
  flattened images. W is symmetric, so the whitened images stay as close to the originals as any
  whitening allows (they still look like images). With ε = 0 the whitened training set has identity
  covariance; ε > 0 keeps the weakest directions (pixel noise) from being blown up. ε is given as a
  fraction of the mean eigenvalue (the average per-pixel variance), so one value suits any scaling.
- ``gcn_zca``: each image first loses its own mean and is divided by its own root-mean-square, then ZCA.

μ and W come from the training set only and are applied to both splits. They are computed once and
cached beside the data, in ``<root>/whitening/``, under a name that holds the data set, the settings
and a digest of the training images, so a changed setting or a different copy of the data never
reuses a stale transform.
"""
from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

WHITENINGS = ("zca", "gcn_zca")


def check(whiten, zca_epsilon) -> None:
    if whiten is not None and whiten not in WHITENINGS:
        raise ValueError(f"unknown whitening {whiten!r}; valid: null, {', '.join(WHITENINGS)}")
    if not (isinstance(zca_epsilon, (int, float)) and zca_epsilon >= 0):
        raise ValueError(f"zca_epsilon must be a number >= 0, got {zca_epsilon!r}")


def global_contrast_normalize(x: torch.Tensor) -> torch.Tensor:
    """Per image: subtract its mean, divide by its root-mean-square (a flat image stays zero)."""
    flat = x.flatten(1)
    flat = flat - flat.mean(1, keepdim=True)
    rms = flat.pow(2).mean(1, keepdim=True).sqrt()
    return (flat / rms.clamp_min(1e-8)).view_as(x)


def fit_zca(x_train: torch.Tensor, epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, W) of ZCA whitening from the training images (any shape (N, ...)); float64 throughout."""
    flat = x_train.flatten(1).to(torch.float64)  # a copy: centred in place below
    mean = flat.mean(0)
    flat -= mean
    cov = flat.t() @ flat / flat.shape[0]
    eigvals, eigvecs = torch.linalg.eigh(cov)
    eps = epsilon * eigvals.mean()
    if eps == 0 and eigvals.min() <= 1e-12 * eigvals.max():
        raise ValueError(f"the training covariance is singular ({flat.shape[0]} images of {flat.shape[1]} values); "
                         f"ZCA needs zca_epsilon > 0 here")
    scale = (eigvals.clamp_min(0) + eps).rsqrt()
    return mean, (eigvecs * scale) @ eigvecs.t()


def apply_zca(x: torch.Tensor, mean: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """W(x − μ) per image, in x's dtype (float32 images: errors ~1e-6, far below any ε's effect)."""
    flat = x.flatten(1) - mean.to(x.dtype)
    return (flat @ matrix.to(x.dtype)).view_as(x)  # W is symmetric: rows (x − μ)ᵀW are (W(x − μ))ᵀ


def whiten(x_train, x_test, how: str, epsilon: float, cache_dir: str | os.PathLike, key: str, raw_train):
    """Whitened (x_train, x_test); the ZCA transform is read from, or written to, ``cache_dir``."""
    check(how, epsilon)
    if how == "gcn_zca":
        x_train, x_test = global_contrast_normalize(x_train), global_contrast_normalize(x_test)
    digest = hashlib.sha1(np.ascontiguousarray(raw_train).data).hexdigest()[:16]
    path = Path(cache_dir) / f"{key}_{how}_eps{epsilon:g}_{digest}.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu")
        mean, matrix = saved["mean"], saved["matrix"]
        log.info("whitening: reusing %s", path)
    else:
        mean, matrix = fit_zca(x_train, epsilon)
        _save(path, {"mean": mean, "matrix": matrix, "whiten": how, "zca_epsilon": epsilon, "digest": digest})
    return apply_zca(x_train, mean, matrix), apply_zca(x_test, mean, matrix)


def _save(path: Path, payload: dict):
    """Atomic write (parallel runs may fit the same transform at once); a read-only data folder only
    costs the recomputation next time, so it is reported, not fatal."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)
        log.info("whitening: computed and cached %s", path)
    except OSError as err:
        log.warning("whitening: could not cache the transform at %s (%s); it will be recomputed next run",
                    path, err)
