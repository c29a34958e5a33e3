"""Learned feedback (Lansdell, Prakash & Kording, ICLR 2020): B regressed onto a gradient estimate.

Two registered rules share one engine:

- ``np_feedback``: feedback alignment whose B is learned from node-perturbation estimates λ̂ (L §2.3-2.4);
- ``sg``: the same regression fitted to the true gradient λ = ∂L/∂h (L Table 2's "SG": synthetic gradients
  in the paper's form g = Bᵀẽ, not Jaderberg's g(h)).

Shapes and conventions (fa_bench's, not the paper's). A converted layer computes a = W h + b with W of
shape (out, in) and sends ``grad_out @ B`` to its input, so our B has W's shape and is the paper's B^{i+1}
for the layer whose *input* is the paper's h^i. The paper's g = (B^{i+1})ᵀẽ^{i+1} is our row-vector
``ẽ @ B`` (``layer.propagate(ẽ, B)``) and B → W means exactly that: ẽ @ W = ∂L/∂h for the true error.

How the unclear passages were read:

- **Loss per example.** λ̂, ẽ and λ are all gradients of *one example's* loss L_n (the authors'
  "CorrectBatch" code: per-example losses, baseline = that example's noiseless loss). W's gradient is
  the batch *mean* per seed, as in every fa_bench rule (the paper's code sums the batch; the learning
  rate absorbs the factor N). The grad_out the backward delivers is ∂(mean L)/∂a = ẽ/N, so the
  regression multiplies it by N (per seed: N is the batch axis of the per-example losses).
- **1/c vs 1/c².** Eq. 2 writes λ̂ = (L̃ − L) ξ / c with ξ ~ N(0, I) and noise c·ξ. We draw the actual
  noise ζ = c·ξ (std ``sigma`` = c) and use λ̂ = (L̃ − L) ζ / c², the same quantity (the authors' code
  divides by ``var_xi`` twice). To first order E[λ̂ | x, y] = ∂L/∂h.
- **Where the noise goes.** One noisy, no-grad pass on the same batch (same dropout masks), with noise
  after the nonlinearity of *every* hidden layer at once, so it propagates upward (L §2.2; the code's
  ``h + xi``). Generically: noise is added to the *input* of every converted layer except the first
  (module order), which is the previous hidden layer's activity h; the output layer's output gets none.
  λ̂ for a layer's B is that noise times the loss change, i.e. the estimate of ∂L/∂(its input).
- **Which layers learn B.** All but the first converted layer: the first one's B would only send an
  error to the data, so it is never used and never learned (L: two matrices in 784-50-20-10).
- **Regression (eq. 3).** B = argmin E‖ẽ B − λ̂‖². ``solver=sgd``: one step per minibatch,
  B ← B − η_B Σ_n ẽ_nᵀ(ẽ_n B − λ̂_n), summed (not averaged) over the batch as the paper's
  ΔB = −η_B Σ ẽ(Bᵀẽ − λ̂)ᵀ. ``solver=ridge``: the online ridge solution of eq. 18 as the authors'
  code does it, cumulative over *all* batches with no forgetting or 1/T: V ← V + ẽᵀẽ, S ← S + ẽᵀλ̂,
  B = V⁻¹S with V₀ = γI, S₀ = 0 (the paper's S·V⁻¹ in its transposed layout). V and S are buffers on
  the layer (``feedback_V``, ``feedback_S``), so state_dict and checkpoints hold them. Until the first
  update B is its random initial draw (``init``/``scale``, as fa).
- **Forgetting** (``forget`` = ρ, not in the paper; 1, the default, is the paper's cumulative sums).
  With ρ < 1 the data part of the sums decays by ρ per batch while the prior stays γI:
  V ← ρV + (1 − ρ)γI + ẽᵀẽ, S ← ρS + ẽᵀλ̂, i.e. V = γI + Σ_k ρ^(t−k) ẽ_kᵀẽ_k (recursive least
  squares with a forgetting factor, a window of ~1/(1 − ρ) batches). Why it exists: while W learns,
  the cumulative solution is a regression onto *every past* W, weighted by ẽᵀẽ, which is largest in
  the first, high-error batches; at Fig. 2's length the ridge B of the output layer (whose ẽ is the
  exact output error) moves *away* from the current W (results/lansdell_fig2/forget/NOTES.md).
- **ẽ.** ``form=layer``: ẽ is the synthetic error arriving at the layer's output pre-activation in the
  noiseless FA backward with the current B (L App. A: ẽ^i = ((B^{i+1})ᵀẽ^{i+1}) ∘ σ'), i.e. what the
  layer's backward receives. ``form=direct`` (Corollary 1, the DFA form used for the CNN): every hidden
  layer's B has shape (n_outputs, in_features), g = e_out @ B with e_out the output layer's error, and the
  backward is DFA's (dfa.py): each layer sends e_out @ B to its input. For a deep linear net B then
  converges to the product W_out ⋯ W_l.
- **Order within a step.** The noiseless pass (W's gradient through the *current* B, and ẽ), then the
  second pass (noisy or exact), then B's update in place. So W's gradient of this step uses the B of the
  previous step (B and W are updated "simultaneously", L §3).
- **Warm-up** (Fig. 2: 1000 iterations): the first ``warmup_steps`` calls of ``compute_gradients`` (counted
  in the buffer ``feedback_steps`` on the output layer, so a resumed run keeps counting) learn B but leave
  every parameter's ``.grad`` as it was (None after ``zero_grad``), so optimizers skip them and W stays.

Convolutions (L §4.3, the CIFAR CNN): ``form=direct`` only. A conv layer's B has shape
(n_outputs, C·H·W of one input example), the input as the layer receives it from the layer below (before
any padding the conv does itself), so B is a plain matrix from the output error to that input, as DFA's
conv feedback (dfa.py), and the regression is the same matrix regression on the flattened λ̂ (or λ):
g = e_out @ B, reshaped to the input. For a conv layer with explicit padding (reflect, or the uneven
'same' of an even kernel) the signal is zero-padded to the shape the layer's Function sees; F.pad's own
backward then takes the padded border off again, so the rows of B are the gradient of the unpadded input.
The noise of the noisy pass sits on that unpadded input, i.e. on the activity of the layer below (after
its pooling, where a pool sits between). With W fixed, Corollary 1's limit is then B_l → J_l, the
Jacobian of the output pre-activation with respect to the layer's input (for a linear conv net, the
product of the layers' linear maps). ``form=layer`` would need a regression on conv kernels; convert
refuses it on a convnet. Convolutions are not seed-stacked in fa_bench, so the conv path is unstacked.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F

from fa_bench.layers import EXACT_BACKPROP, FeedbackConv2d
from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback
from fa_bench.seeding import global_rng_state

SOLVERS = ("sgd", "ridge")
FORMS = ("layer", "direct")
SUMS_DTYPE = torch.float64  # the ridge solver's running sums V and S (see init_layer)


def is_conv(layer) -> bool:
    return isinstance(layer, FeedbackConv2d)


class LearnedFeedback(Rule):
    """The shared engine: FA (or DFA) backward with a B regressed onto ``regression_targets``."""

    uses_backward = True
    supports_conv = False  # the class default (form=layer); an instance with form=direct supports them
    conv_refusal = ("form=layer's feedback regression is written for fully connected layers (B·ẽ per "
                    "example); on convolutions use form=direct (Corollary 1, the paper's CNN)")
    options: ClassVar[dict] = {"init": "kaiming_uniform", "scale": None, "solver": "sgd", "lr_feedback": 5e-4,
                               "gamma": 0.1, "forget": 1.0, "form": "layer", "warmup_steps": 0}

    def __init__(self, **options):
        super().__init__(**options)
        if self.opts["solver"] not in SOLVERS:
            raise ValueError(f"rule {self.name!r}: unknown solver {self.opts['solver']!r}; valid: {', '.join(SOLVERS)}")
        if self.opts["form"] not in FORMS:
            raise ValueError(f"rule {self.name!r}: unknown form {self.opts['form']!r}; valid: {', '.join(FORMS)}")
        if int(self.opts["warmup_steps"]) < 0:
            raise ValueError(f"rule {self.name!r}: warmup_steps must be >= 0")
        if float(self.opts["gamma"]) <= 0 and self.opts["solver"] == "ridge":
            raise ValueError(f"rule {self.name!r}: ridge needs gamma > 0 (V₀ = γI must be invertible)")
        if not 0 < float(self.opts["forget"]) <= 1:
            raise ValueError(f"rule {self.name!r}: forget must be in (0, 1] (1: the paper's cumulative sums), "
                             f"got {self.opts['forget']!r}")
        if float(self.opts["forget"]) != 1 and self.opts["solver"] != "ridge":
            raise ValueError(f"rule {self.name!r}: forget applies to solver=ridge only (solver="
                             f"{self.opts['solver']!r} keeps no sums)")
        self.direct = self.opts["form"] == "direct"
        self.layerwise = not self.direct  # instance attribute: the probe's W-vs-B metrics need W's shape
        # the direct form sizes a conv layer's B by its input (convert measures it on one batch)
        self.supports_conv = self.needs_input_shapes = self.direct
        self._reset()

    def _reset(self):
        self.capturing = False
        self.errors: dict[int, torch.Tensor] = {}  # id(layer) -> grad_out of the noiseless backward
        self.error = None  # the output layer's error (form=direct)

    # --- set-up --------------------------------------------------------------------------------
    def bind(self, layers, seeds=None):
        super().bind(layers, seeds)
        self.first_layer = self.layers[0][1]
        self.learned = [layer for _, layer in self.layers[1:]]  # the first layer's B is never used
        self._reset()

    def feedback_shape(self, layer, input_shape=None):
        if self.direct and not layer.is_output:
            if is_conv(layer):
                if input_shape is None:
                    raise ValueError(f"{self.name} form=direct on a conv layer needs its input shape "
                                     f"(convert with example_input)")
                return (self.output_layer.weight.shape[-2], math.prod(input_shape))
            return (self.output_layer.weight.shape[-2], layer.weight.shape[-1])
        return tuple(layer.weight.shape)

    def init_layer(self, layer, generator, input_shape):
        shape = self.feedback_shape(layer, input_shape)
        if is_conv(layer):
            layer.np_input_shape = tuple(input_shape)  # the unpadded per-example input: λ̂'s shape
        set_feedback(layer, draw_feedback(shape, self.opts["init"], self.opts["scale"], generator), learn=False)
        like = layer.weight.detach()
        if self.opts["solver"] == "ridge" and layer is not self.layers[0][1]:
            # float64 sums: over the paper's 1 M batches a float32 V reaches ~5e7 (an ulp of 4), a batch's
            # increment is ~60, and S's smaller entries stop moving; B = S V⁻¹ then drifted away from W
            # (Fig. 4, c = 1e-2, seed 0: ‖W − B‖/‖W‖ 2.3 % at 560 k iterations, 12.5 % at 790 k)
            n = shape[0]
            layer.register_buffer("feedback_V", float(self.opts["gamma"]) * torch.eye(
                n, dtype=SUMS_DTYPE, device=like.device))
            layer.register_buffer("feedback_S", torch.zeros(shape, dtype=SUMS_DTYPE, device=like.device))
        if layer.is_output:
            layer.register_buffer("feedback_steps", torch.zeros((), dtype=torch.long, device=like.device))

    # --- the backward: FA (form=layer) or DFA (form=direct), capturing ẽ -------------------------
    def error_to_input(self, layer, grad_out, feedback, x):
        if self.capturing:
            self.errors[id(layer)] = grad_out.detach()
        if layer.is_output:
            self.error = grad_out.detach()
        if not self.direct or layer.is_output:
            return layer.propagate(grad_out, feedback, x)
        e = self.error
        if e is None:
            raise RuntimeError(f"{self.name} form=direct: a hidden layer ran its backward before the output layer")
        if is_conv(layer):
            if e.dim() != 2 or e.shape[0] != x.shape[0]:
                raise RuntimeError(f"{self.name} form=direct: output error {tuple(e.shape)} is not one vector "
                                   f"per example of the conv input {tuple(x.shape)}")
            g = (e @ feedback).view(x.shape[0], *layer.np_input_shape)
            if tuple(g.shape) != tuple(x.shape):  # explicit padding: F.pad's backward drops the border
                g = F.pad(g, layer._reversed_padding_repeated_twice)
            return g
        if e.shape[:-1] != x.shape[:-1]:
            raise RuntimeError(f"{self.name} form=direct: output error {tuple(e.shape)} does not match the input "
                               f"{tuple(x.shape)} of a hidden linear layer (one output error per example or position)")
        return e @ feedback

    def weight_grads(self, layer, grad_out, x):
        if self.capturing:
            self.errors[id(layer)] = grad_out.detach()
        return layer.local_grads(grad_out, x)

    # --- one step ----------------------------------------------------------------------------------
    _counted = None  # (the feedback_steps buffer, its version) when _steps was read or counted

    def steps_done(self) -> int:
        """The buffer's count, read from the device only when something else wrote it (a checkpoint
        load, a new buffer): a read per step would be a host sync per step on a GPU."""
        buf = self.output_layer.feedback_steps
        if self._counted is None or self._counted[0] is not buf or self._counted[1] != buf._version:
            self._steps, self._counted = int(buf.reshape(-1)[0]), (buf, buf._version)
        return self._steps

    def compute_gradients(self, model, x, target, loss_fn):
        warmup = int(self.opts["warmup_steps"])
        warm = warmup > 0 and self.steps_done() < warmup
        params = list(model.parameters())
        saved = [None if p.grad is None else p.grad.clone() for p in params] if warm else None
        same_masks = global_rng_state()
        self._reset()
        self.capturing = True
        try:
            out = model(x)
            per_example = loss_fn(out, target)
            per_example.mean(-1).sum().backward()
        finally:
            self.capturing = False
        if warm:  # W (and everything else) stays: its .grad is put back as it was
            for p, g in zip(params, saved):
                p.grad = g
        try:
            targets = self.regression_targets(model, x, target, loss_fn, per_example.detach(), same_masks)
            n = per_example.shape[-1]
            with torch.no_grad():
                for layer in self.learned:
                    src = self.output_layer if self.direct else layer
                    e, lam = self.errors.get(id(src)), targets.get(id(layer))
                    if e is None or lam is None:
                        continue  # nothing reached this layer
                    B = layer.feedback_weight
                    self.update_feedback(layer, (e * n).to(B.dtype), lam.to(B.dtype))
                done = self.steps_done()  # in step with the buffer before the add, so counting stays exact
                buf = self.output_layer.feedback_steps
                buf.add_(1)
                self._steps, self._counted = done + 1, (buf, buf._version)
        finally:
            self._reset()
        return per_example.detach(), out.detach()

    def update_feedback(self, layer, e, lam):
        """One solver step for ``layer.feedback_weight`` from per-example errors ``e`` (rows, B's dim 0)
        and targets ``lam`` (rows, B's dim 1). ``layer.local_grads(a, b)[0]`` is aᵀb summed over every
        row (seed-stacked: per seed), the layer's own primitive."""
        B = layer.feedback_weight
        if is_conv(layer):  # direct form: a plain matrix from e_out (N, n_out) to the flattened input
            self._update_matrix(layer, e, lam.reshape(lam.shape[0], -1))
            return
        if self.opts["solver"] == "sgd":
            residual = layer.propagate(e, B, lam) - lam  # ẽ B − λ̂, per example
            B.sub_(layer.local_grads(e, residual)[0], alpha=float(self.opts["lr_feedback"]))
        else:
            self._ridge_step(layer, _symmetric(layer.local_grads(e, e)[0]), layer.local_grads(e, lam)[0])

    def _update_matrix(self, layer, e, lam):
        """The same two solvers with B a matrix (n_out, D): rows e (N, n_out), targets lam (N, D)."""
        B = layer.feedback_weight
        if self.opts["solver"] == "sgd":
            B.sub_(e.t() @ (e @ B - lam), alpha=float(self.opts["lr_feedback"]))
        else:
            self._ridge_step(layer, _symmetric(e.t() @ e), e.t() @ lam)

    def _ridge_step(self, layer, gram, cross):
        """V ← ρV + (1 − ρ)γI + gram, S ← ρS + cross, B = V⁻¹S (ρ = ``forget``; 1: plain sums)."""
        V, S = layer.feedback_V, layer.feedback_S
        rho = float(self.opts["forget"])
        if rho != 1:
            V.mul_(rho).diagonal(dim1=-2, dim2=-1).add_((1 - rho) * float(self.opts["gamma"]))
            S.mul_(rho)
        V.add_(gram)
        S.add_(cross)
        layer.feedback_weight.copy_(_solve(V, S))

    def regression_targets(self, model, x, target, loss_fn, clean, same_masks):
        """{id(layer): the per-example target for ẽ @ B at every learned layer} (rows as the layer's input)."""
        raise NotImplementedError


@register
class NPFeedback(LearnedFeedback):
    """B regressed onto the node-perturbation estimate λ̂ = (L̃ − L)·ζ / c² (ζ the noise, std c = ``sigma``).

    L̃ is each example's loss in a second, no-grad pass with Gaussian noise of std c added to the input
    of every converted layer but the first (every hidden layer's output at once), L the same example's
    noiseless loss; the draws come from the rule's own stream ("np_feedback"), one per seed when
    seed-stacked. See the module docstring for every reading of the paper."""

    name = "np_feedback"
    random_stream = "np_feedback"
    options: ClassVar[dict] = {"sigma": 0.01}
    noisy = False

    def __init__(self, **options):
        super().__init__(**options)
        if not float(self.opts["sigma"]) > 0:
            raise ValueError(f"rule {self.name!r}: sigma must be > 0")
        self.noise: dict[int, torch.Tensor] = {}

    def forward(self, layer, x):
        if self.noisy and layer is not self.first_layer:
            zeta = self.random_tensor(
                lambda shape, g: torch.randn(shape, generator=g, device=g.device, dtype=x.dtype), x.shape, x.device)
            zeta.mul_(float(self.opts["sigma"]))
            self.noise[id(layer)] = zeta
            x = x + zeta
        return layer.run_rule(x, self)

    def regression_targets(self, model, x, target, loss_fn, clean, same_masks):
        self.noise = {}
        with torch.no_grad():
            same_masks()  # the noisy pass sees the noiseless pass's dropout masks
            self.noisy = True
            try:
                noisy = loss_fn(model(x), target)
            finally:
                self.noisy = False
            scale = (noisy - clean) / float(self.opts["sigma"]) ** 2  # per example: (N,) or (S, N)
            targets = {}
            for key, zeta in self.noise.items():
                targets[key] = zeta * scale.view(*scale.shape, *([1] * (zeta.dim() - scale.dim())))
        self.noise = {}
        return targets


@register
class SyntheticGradient(LearnedFeedback):
    """The same regression fitted to the true per-example gradient λ = ∂L_n/∂h of every learned layer's
    input (L Table 2's SG, g = Bᵀẽ): a second forward pass by exact backprop on the same batch (same
    dropout masks), whose per-example losses are summed and differentiated with respect to each learned
    layer's input. No noise; W still learns through the current B, as in np_feedback."""

    name = "sg"
    true_pass = False

    def forward(self, layer, x):
        if self.true_pass:
            if layer is not self.first_layer and x.requires_grad:
                self.inputs[id(layer)] = x
            return layer.run_rule(x, EXACT_BACKPROP)
        return layer.run_rule(x, self)

    def regression_targets(self, model, x, target, loss_fn, clean, same_masks):
        self.inputs: dict[int, torch.Tensor] = {}
        same_masks()
        self.true_pass = True
        try:
            with torch.enable_grad():
                loss = loss_fn(model(x), target).sum()  # examples (and seeds) are independent: per-example ∂
                keys = list(self.inputs)
                grads = torch.autograd.grad(loss, [self.inputs[k] for k in keys], allow_unused=True) if keys else []
        finally:
            self.true_pass = False
            self.inputs = {}
        return {k: g.detach() for k, g in zip(keys, grads) if g is not None}


def _solve(V: torch.Tensor, S: torch.Tensor) -> torch.Tensor:
    """V⁻¹S without the error check torch.linalg.solve makes, which reads LAPACK's status back from the
    device (a host sync per step on a GPU). V starts at γI and only gains Gram matrices, so it is
    symmetric positive definite and the check has nothing to find; the solve itself is the same."""
    return torch.linalg.solve_ex(V, S).result


def _symmetric(gram: torch.Tensor) -> torch.Tensor:
    """ẽᵀẽ made exactly symmetric: a BLAS kernel may round its two triangles differently, and V, the
    ridge system's matrix, is symmetric by definition ((G + Gᵀ)/2 is, bit for bit: addition commutes)."""
    return (gram + gram.transpose(-1, -2)) * 0.5  # a seed-stacked V is (S, n, n)
