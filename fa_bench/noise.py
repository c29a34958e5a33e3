"""Noise during training only, for any rule (Lansdell 2020, Table 2's "noise" columns and its DAE).

- ``noise.activations=σ``: Gaussian noise of std σ added to every hidden layer's activity after its
  nonlinearity, in training forward passes. Read generically as the *input* of every converted layer
  but the first (as np_feedback places its perturbation; the output layer's output gets none), added
  by a forward pre-hook that is live only inside ``training()``. So evaluation, the alignment probe
  and anything else that calls the model outside a training step see the noiseless net. A rule whose
  step runs more than one forward pass (np_feedback, sg) gets fresh noise in each.
- ``dataset.input_noise=σ``: a denoising autoencoder's input: the training batch's *input* gets
  Gaussian noise of std σ, its target stays the clean one (``dataset.target=image`` makes the target
  the image itself, so the target is the clean image).

Each purpose draws from its own stream per seed (fa_bench.seeding: "activation_noise", "input_noise"):
seed-stacked, seed s's slice comes from seed s's stream with the shape its own run draws, so a
stacked seed sees exactly the noise of its unstacked run; and turning one kind of noise on never
shifts the other's draws, the rule's, or the batch order.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from fa_bench.seeding import DeviceStreams

PURPOSES = ("activation_noise", "input_noise")


class TrainingNoise:
    """``activations``/``inputs``: the two stds (None or 0: off). ``seeds``: the run's seeds; ``stacked``:
    tensors carry them along their leading axis. A TrainingNoise with both off is a no-op."""

    def __init__(self, activations: float | None = None, inputs: float | None = None, seeds=(0,),
                 stacked: bool = False):
        self.activations = float(activations or 0.0)
        self.inputs = float(inputs or 0.0)
        self.seeds = [int(s) for s in seeds]
        self.stacked = bool(stacked)
        if not self.stacked and len(self.seeds) != 1:
            raise ValueError(f"an unstacked run has one seed, got {self.seeds}")
        self.streams = {p: [DeviceStreams(s, p) for s in self.seeds] for p in PURPOSES}
        self.active = False
        self.handles: list = []

    @classmethod
    def from_config(cls, cfg, seeds, stacked: bool) -> TrainingNoise:
        node = cfg.get("noise") or {}
        return cls(node.get("activations"), cfg.dataset.get("input_noise"), seeds, stacked)

    @property
    def enabled(self) -> bool:
        return bool(self.activations or self.inputs)

    def attach(self, model):
        """Hook the inputs of every converted layer but the first (the hidden activities)."""
        from fa_bench.convert import converted_layers

        for h in self.handles:
            h.remove()
        self.handles = []
        if self.activations:
            for _, layer in converted_layers(model)[1:]:
                self.handles.append(layer.register_forward_pre_hook(self._hook))
        return self

    def _draw(self, purpose: str, x: torch.Tensor) -> torch.Tensor:
        streams = self.streams[purpose]
        if not self.stacked:
            return torch.randn(x.shape, generator=streams[0](x.device), device=x.device, dtype=x.dtype)
        if x.shape[0] != len(streams):
            raise ValueError(f"a seed-stacked tensor of shape {tuple(x.shape)} for {len(streams)} seeds")
        return torch.stack([torch.randn(x.shape[1:], generator=s(x.device), device=x.device, dtype=x.dtype)
                            for s in streams])

    def _hook(self, module, args):
        if not self.active:
            return None
        x = args[0]
        return (x + self.activations * self._draw("activation_noise", x), *args[1:])

    def noisy_input(self, x: torch.Tensor) -> torch.Tensor:
        """The training batch's input with input noise (a new tensor; ``x`` itself is left clean)."""
        if not self.inputs:
            return x
        return x + self.inputs * self._draw("input_noise", x)

    @contextmanager
    def training(self):
        """Activation noise is live only inside this block (one training step)."""
        self.active = True
        try:
            yield
        finally:
            self.active = False

    def state(self) -> dict:
        return {p: [s.get_state() for s in streams] for p, streams in self.streams.items()}

    def load_state(self, state: dict | None):
        for p, states in (state or {}).items():
            for s, st in zip(self.streams[p], states):
                s.set_state(st)
