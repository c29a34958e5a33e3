"""Backprop with noise on each layer's error signal (Moskovitz et al. 2018, §5.3, "BP + Noise")."""
from typing import ClassVar

import torch

from fa_bench.rules.base import register
from fa_bench.rules.bp import BP


@register
class BPNoise(BP):
    """Each converted layer learns from δ̃_l = δ_l + ξ_l, ξ_l ~ N(0, σ_l²), σ_l = rms(δ_l), δ_l its BP error.

    How §5.3 is read. The paper adds zero-mean normal noise "to the error signal" with "variance
    approximately equal to that of the BP gradients", and the angle to the true gradient then stays
    "at roughly 45°" "throughout training"; it calls the result "gradient noise that is centered on the
    BP gradient". Taken here as:

    - the error signal is δ_l = ∂J/∂u_l, the gradient at the layer's pre-activation (eqs. 2-3 call δ
      "the error signal"), i.e. the noise goes after f′, on what the layer itself learns from:
      ΔW_l ∝ δ̃_l x_{l-1}ᵀ, Δb_l ∝ Σ δ̃_l; every converted layer, the output layer (δ = e) included;
    - the noise does not travel down: each layer sends the exact BP signal δ_l·W_l to its input, so
      every layer's δ̃ is its own BP δ plus its own noise. Sending the noisy signal down instead would
      compound the noise with depth (≈ 60° two layers below the output, more further down), not the
      depth-independent 45° the paper reports;
    - "variance matched": σ_l² = mean(δ_l²) over the batch and the layer's units (and positions), per
      layer, per batch (per seed on a seed-stacked layer), computed on the device. Then
      E‖ξ‖² = ‖δ‖², so cos∠(δ̃, δ) → 1/√2 as the layer's batch grows: 45° ± O(1/√(batch × units)).
      ``noise_scale`` multiplies σ (1: the paper's setting).

    The probe's δ (``layer.record["delta"]``) is δ̃, the signal the layer learns from, so its
    ``delta_angle`` reads the ≈45° the paper plots. The noise comes from the rule's own stream,
    redrawn at every backward pass.
    """

    name = "bp_noise"
    random_stream = "bp_noise"
    options: ClassVar[dict] = {"noise_scale": 1.0}

    def __init__(self, **options):
        super().__init__(**options)
        if not self.opts["noise_scale"] >= 0:
            raise ValueError(f"rule {self.name!r}: noise_scale must be >= 0, got {self.opts['noise_scale']!r}")

    def noisy(self, layer, delta):
        dims = tuple(range(1 if self.seeds is not None else 0, delta.dim()))
        sigma = delta.pow(2).mean(dim=dims, keepdim=True).sqrt() * self.opts["noise_scale"]
        dtype = delta.dtype
        xi = self.random_tensor(lambda shape, g: torch.randn(shape, generator=g, device=g.device, dtype=dtype),
                                delta.shape, delta.device)
        return delta + sigma * xi

    def weight_grads(self, layer, grad_out, x):
        delta = self.noisy(layer, grad_out)
        if layer.record is not None:
            layer.record["delta"] = delta.detach()
        return layer.local_grads(delta, x)
