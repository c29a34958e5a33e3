"""Node perturbation (Williams 1992; Werfel, Xie & Seung 2005): Lillicrap's reinforcement-learning baseline."""
from typing import ClassVar

import torch

from fa_bench.chain import ChainPass
from fa_bench.rules.base import Rule, register
from fa_bench.seeding import global_rng_state


@register
class NodePerturbation(Rule):
    """Every weight learns from one scalar per example: the change in loss caused by unit noise.

    Each step runs the batch twice without autograd: clean, then with Gaussian noise ξ_l ~ N(0, σ²)
    added to every converted layer's pre-activations. With ΔL = L_noisy − L_clean per example,
    ĝ_l = (ΔL / σ²) ξ_l is an unbiased estimate of ∂L/∂a_l (to first order), and W_l receives
    ĝ_l · x_lᵀ with x_l the input the layer saw in the noisy pass. The reward ΔL is the only signal;
    no error vector travels anywhere. Both passes see the same dropout masks, so ΔL measures ξ alone.
    """

    name = "node_perturbation"
    has_feedback = False
    uses_backward = False
    options: ClassVar[dict] = {"sigma": 1e-3}
    random_stream = "node_perturbation"
    noisy = False  # set only inside compute_gradients, for its second pass

    def forward(self, layer, x):
        out = layer.affine(x, layer.weight, layer.bias)
        if self.noisy:
            noise = self.random_tensor(
                lambda shape, g: torch.randn(shape, generator=g, device=g.device, dtype=out.dtype), out.shape,
                out.device)
            noise.mul_(self.opts["sigma"])
            layer.__dict__["record_np"] = (x.detach(), noise)  # plain attribute: no nn.Module bookkeeping per step
            out = out + noise
        return out

    def compute_gradients(self, model, x, target, loss_fn):
        with torch.no_grad():
            # a chain (fa_bench.chain: Linear layers and elementwise activations) draws nothing from the
            # global stream, so it has no masks to repeat, and its passes skip nn.Module's call machinery
            chain = ChainPass.of(model, self, own_forward=True)
            forward = model if chain is None else chain.forward
            same_masks = global_rng_state() if chain is None else (lambda: None)
            self.noisy = False
            out = forward(x)
            clean = loss_fn(out, target)
            same_masks()
            self.noisy = True
            try:
                noisy = loss_fn(forward(x), target)
            finally:
                self.noisy = False
            # the per-example losses are (batch,), or (seeds, batch) on a seed-stacked model: the mean is
            # over the batch, per seed
            scale = (noisy - clean) / (self.opts["sigma"] ** 2 * clean.shape[-1])
            for _, layer in self.layers:
                inp, noise = layer.record_np
                g = noise * scale.view(*scale.shape, *([1] * (noise.dim() - scale.dim())))
                grad_w, grad_b = layer.local_grads(g, inp)
                _accumulate(layer.weight, grad_w)
                if layer.bias is not None:
                    _accumulate(layer.bias, grad_b)
                layer.__dict__["record_np"] = None
        return clean, out


def _accumulate(param, grad):
    if param.grad is None:
        param.grad = grad.clone()
    else:
        param.grad.add_(grad)
