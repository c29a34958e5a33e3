"""Alignment probe: per-layer metrics (docs/contracts.md §4) measured without touching the training trajectory.

The probe runs its own forward/backward passes on a batch: one under the model's rule and one
under exact backprop, on the same forward pass (same dropout masks, same batch-norm statistics).
It restores every random stream and buffer afterwards, so a run with the probe gives the same
numbers as a run without it, and it never writes ``.grad``.

``update_angle`` compares the gradient the rule reports for W with the true gradient: the update
direction before the optimizer (exactly the update under plain SGD; momentum or Adam then reshape
both alike). A layer applied several times in one forward pass reports its last application's δ.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from fa_bench import metrics as M
from fa_bench.convert import converted_layers
from fa_bench.seeding import generator as seeded_generator
from fa_bench.seeding import global_rng_state


@contextmanager
def preserved_state(model: nn.Module):
    """Snapshot RNGs (global, CUDA, each rule's own) and buffers; yield a function that restores them."""
    rules = {id(layer.rule): layer.rule for _, layer in converted_layers(model)}.values()
    rule_states = [(r, r.rng_state()) for r in rules]
    restore_global = global_rng_state()
    buffers = [(b, b.detach().clone()) for b in model.buffers()]

    def restore():
        restore_global()
        for r, state in rule_states:
            r.set_rng_state(state)
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)

    try:
        yield restore
    finally:
        restore()


