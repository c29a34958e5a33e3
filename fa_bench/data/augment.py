"""Training-time crops of in-memory image sets (Moskovitz et al. 2018, CIFAR-10 Model 1: 24×24 inputs,
Table 2's footnote "CIFAR-10 images were cropped as part of data augmentation").

Reading: each training example is a random 24×24 window of its 32×32 image, redrawn every epoch; test
images are the centre window (the TensorFlow CIFAR-10 tutorial's scheme, which the 24×24 input and the
footnote point to). The tutorial's flips and brightness/contrast jitter are not mentioned by the paper
and are not done.

The windows of an epoch are a function of (run seed, epoch, example index) only, drawn once per epoch
from a generator of their own purpose ("crop"), so a run resumed mid-epoch sees the crops an
uninterrupted run sees, and batch order, feedback draws and crops never share a stream.
"""
from __future__ import annotations

import torch

from fa_bench.data.errors import DataConfigError
from fa_bench.seeding import derive_seed


def check_crop(size, side: int | None = None):
    """``dataset.crop``: null, or an integer side in [1, image side]."""
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 1 or (side is not None and size > side):
        limit = f"[1, {side}]" if side is not None else ">= 1"
        raise DataConfigError(f"dataset.crop={size!r}: valid: null (no crop) or an integer side in {limit}")
    return size


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The centre size×size window of images (..., H, W) (the top-left of the two middles when odd)."""
    top, left = (x.shape[-2] - size) // 2, (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


def epoch_offsets(seeds: list[int], epoch: int, n: int, side: int, size: int) -> torch.Tensor:
    """(seeds, n, 2) window corners (row, column) of every training example for one epoch."""
    g = torch.Generator()
    out = []
    for seed in seeds:
        g.manual_seed(derive_seed(seed, "crop") + int(epoch))
        out.append(torch.randint(0, side - size + 1, (n, 2), generator=g))
    return torch.stack(out)


def crop_at(x: torch.Tensor, offsets: torch.Tensor, size: int) -> torch.Tensor:
    """Each image of x (..., C, H, W) cut at its own corner offsets (..., 2): one gather, no Python loop."""
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    flat, corners = x.reshape(-1, c, h, w), offsets.reshape(-1, 2).to(x.device)
    span = torch.arange(size, device=x.device)
    rows = (corners[:, 0, None] + span)[:, None, :, None]  # (N, 1, size, 1)
    cols = (corners[:, 1, None] + span)[:, None, None, :]  # (N, 1, 1, size)
    n = torch.arange(flat.shape[0], device=x.device)[:, None, None, None]
    ch = torch.arange(c, device=x.device)[None, :, None, None]
    return flat[n, ch, rows, cols].reshape(*lead, c, size, size)
