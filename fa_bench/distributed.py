"""Multi-process training with ``torchrun`` (DDP): each process takes its share of every global batch,
the gradients are summed across processes before the optimizer steps, and only rank 0 writes records,
summaries and checkpoints.

Every rank builds the same model and draws the same feedback matrices (they come from the run seed on
the CPU), and draws the same batch order from the same generator; rank r then trains on its slice of
each global batch (contiguous, ``tensor_split``), or on its DistributedSampler share for streamed data.
Gradients are weighted by each rank's share of the global batch before they are summed, so a rule
whose update is a gradient (bp, fa, dfa, ...) takes exactly the single-process step on the same global
batch, up to the order of float sums. The rule's own backward runs per rank, unchanged: what it
sends down its layers depends only on that rank's examples.

Started by torchrun (``WORLD_SIZE`` > 1 in the environment); the backend is NCCL on CUDA, gloo on the CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch of indices."""
        return idx.tensor_split(self.world)[self.rank] if self.active else idx

    def sum_gradients(self, parameters, n_local: int):
        """Each .grad becomes the global batch's mean gradient: Σ_r (n_r / N) grad_r."""
        if not self.active:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        # float64, as the Python float the share was before: one rounding, to each gradient's dtype
        n = torch.tensor([float(n_local)], dtype=torch.float64, device=grads[0].device if grads else "cpu")
        dist.all_reduce(n)
        share = n_local / n  # on the device: no read-back of the global count (a host sync)
        for g in grads:
            g.mul_(share.to(g.dtype))
            dist.all_reduce(g)

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(t)
        return t


def from_environment(device: torch.device | None = None) -> Dist:
    """Join the torchrun process group when there is one (idempotent); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(rank=dist.get_rank(), world=dist.get_world_size())


def shutdown():
    """Leave the process group before the interpreter exits. Without it gloo's worker threads can
    outlive Python's finalisation and abort the process at exit ("terminate called without an active
    exception", pytorch/pytorch#190489): a run that had finished and written everything then reports
    failure to torchrun. Local, no collective: safe after a rank failed too."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def local_device(name: str) -> str:
    """Under torchrun each process takes the GPU of its LOCAL_RANK."""
    if name in ("auto", "cuda") and torch.cuda.is_available() and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return name
