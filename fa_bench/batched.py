"""Seed-batched MLP training: S seeds of one MLP trained in a single run, seeds as the leading dimension.

Every weight W_l is a tensor of shape (S, out, in), every feedback matrix B_l likewise, every bias (S, out);
the forward and backward passes are ``torch.baddbmm`` / ``torch.bmm`` written out by hand, so one step
costs one set of batched matrix products instead of S sets of small ones (and S times the Python and
kernel-launch overhead).

Seed s of a batched run is the unbatched fa_bench run of seed s: each seed's model is built and
converted by fa_bench's own builders (``build_model`` + ``convert``, with the seed's own generators for
W and B) and only then stacked, each seed shuffles the data with its own ``generator(seed, "order")``,
and the rules' algebra below is the one ``fa_bench.rules`` applies layer by layer. ``tests/test_batched.py``
checks the two agree number for number.

Only rules that are layer-local matrix rules on an MLP are supported (``SUPPORTED``); optimiser: SGD
with momentum and weight decay (torch.optim.SGD's update). Alignment metrics are not computed here:
run a seed through ``fa-run`` for those.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from fa_bench import metrics as M
from fa_bench.convert import convert, converted_layers, rule_of
from fa_bench.data import DataBundle
from fa_bench.losses import get_loss
from fa_bench.models import build_model
from fa_bench.records import MetricsWriter
from fa_bench.rules import draw_feedback
from fa_bench.seeding import generator
from fa_bench.trainer import _Window

SUPPORTED = ("bp", "fa", "dfa", "shallow", "usf", "frsf", "brsf", "matched")
_SIGN_RULES = ("usf", "frsf", "brsf")  # B = magnitude ∘ sign(W), rebuilt from W at every training forward

_ACTIVATIONS = {"linear": lambda a: a, "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu}
# f'(a) written from the activation's output h, in the same arithmetic as autograd's tanh_backward,
# sigmoid_backward and threshold_backward, so batched and unbatched runs round alike
_DERIVATIVES = {
    "linear": lambda g, h: g,
    "tanh": lambda g, h: g * (1 - h * h),
    "sigmoid": lambda g, h: g * (1 - h) * h,
    "relu": lambda g, h: g.masked_fill(h <= 0, 0),
}


class SeedBatchedMLP:
    """The parameters of S seeds of one converted MLP, and the rule's forward/backward on all at once."""

    def __init__(self, sizes, activation, rule, seeds, *, output_activation="linear", bias=True, init="default",
                 init_scale=None, bias_init_scale=None, rule_options=None, device="cpu"):
        if rule not in SUPPORTED:
            raise ValueError(f"seed batching supports the rules {', '.join(SUPPORTED)}; got {rule!r}")
        for name in (activation, output_activation):
            if name not in _ACTIVATIONS:
                raise ValueError(f"unknown activation {name!r}; valid: {', '.join(_ACTIVATIONS)}")
        if not seeds:
            raise ValueError("train at least one seed")
        self.rule, self.seeds, self.device = rule, [int(s) for s in seeds], torch.device(device)
        self.activation, self.output_activation = activation, output_activation
        rule_options = dict(rule_options or {})
        # each seed's model exactly as fa-run builds it (same generators, same draw order), then stacked
        layers_per_seed, rules = [], []
        for seed in self.seeds:
            model = build_model("mlp", seed=seed, sizes=list(sizes), hidden_activation=activation,
                                output_activation=output_activation, bias=bias, init=init, init_scale=init_scale,
                                bias_init_scale=bias_init_scale).to(self.device)
            convert(model, rule, seed=seed, **rule_options)
            layers_per_seed.append(converted_layers(model))
            rules.append(rule_of(model))
        self.names = [n for n, _ in layers_per_seed[0]]

        def stack(attr):
            if getattr(layers_per_seed[0][0][1], attr, None) is None:
                return None
            return [torch.stack([getattr(dict(ls)[n], attr) for ls in layers_per_seed]).detach().clone()
                    for n in self.names]

        self.W, self.b = stack("weight"), stack("bias")
        self.B = stack("feedback_weight")
        self.R = stack("feedback_magnitude")  # frsf's fixed |R|
        self.opts = rules[0].opts
        self.streams = None
        if rule == "brsf":  # R_t from each seed's own stream, as the unbatched rule draws it
            self.streams = [r.streams for r in rules]
        self.alive = torch.ones(len(self.seeds), dtype=torch.bool, device=self.device)
        self.any_dead = False
        self.momentum: dict[int, torch.Tensor] = {}

    # --- forward ------------------------------------------------------------------------------------
    def _affine(self, l, h):
        W, b = self.W[l], None if self.b is None else self.b[l]
        if h.dim() == 2:  # one input shared by every seed (evaluation): each seed's own F.linear
            return torch.stack([F.linear(h, W[s], None if b is None else b[s]) for s in range(W.shape[0])])
        if b is None:
            return torch.bmm(h, W.transpose(1, 2))
        return torch.baddbmm(b.unsqueeze(1), h, W.transpose(1, 2))

    def _hidden(self, a):
        return _ACTIVATIONS[self.activation](a)

    @torch.no_grad()
    def forward(self, x):
        """Outputs (S, N, n_out) for inputs (N, features) shared by every seed, or (S, N, features)."""
        h = x
        for l in range(len(self.W)):
            a = self._affine(l, h)
            h = self._hidden(a) if l < len(self.W) - 1 else _ACTIVATIONS[self.output_activation](a)
        return h

    def _feedback(self):
        """The B each layer's backward uses this step (sign rules rebuild it from the current W)."""
        if self.rule == "bp":
            return self.W
        if self.rule not in _SIGN_RULES:
            return self.B
        out = []
        for l, W in enumerate(self.W):
            if self.rule == "usf":  # magnitude 1: sign(W) itself
                out.append(torch.sign(W))
                continue
            if self.rule == "frsf":
                mag = self.R[l]
            else:
                shape = tuple(W.shape[1:])
                mag = torch.stack([draw_feedback(shape, self.opts["init"], self.opts["scale"], st(W.device)).abs()
                                   for st in self.streams]).to(W.dtype)
            out.append(mag * torch.sign(W))
        self.B = out  # what the unbatched layer's feedback_weight buffer shows after this pass
        return out

    # --- one step -----------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, xb, yb, loss_fn, lr, momentum=0.0, weight_decay=0.0):
        """Forward, the rule's gradients and an SGD step for a batch (S, N, ...) per seed.

        Returns the per-example losses (S, N) and outputs (S, N, n_out), on the device (no host sync)."""
        S, N = xb.shape[:2]
        L = len(self.W)
        B = self._feedback()  # read at forward time from the W this batch sees, as in the unbatched layers
        inputs, h = [], xb.reshape(S, N, -1)
        for l in range(L - 1):
            inputs.append(h)
            h = self._hidden(self._affine(l, h))
        inputs.append(h)
        a_out = self._affine(L - 1, h)
        # the loss (and the output nonlinearity) through autograd: any per-example loss works, and its
        # gradient is ∂(mean loss)/∂a_out per seed, exactly what the unbatched output layer receives
        with torch.enable_grad():
            a = a_out.detach().requires_grad_(True)
            out = _ACTIVATIONS[self.output_activation](a)
            per_example = loss_fn(out.reshape(S * N, *out.shape[2:]), yb.reshape(S * N, *yb.shape[2:])).view(S, N)
            (delta,) = torch.autograd.grad(per_example.mean(1).sum(), a)
        grads = self._backward(inputs, delta, B)
        self._sgd(grads, lr, momentum, weight_decay)
        return per_example.detach(), out.detach()

    def _backward(self, inputs, delta, B):
        """[(gW, gb, gB)] per layer (None where the rule gives the layer nothing)."""
        L = len(self.W)
        error = delta  # DFA broadcasts the output layer's teaching signal to every layer
        grads = [None] * L
        for l in reversed(range(L)):
            gW = torch.bmm(delta.transpose(1, 2), inputs[l])
            gb = delta.sum(1) if self.b is not None else None
            gB = None
            if self.rule == "matched":
                decay = self.opts["decay"]
                if decay:
                    gW = gW + decay * self.W[l]
                    gB = gW + decay * (self.B[l] - self.W[l])
                else:
                    gB = gW
            grads[l] = (gW, gb, gB)
            if l == 0 or self.rule == "shallow":  # shallow: the output layer sends nothing down
                break
            signal = torch.bmm(error if self.rule == "dfa" else delta, B[l])
            delta = _DERIVATIVES[self.activation](signal, inputs[l])
        return grads

    def _sgd(self, grads, lr, momentum, weight_decay):
        """torch.optim.SGD's update (dampening 0, no Nesterov) for each tensor that has a gradient."""
        for l, g in enumerate(grads):
            if g is None:
                continue
            for k, (p, grad) in enumerate(zip((self.W[l], None if self.b is None else self.b[l],
                                               self.B[l] if self.rule == "matched" else None), g)):
                if p is None or grad is None:
                    continue
                d = grad.add(p, alpha=weight_decay) if weight_decay else grad
                if momentum:
                    key = 3 * l + k
                    if key not in self.momentum:
                        self.momentum[key] = d.clone()
                    else:
                        self.momentum[key].mul_(momentum).add_(d)
                    d = self.momentum[key]
                if self.any_dead:  # a diverged seed keeps the parameters it had when it was stopped
                    d = torch.where(self.alive.view(-1, *[1] * (d.dim() - 1)), d, 0)
                p.add_(d, alpha=-lr)

    def stop(self, index: int):
        """Stop updating seed ``index`` (the others go on)."""
        self.alive[index] = False
        self.any_dead = True

    def state(self, index: int) -> dict[str, torch.Tensor]:
        """Seed ``index``'s tensors under the names the unbatched model's state_dict uses."""
        out = {}
        for l, name in enumerate(self.names):
            out[f"{name}.weight"] = self.W[l][index]
            if self.b is not None:
                out[f"{name}.bias"] = self.b[l][index]
            if self.B is not None and self.rule != "bp":
                out[f"{name}.feedback_weight"] = self.B[l][index]
            if self.R is not None:
                out[f"{name}.feedback_magnitude"] = self.R[l][index]
        return out