class AlignmentProbe:
    """Computes the layer metrics of one converted model; keeps the state that ``sign_flips`` needs.

    On a seed-stacked model (fa_bench.stacking) every tensor carries the seeds along its leading axis:
    ``measure_seeds`` gives each seed the rows its own run's probe would (units sampled from its own
    seed, metrics of its own slices); the passes run once for every seed."""

    def __init__(self, model: nn.Module, loss_fn, neuron_sample: int = 0, seed: int = 0):
        self.model = model
        self.loss_fn = loss_fn
        self.layers = converted_layers(model)
        self.rule = self.layers[0][1].rule
        self.seeds = self.rule.seeds if self.rule.seeds is not None else [seed]
        self.stacked = self.rule.seeds is not None
        self.init_sign = {n: torch.sign(l.weight.detach()).clone() for n, l in self.layers}
        self.flipped = {n: torch.zeros_like(l.weight, dtype=torch.bool) for n, l in self.layers}
        # a fixed random sample of hidden units per layer whose own neuron_angle is logged (Lillicrap Fig. 5a)
        self.seed_units = []
        for s in self.seeds:
            g = seeded_generator(s, "neuron_sample")
            self.seed_units.append({n: torch.randperm(l.weight.shape[-1], generator=g)[:neuron_sample].sort()
                                    .values.tolist() for n, l in self.layers})
        self.units = self.seed_units[0]

    def state(self) -> dict:
        """What sign_flips remembers (for a checkpoint)."""
        return {"init_sign": self.init_sign, "flipped": self.flipped}

    def load_state(self, state: dict):
        device = self.layers[0][1].weight.device
        self.init_sign = {n: t.to(device) for n, t in state["init_sign"].items()}
        self.flipped = {n: t.to(device) for n, t in state["flipped"].items()}

    def _signals(self, x, target, exact: bool):
        """Teaching signal at each layer's output, and each layer's weight gradient, for one pass."""
        for _, layer in self.layers:
            layer.record = {}
            layer.exact_bp = exact
        try:
            with torch.enable_grad():
                loss = self.loss_fn(self.model(x), target).mean(-1).sum()  # per seed, as training does
                weights = [layer.weight for _, layer in self.layers]
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
            deltas = [layer.record.get("delta") for _, layer in self.layers]
        finally:
            for _, layer in self.layers:
                layer.record = None
                layer.exact_bp = False
        return deltas, grads

    def measure(self, x, target) -> list[tuple[str, str, float]]:
        """Rows of (metric name, layer name, value) of an unstacked model."""
        return self.measure_seeds(x, target)[0]

    def measure_seeds(self, x, target) -> list[list[tuple[str, str, float]]]:
        """The rows of every seed (one list for an unstacked model)."""
        S = len(self.seeds)
        pick = (lambda t, s: t[s]) if self.stacked else (lambda t, s: t)  # noqa: E731
        rows = [[] for _ in range(S)]
        rule = self.rule
        for i, (name, layer) in enumerate(self.layers):
            W_all = layer.weight.detach()
            flipped = self.flipped[name]
            flipped |= torch.sign(W_all) != self.init_sign[name]
            if rule.has_feedback and rule.layerwise:
                rule.refresh(layer)  # B that follows W (usf, frsf, brsf) must match this W, not last step's
                # converted once here, not once per metric (the metrics' own casts are then no-ops)
                W_all, B_all = W_all.double(), layer.feedback_weight.detach().double()
            for s in range(S):
                rows[s].append(("sign_flips", name, float(pick(flipped, s).double().mean())))
                if not (rule.has_feedback and rule.layerwise):
                    continue
                W, B = pick(W_all, s), pick(B_all, s)
                rows[s] += [("weight_angle", name, M.angle(W, B)),
                            ("sign_congruence", name, M.sign_congruence(W, B)),
                            ("rel_error", name, M.rel_error(W, B))]
                if i > 0:  # the first converted layer (module order) usually reads data, not hidden units
                    angles = M.neuron_angles(W, B)
                    rows[s].append(("neuron_angle", name, float(angles.nanmean())))
                    rows[s] += [("neuron_angle", f"{name}:{j}", float(angles[j])) for j in self.seed_units[s][name]]
        if not rule.uses_backward:
            return rows
        with preserved_state(self.model) as restore:
            d_rule, g_rule = self._signals(x, target, exact=False)
            restore()
            d_bp, g_bp = self._signals(x, target, exact=True)
        for i, ((name, layer), dr_all, db_all, gr_all, gb_all) in enumerate(zip(self.layers, d_rule, d_bp, g_rule,
                                                                                  g_bp)):
            feedback = self._feedback_angles(i, layer, dr_all)
            for s in range(S):
                dr = None if dr_all is None else pick(dr_all, s)
                db = None if db_all is None else pick(db_all, s)
                # autograd hands zeros to a layer that nothing reaches (shallow's hidden layers): no signal
                if dr is not None and db is not None and bool(dr.any()):
                    rows[s] += [("delta_angle", name, M.batch_angle(dr, db)),
                                ("norm_ratio", name, M.norm_ratio(db, dr))]
                if gr_all is not None and gb_all is not None:
                    rows[s].append(("update_angle", name, M.angle(pick(gr_all, s), pick(gb_all, s))))
                if feedback is not None:
                    rows[s].append(("feedback_angle", name, feedback[s]))
        return rows

    def _feedback_angles(self, i, layer, delta):
        """Lansdell 2020's angle, per seed: between ẽ·B and ẽ·W for the same synthetic error ẽ, the
        signal the rule delivers to this layer's output (so B sends it down, W would have). Over the
        whole batch and unfolded, where the authors' code took the first example and folded it into
        [0°, 90°]. Fully connected layers with layer-wise feedback above the first (whose B, if any,
        only sends to the data)."""
        rule = self.rule
        if i == 0 or delta is None or not (rule.has_feedback and rule.layerwise) or not hasattr(layer, "in_features"):
            return None
        rule.refresh(layer)
        d = delta.double()
        sent = layer.propagate(d, layer.feedback_weight.detach().double(), None)
        ideal = layer.propagate(d, layer.weight.detach().double(), None)
        if not self.stacked:
            return [M.angle(sent, ideal)]
        return [M.angle(sent[s], ideal[s]) for s in range(len(self.seeds))]
