"""Alignment probe: per-layer metrics (docs/contracts.md §4) measured without touching the training trajectory.

The probe runs its own forward/backward passes on a batch: one under the model's rule and one
under exact backprop, on the same forward pass (same dropout masks, same batch-norm statistics), or,
for a rule with a forward of its own (ifa, np_feedback, sg: ``shares_forward`` false), on a replay of it
with the same masks and buffers. On a chain (an MLP: fa_bench.chain) the passes are made by hand,
without autograd's graph, and equal autograd's (tests/test_chain.py).
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
from fa_bench.chain import ChainPass
from fa_bench.convert import converted_layers
from fa_bench.layers import LayerBackward, exact_backprop
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

    @property
    def shares_forward(self) -> bool:
        """Whether one forward pass can serve both backward passes: the rule's forward is plain
        ``run_rule`` (the layers' own affine map), so exact backprop's forward would compute the same
        graph, and the layers' backward switches to W when ``exact_bp`` is set (fa_bench.layers). Rules
        that act in their forward (noise, recorded passes) get a forward each."""
        return type(self.rule).forward is LayerBackward.forward

    def _backward(self, loss, exact: bool, retain: bool):
        """Teaching signal at each layer's output, and each layer's weight gradient, for one backward."""
        layers = [layer for _, layer in self.layers]
        for layer in layers:
            layer.record = {}
        try:
            with exact_backprop(layers, exact):
                grads = torch.autograd.grad(loss, [layer.weight for layer in layers], allow_unused=True,
                                            retain_graph=retain)
            deltas = [layer.record.get("delta") for layer in layers]
        finally:
            for layer in layers:
                layer.record = None
        return deltas, grads

    def _loss(self, x, target, exact: bool):
        with exact_backprop([layer for _, layer in self.layers], exact), torch.enable_grad():
            return self.loss_fn(self.model(x), target).mean(-1).sum()  # per seed, as training does

    def _autograd_signals(self, x, target, lead):
        """(deltas, grads) under the rule, then under exact backprop, on the same forward pass (same
        dropout masks, same batch statistics): one shared forward where it computes the same graph,
        else a second forward from the same random and buffer state."""
        with preserved_state(self.model) as restore:
            loss = self._loss(x, target, exact=False)
            d_rule, g_rule = self._backward(loss, exact=False, retain=self.shares_forward)
            if not self.shares_forward:  # replay the same masks; the shared graph must keep its saved B
                restore()
                loss = self._loss(x, target, exact=True)
            d_bp, g_bp = self._backward(loss, exact=True, retain=False)
        return [(dr, db, None if gr is None or gb is None else M.seed_angles(lead(gr), lead(gb)))
                for dr, db, gr, gb in zip(d_rule, d_bp, g_rule, g_bp)]

    def _chain_signals(self, chain, x, target, lead):
        """The same from the chain's hand-made passes (fa_bench.chain): one forward, no graph. Where the
        rule reports δᵀx for W (LayerBackward's weight_grads) and the batch is small against the layer,
        neither gradient is formed: the angle comes from the batch's Gram matrices
        (metrics.seed_outer_product_angles), a few N×N products where the gradients were two out×in ones."""
        n = x.shape[1] if self.stacked else x.shape[0]
        outer = type(self.rule).weight_grads is LayerBackward.weight_grads

        def by_gram(layer):
            # Gram matrices: N²·(in + 3·out) float64 multiply-adds; gradients: 2·N·in·out float32 ones plus
            # two float64 passes over in·out. Taken where the first is at most half the second's count.
            return outer and n * (layer.in_features + 3 * layer.out_features) <= layer.in_features * layer.out_features

        with preserved_state(self.model):
            signals = chain.teaching_signals(x, target, self.loss_fn, lambda layer: not by_gram(layer))
        rows = []
        for (_, layer), (inp, dr, db, gr, gb) in zip(self.layers, signals):
            if gr is not None and gb is not None:
                update = M.seed_angles(lead(gr), lead(gb))
            elif dr is not None and db is not None and by_gram(layer) and layer.weight.requires_grad:
                update = M.seed_outer_product_angles(lead(inp), lead(dr), lead(db))
            else:
                update = None
            rows.append((dr, db, update))
        return rows

    def _signals(self, x, target, lead):
        """Per layer: (δ under the rule, δ under exact backprop, update_angle per seed), each None where
        there is nothing to measure."""
        with torch.enable_grad():
            chain = ChainPass.of(self.model, self.rule, x) if self.shares_forward else None
        if chain is not None and [layer for _, layer in self.layers] == chain.layers:
            return self._chain_signals(chain, x, target, lead)
        return self._autograd_signals(x, target, lead)

    def measure(self, x, target) -> list[tuple[str, str, float]]:
        """Rows of (metric name, layer name, value) of an unstacked model."""
        return self.measure_seeds(x, target)[0]

    def measure_seeds(self, x, target) -> list[list[tuple[str, str, float]]]:
        """The rows of every seed (one list for an unstacked model).

        Every metric is a tensor over the seed axis (fa_bench.metrics' seed_* functions) and all of them
        come back to the host in one transfer at the end: no per-seed, per-metric reads."""
        lead = (lambda t: t) if self.stacked else (lambda t: t.unsqueeze(0))  # noqa: E731
        rule = self.rule
        layerwise = rule.has_feedback and rule.layerwise
        entries = []  # (metric, layer label or one label per seed, value tensor (S,), mask (S,) or None)
        for i, (name, layer) in enumerate(self.layers):
            W = layer.weight.detach()
            sign_w = torch.sign(W)
            flipped = self.flipped[name]
            flipped |= sign_w != self.init_sign[name]
            per_seed = lead(flipped)
            entries.append(("sign_flips", name, M.count_true(per_seed) / per_seed[0].numel(),
                            None))
            if not layerwise:
                continue
            rule.refresh(layer)  # B that follows W (usf, frsf, brsf) must match this W, not last step's
            angle, congruence, rel, neuron = M.seed_weight_metrics(lead(W), lead(layer.feedback_weight.detach()),
                                                                   lead(sign_w))
            entries += [("weight_angle", name, angle, None), ("sign_congruence", name, congruence, None),
                        ("rel_error", name, rel, None)]
            if i > 0:  # the first converted layer (module order) usually reads data, not hidden units
                entries.append(("neuron_angle", name, neuron.nanmean(1), None))
                units = [self.seed_units[s][name] for s in range(len(self.seeds))]
                if units[0]:
                    picked = neuron.gather(1, torch.tensor(units, device=neuron.device))
                    entries += [("neuron_angle", [f"{name}:{u[k]}" for u in units], picked[:, k], None)
                                for k in range(len(units[0]))]
        if rule.uses_backward:
            for i, ((name, layer), (dr, db, update)) in enumerate(zip(self.layers, self._signals(x, target, lead))):
                if dr is not None and db is not None:
                    angle, ratio, sent = M.seed_delta_metrics(lead(dr), lead(db))
                    entries += [("delta_angle", name, angle, sent), ("norm_ratio", name, ratio, sent)]
                if update is not None:
                    entries.append(("update_angle", name, update, None))
                feedback = self._feedback_angles(i, layer, dr, lead)
                if feedback is not None:
                    entries.append(("feedback_angle", name, feedback, None))
        return self._rows(entries)

    def _rows(self, entries) -> list[list[tuple[str, str, float]]]:
        S = len(self.seeds)
        if not entries:
            return [[] for _ in range(S)]
        ones = torch.ones(S, dtype=torch.bool, device=entries[0][2].device)
        table = torch.stack([torch.stack([v.double(), (ones if m is None else m).double()])
                             for _, _, v, m in entries]).tolist()  # the measurement's one host read
        rows = [[] for _ in range(S)]
        for (metric, label, _, _), (values, kept) in zip(entries, table):
            for s in range(S):
                if kept[s]:
                    rows[s].append((metric, label if isinstance(label, str) else label[s], values[s]))
        return rows

    def _feedback_angles(self, i, layer, delta, lead):
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
        return M.seed_angles(lead(sent), lead(ideal))