@dataclass
class SeedResult:
    """One seed's run: what ``fa_bench.trainer.train`` reports, plus its logged rows and final tensors."""

    seed: int
    status: str  # completed | diverged
    steps: int
    examples: int
    epochs_run: int
    rows: list = field(default_factory=list)  # (step, epoch, examples, split, name, layer, value)
    final: dict = field(default_factory=dict)  # 'split/name' -> last logged value
    state: dict = field(default_factory=dict)  # the seed's W, b, B under the unbatched state_dict names


def _evaluate(net, x, y, per_seed_data, loss_fn, task, batch_size, indices) -> dict[int, dict[str, float]]:
    """trainer.evaluate for each seed in ``indices``."""
    outs = torch.cat([net.forward(xb) for xb in x.split(batch_size, dim=1 if per_seed_data else 0)], dim=1)
    results = {}
    for s in indices:
        out, target = outs[s], y[s] if per_seed_data else y
        result = {"loss": float(loss_fn(out, target).mean())}
        if task == "regression":
            result["nse"] = M.nse(out, target)
        else:
            result["error"] = M.error(out, target)
            if out.shape[1] > 5:
                result["top5_error"] = M.top5_error(out, target)
        results[s] = result
    return results


def train_seeds(sizes, activation, rule, seeds, data: DataBundle | Sequence[DataBundle], loss="cross_entropy",
                lr=0.01, epochs=1, batch_size=64, *, momentum=0.0, weight_decay=0.0, max_steps=None,
                eval_every=500, eval_batch_size=10000, divergence_loss=1e6, shuffle=True, output_activation="linear",
                bias=True, init="default", init_scale=None, bias_init_scale=None, rule_options=None,
                writers: Sequence[MetricsWriter] | None = None) -> list[SeedResult]:
    """Train ``seeds`` of the MLP ``sizes`` under ``rule`` in one batched run; one SeedResult per seed.

    ``data``: one DataBundle every seed trains on, or one per seed (teachers drawn from the seed). The
    schedule is fa_bench.trainer.train's: test metrics at step 0, train-window and test metrics every
    ``eval_every`` steps and at the end; a seed whose window loss is non-finite or above
    ``divergence_loss`` is marked diverged there and stops, the others go on. ``writers`` (one
    MetricsWriter per seed) get the same rows metrics.csv would.
    """
    loss_fn = get_loss(loss) if isinstance(loss, str) else loss
    S = len(seeds)
    per_seed_data = not isinstance(data, DataBundle)
    bundles = list(data) if per_seed_data else [data]
    if per_seed_data and len(bundles) != S:
        raise ValueError(f"{len(bundles)} data sets for {S} seeds")
    first = bundles[0]
    device = first.x_train.device
    if per_seed_data:
        x_train = torch.stack([b.x_train.flatten(1) for b in bundles])
        y_train = torch.stack([b.y_train for b in bundles])
        x_test = torch.stack([b.x_test.flatten(1) for b in bundles])
        y_test = torch.stack([b.y_test for b in bundles])
    else:
        x_train, y_train = first.x_train.flatten(1), first.y_train
        x_test, y_test = first.x_test.flatten(1), first.y_test
    net = SeedBatchedMLP(sizes, activation, rule, seeds, output_activation=output_activation, bias=bias, init=init,
                         init_scale=init_scale, bias_init_scale=bias_init_scale, rule_options=rule_options,
                         device=device)
    writers = list(writers) if writers is not None else [MetricsWriter(None) for _ in seeds]
    results = [SeedResult(int(s), "completed", 0, 0, 0) for s in seeds]
    orders = [generator(int(s), "order") for s in seeds]
    seed_rows = torch.arange(S, device=device).unsqueeze(1)
    n_train = x_train.shape[-2]
    total = math.ceil(n_train / batch_size) * epochs
    if max_steps is not None:
        total = min(total, max_steps)
    window = _Window(first.task)
    step = examples = epoch = 0
    running = list(range(S))

    def log(s, split, name, value):
        value = float(value)
        results[s].rows.append((step, epoch, examples, split, name, "", value))
        writers[s].log(step, epoch, examples, split, name, value)

    def log_eval():
        stopped = []
        if window.n:
            summaries = window.summaries()
            for s in running:
                for name, value in summaries[s].items():
                    log(s, "train", name, value)
                if not (math.isfinite(summaries[s]["loss"]) and summaries[s]["loss"] < divergence_loss):
                    stopped.append(s)
            window.reset()
        for s, metrics in _evaluate(net, x_test, y_test, per_seed_data, loss_fn, first.task, eval_batch_size,
                                    running).items():
            for name, value in metrics.items():
                log(s, "test", name, value)
        for s in running:
            writers[s].flush()
        for s in stopped:
            net.stop(s)
            results[s].status = "diverged"
            results[s].steps, results[s].examples, results[s].epochs_run = step, examples, epoch + 1
            running.remove(s)

    log_eval()
    while step < total and running:
        # each seed's epoch order from its own generator, drawn as fa_bench.data.batches draws it
        if shuffle:
            order = torch.stack([torch.randperm(n_train, generator=g, device="cpu") for g in orders]).to(device)
        else:
            order = torch.arange(n_train, device=device).expand(S, -1)
        for start in range(0, n_train, batch_size):
            idx = order[:, start:start + batch_size]
            if per_seed_data:
                xb, yb = x_train[seed_rows, idx], y_train[seed_rows, idx]
            else:
                xb, yb = x_train[idx], y_train[idx]
            per_example, out = net.step(xb, yb, loss_fn, lr, momentum, weight_decay)
            window.add_seeds(per_example, out, yb)
            step += 1
            examples += idx.shape[1]
            if step % eval_every == 0 or step == total:
                log_eval()
                if not running or step == total:
                    break
        epoch += 1
    for s in running:
        results[s].steps, results[s].examples, results[s].epochs_run = step, examples, epoch
    for s, result in enumerate(results):
        result.final = writers[s].final()
        result.state = {k: v.detach().clone() for k, v in net.state(s).items()}
    return results
