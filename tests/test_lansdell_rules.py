"""Lansdell, Prakash & Kording (ICLR 2020): feedback learned by node perturbation (np_feedback) and from the
true gradient (sg). The tests check the paper's mathematics by value, in float64:

- the estimate λ̂ is unbiased for ∂L/∂h (so its 1/c² scaling and per-example baseline are right);
- Theorem 1 (one hidden layer, tanh) and Theorem 2 (deep linear): with W fixed and small c, B → W, for both
  solvers; Corollary 1 (form=direct, deep linear): B_l → W_out ⋯ W_l;
- controls that must NOT converge: the estimate decorrelated from the example (shuffled) or mis-scaled;
- sg (no noise) converges to W to high precision;
- W learns through the current B (fa's backward, or dfa's for form=direct), warm-up freezes W but not B,
  the first layer's B never moves, the ridge state is saved and resumes, and seed stacking keeps each
  seed's own solver.
"""
from __future__ import annotations

import copy
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fa_bench
from fa_bench import RULES, converted_layers
from fa_bench.stacking import seed_axis_loss, stack_models


def sse(out, target):
    return 0.5 * ((out - target) ** 2).flatten(1).sum(1)


def mlp(sizes, act=nn.Tanh, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).double()


def rule_of(model):
    return converted_layers(model)[0][1].rule


def layers_of(model):
    return [layer for _, layer in converted_layers(model)]


def rel_error(W, B):
    return ((W - B).norm() / W.norm()).item()


def batches(sizes, n_batches, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        yield (torch.randn(n, sizes[0], generator=g, dtype=torch.float64),
               torch.randn(n, sizes[-1], generator=g, dtype=torch.float64))


def train_feedback(model, sizes, n_batches, n, lr_schedule=None):
    """compute_gradients over fresh batches with W fixed (no optimizer step): only B moves."""
    rule = rule_of(model)
    W0 = [layer.weight.detach().clone() for layer in layers_of(model)]
    for i, (x, t) in enumerate(batches(sizes, n_batches, n)):
        if lr_schedule is not None and i in lr_schedule:
            rule.opts["lr_feedback"] = lr_schedule[i]
        rule.compute_gradients(model, x, t, sse)
        for p in model.parameters():
            p.grad = None
    assert all(torch.equal(w, layer.weight) for w, layer in zip(W0, layers_of(model)))


def errors(model):
    return [rel_error(layer.weight, layer.feedback_weight) for layer in layers_of(model)[1:]]


def true_input_grads(plain, x, t):
    """Autograd's ∂L_n/∂h per example at the input of every Linear but the first (the plain net)."""
    hs, h = [], x.clone().requires_grad_(True)
    for module in copy.deepcopy(plain):
        if isinstance(module, nn.Linear):
            hs.append(h)
        h = module(h)
    return torch.autograd.grad(sse(h, t).sum(), hs[1:])


# ------------------------------------------------------------------------------------------------
# the estimate
# ------------------------------------------------------------------------------------------------
def test_estimate_is_unbiased_for_the_per_example_gradient():
    # one example repeated: the mean of λ̂ over the noise draws is ∂L/∂h of that example, at every hidden
    # layer (the input of every converted layer but the first), at the right scale (1/c², per example)
    plain = mlp([4, 6, 5, 3], seed=3)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, 4, generator=g, dtype=torch.float64)
    t1 = torch.randn(1, 3, generator=g, dtype=torch.float64)
    want = true_input_grads(plain, x1, t1)
    model = fa_bench.convert(copy.deepcopy(plain), "np_feedback", sigma=1e-3, seed=2)
    rule = rule_of(model)
    x, t = x1.repeat(40000, 1), t1.repeat(40000, 1)
    clean = sse(model(x), t).detach()
    targets = rule.regression_targets(model, x, t, sse, clean, lambda: None)
    layers = layers_of(model)
    assert set(targets) == {id(layer) for layer in layers[1:]}  # no noise on the data, none on the output
    for layer, grad in zip(layers[1:], want):
        est = targets[id(layer)].mean(0)
        cos = F.cosine_similarity(est, grad[0], dim=0).item()
        ratio = (est.norm() / grad.norm()).item()
        assert cos > 0.98 and 0.9 < ratio < 1.1, (cos, ratio)


# ------------------------------------------------------------------------------------------------
# Theorems 1 and 2, Corollary 1: with W fixed and c small, B → W
# ------------------------------------------------------------------------------------------------
THEOREM1 = [5, 8, 3]  # one tanh hidden layer
THEOREM2 = [6, 3, 4, 5]  # deep linear; learned layers no wider than the output, so ẽẽᵀ is full rank (A3)


@pytest.mark.parametrize("solver", ["sgd", "ridge"])
def test_theorem1_one_hidden_layer_feedback_converges_to_weight(solver):
    model = fa_bench.convert(mlp(THEOREM1), "np_feedback", sigma=1e-3, solver=solver, lr_feedback=2e-5)
    first_B = layers_of(model)[0].feedback_weight.clone()
    start = errors(model)
    train_feedback(model, THEOREM1, *((40, 2000) if solver == "ridge" else (150, 2000)))
    assert start[0] > 0.5  # a random B: far from W before
    assert errors(model)[0] < 0.05, errors(model)
    assert torch.equal(layers_of(model)[0].feedback_weight, first_B)  # the first layer's B is never learned
    assert not hasattr(layers_of(model)[0], "feedback_V")


@pytest.mark.parametrize("solver", ["sgd", "ridge"])
def test_theorem2_deep_linear_feedback_converges_to_weight(solver):
    model = fa_bench.convert(mlp(THEOREM2, act=nn.Identity), "np_feedback", sigma=1e-3, solver=solver,
                             lr_feedback=1e-4)
    first_B = layers_of(model)[0].feedback_weight.clone()
    if solver == "ridge":
        train_feedback(model, THEOREM2, 500, 1000)
    else:  # Robbins-Monro: a smaller step once B is near its target
        train_feedback(model, THEOREM2, 600, 1000, lr_schedule={300: 1.5e-5})
    assert max(errors(model)) < 0.05, errors(model)
    assert torch.equal(layers_of(model)[0].feedback_weight, first_B)


def test_corollary1_direct_form_converges_to_the_weight_product():
    model = fa_bench.convert(mlp(THEOREM2, act=nn.Identity), "np_feedback", sigma=1e-3, solver="ridge",
                             form="direct")
    l0, l1, l2 = layers_of(model)
    assert l1.feedback_weight.shape == (5, 3) and l2.feedback_weight.shape == (5, 4)
    train_feedback(model, THEOREM2, 150, 1000)
    assert rel_error(l2.weight @ l1.weight, l1.feedback_weight) < 0.05
    assert rel_error(l2.weight, l2.feedback_weight) < 0.05


# controls: the same runs must fail when the target is wrong
def shuffled(targets):  # λ̂ of another example: no correlation with this example's error
    perm = torch.randperm(next(iter(targets.values())).shape[0], generator=torch.Generator().manual_seed(0))
    return {k: v[perm] for k, v in targets.items()}


def one_over_c(targets, c=1e-3):  # the literal (L̃ − L)·ζ/c with ζ of std c: too small by a factor c
    return {k: v * c for k, v in targets.items()}


def sign_flipped(targets):
    return {k: -v for k, v in targets.items()}


@pytest.mark.parametrize("wrong", [shuffled, one_over_c, sign_flipped])
@pytest.mark.parametrize("solver", ["sgd", "ridge"])
def test_wrong_regression_target_does_not_converge(wrong, solver, monkeypatch):
    model = fa_bench.convert(mlp(THEOREM1), "np_feedback", sigma=1e-3, solver=solver, lr_feedback=2e-5)
    rule = rule_of(model)
    right = rule.regression_targets
    monkeypatch.setattr(rule, "regression_targets", lambda *a: wrong(right(*a)))
    train_feedback(model, THEOREM1, *((40, 2000) if solver == "ridge" else (150, 2000)))
    assert errors(model)[0] > 0.5, errors(model)


# ------------------------------------------------------------------------------------------------
# sg: the same regression on the true gradient, no noise
# ------------------------------------------------------------------------------------------------
def test_sg_sgd_converges_to_weight_exactly():
    model = fa_bench.convert(mlp(THEOREM2, act=nn.Identity), "sg", solver="sgd", lr_feedback=2e-3)
    train_feedback(model, THEOREM2, 300, 200)
    assert max(errors(model)) < 1e-3, errors(model)


def test_sg_ridge_top_layer_is_exact_up_to_gamma():
    # ẽ = e at the top: after one batch B = (eᵀe + γI)⁻¹eᵀe W, i.e. W up to the ridge shrinkage
    model = fa_bench.convert(mlp(THEOREM1), "sg", solver="ridge", gamma=0.1)
    train_feedback(model, THEOREM1, 20, 200)
    assert errors(model)[0] < 1e-3, errors(model)
    deep = fa_bench.convert(mlp(THEOREM2, act=nn.Identity), "sg", solver="ridge")
    train_feedback(deep, THEOREM2, 300, 100)  # the lower layer remembers its first (random-B) batches: O(1/T)
    assert max(errors(deep)) < 0.03, errors(deep)


def test_ridge_forgetting_is_the_discounted_sums():
    # the top layer's ẽ is the output error and sg's λ the true gradient: with W fixed neither depends on
    # B, so a ρ = 1 twin's per-batch increments G_k, C_k give the hand computation
    # V = γI + Σ_k ρ^(t−k) G_k, S = Σ_k ρ^(t−k) C_k, B = V⁻¹S
    rho, gamma = 0.7, 0.1
    plain = mlp([5, 6, 3])
    kept = fa_bench.convert(copy.deepcopy(plain), "sg", solver="ridge", gamma=gamma)
    forgot = fa_bench.convert(copy.deepcopy(plain), "sg", solver="ridge", gamma=gamma, forget=rho)
    top_kept, top_forgot = layers_of(kept)[-1], layers_of(forgot)[-1]
    eye = gamma * torch.eye(3, dtype=torch.float64)
    increments, V_prev, S_prev = [], eye.clone(), torch.zeros_like(top_kept.feedback_S)
    for x, t in batches([5, 3], 4, 6):
        for model in (kept, forgot):
            rule_of(model).compute_gradients(model, x, t, sse)
        increments.append((top_kept.feedback_V - V_prev, top_kept.feedback_S - S_prev))
        V_prev, S_prev = top_kept.feedback_V.clone(), top_kept.feedback_S.clone()
    t = len(increments)
    V = eye + sum(rho ** (t - 1 - k) * G for k, (G, _) in enumerate(increments))
    S = sum(rho ** (t - 1 - k) * C for k, (_, C) in enumerate(increments))
    torch.testing.assert_close(top_forgot.feedback_V, V, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(top_forgot.feedback_S, S, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(top_forgot.feedback_weight, torch.linalg.solve(V, S), rtol=1e-10, atol=1e-12)
    assert not torch.allclose(top_forgot.feedback_weight, top_kept.feedback_weight, rtol=1e-3, atol=0)


def test_ridge_forgetting_follows_a_weight_that_moved():
    # why forget exists: the cumulative ridge B regresses onto every past W, so after W jumps it sits
    # between the old and the new W; with a window of ~10 batches it follows the new W
    sizes = [5, 6, 3]
    found = {}
    for rho in (1.0, 0.9):
        model = fa_bench.convert(mlp(sizes), "sg", solver="ridge", forget=rho)
        top = layers_of(model)[-1]
        train_feedback(model, sizes, 100, 50)
        with torch.no_grad():
            top.weight.copy_(-top.weight)
        train_feedback(model, sizes, 200, 50)
        found[rho] = rel_error(top.weight, top.feedback_weight)
    assert found[1.0] > 0.5, found  # 100 of 300 batches on −W: B ≈ W/3, rel. error ≈ 2/3
    assert found[0.9] < 1e-3, found


def test_sg_regresses_onto_the_true_gradient():
    # sg's targets are autograd's ∂L_n/∂h per example, at every learned layer's input
    plain = mlp([4, 6, 5, 3], seed=3)
    x, t = next(batches([4, 3], 1, 7))
    model = fa_bench.convert(copy.deepcopy(plain), "sg")
    targets = rule_of(model).regression_targets(model, x, t, sse, None, lambda: None)
    want = true_input_grads(plain, x, t)
    for layer, grad in zip(layers_of(model)[1:], want):
        torch.testing.assert_close(targets[id(layer)], grad, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------
# W's learning, warm-up, state
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("rule,form,twin", [("np_feedback", "layer", "fa"), ("sg", "layer", "fa"),
                                            ("np_feedback", "direct", "dfa")])
def test_weights_learn_through_the_current_feedback(rule, form, twin):
    plain = mlp([6, 7, 5, 4])
    x, t = next(batches([6, 4], 1, 9))
    model = fa_bench.convert(copy.deepcopy(plain), rule, form=form, solver="ridge", seed=3)
    ref = fa_bench.convert(copy.deepcopy(plain), twin, seed=5)
    with torch.no_grad():
        for a, b in zip(layers_of(model), layers_of(ref)):
            b.feedback_weight.copy_(a.feedback_weight)
    B_before = [layer.feedback_weight.clone() for layer in layers_of(model)]
    rule_of(model).compute_gradients(model, x, t, sse)
    rule_of(ref).compute_gradients(ref, x, t, sse)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-12, msg=name)
    assert all(not torch.equal(b, layer.feedback_weight) for b, layer in zip(B_before[1:], layers_of(model)[1:]))


def test_warmup_freezes_weights_while_feedback_learns():
    model = fa_bench.convert(mlp([6, 7, 5, 4]), "np_feedback", warmup_steps=3, solver="ridge")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rule = rule_of(model)
    for step, (x, t) in enumerate(batches([6, 4], 5, 16)):
        W0 = [p.detach().clone() for p in model.parameters()]
        B0 = [layer.feedback_weight.clone() for layer in layers_of(model)]
        opt.zero_grad()
        rule.compute_gradients(model, x, t, sse)
        frozen = step < 3
        assert all((p.grad is None) == frozen for p in model.parameters()), step
        opt.step()
        assert all(torch.equal(a, p) == frozen for a, p in zip(W0, model.parameters())), step
        assert all(not torch.equal(b, layer.feedback_weight) for b, layer in zip(B0[1:], layers_of(model)[1:]))
        assert torch.equal(B0[0], layers_of(model)[0].feedback_weight)
    assert int(model.state_dict()["4.feedback_steps"]) == 5


def test_the_warmup_count_follows_a_state_loaded_into_the_same_model():
    # steps_done keeps a host-side copy of the feedback_steps buffer (no device read per step); a
    # load_state_dict into the same model, with a count from before the warm-up ended, must be seen
    model = fa_bench.convert(mlp([6, 7, 5, 4]), "np_feedback", warmup_steps=3, solver="ridge")
    rule = rule_of(model)
    data = list(batches([6, 4], 6, 16))
    early = None
    for i, (x, t) in enumerate(data[:4]):
        if i == 1:
            early = {k: v.clone() for k, v in model.state_dict().items()}  # count 1: still warming up
        model.zero_grad(set_to_none=True)
        rule.compute_gradients(model, x, t, sse)
    assert rule.steps_done() == 4 and all(p.grad is not None for p in model.parameters())
    model.load_state_dict(early)
    assert rule.steps_done() == 1
    for x, t in data[4:]:  # steps 1 and 2 of the warm-up again: W gets no gradient
        model.zero_grad(set_to_none=True)
        rule.compute_gradients(model, x, t, sse)
        assert all(p.grad is None for p in model.parameters())
    assert rule.steps_done() == 3 and int(model.state_dict()["4.feedback_steps"]) == 3


def test_ridge_state_is_saved_and_resumes():
    sizes = [6, 7, 5, 4]
    data = list(batches(sizes, 8, 16))
    straight = fa_bench.convert(mlp(sizes), "sg", solver="ridge", warmup_steps=6)
    half = fa_bench.convert(mlp(sizes), "sg", solver="ridge", warmup_steps=6)
    for i, (x, t) in enumerate(data):
        rule_of(straight).compute_gradients(straight, x, t, sse)
        if i < 4:
            rule_of(half).compute_gradients(half, x, t, sse)
    state = half.state_dict()
    assert {"2.feedback_V", "2.feedback_S", "4.feedback_V", "4.feedback_S", "4.feedback_steps"} <= set(state)
    resumed = fa_bench.convert(mlp(sizes), "sg", solver="ridge", warmup_steps=6, seed=9)
    resumed.load_state_dict(state)
    for x, t in data[4:]:
        rule_of(resumed).compute_gradients(resumed, x, t, sse)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=1e-12, atol=1e-12, msg=key)


@pytest.mark.parametrize("opts", [{"solver": "ridge", "form": "direct"}, {"solver": "sgd", "form": "layer"},
                                  {"solver": "ridge", "form": "layer", "forget": 0.8}])
def test_seed_stacked_solver_is_each_seeds_own(opts):
    sizes = [6, 7, 5, 4]
    seeds = [0, 3]
    # float64: in float32 the loss difference's rounding, divided by c², swamps the bmm-vs-mm comparison
    solos = [fa_bench.convert(mlp(sizes, seed=s), "np_feedback", seed=s, lr_feedback=1e-2, **opts)
             for s in seeds]
    stacked = stack_models([copy.deepcopy(m) for m in solos], seeds)
    data = [list(batches(sizes, 3, 8, seed=10 + s)) for s in seeds]
    for step in range(3):
        xs = [data[i][step][0] for i in range(2)]
        ts = [data[i][step][1] for i in range(2)]
        for m, x, t in zip(solos, xs, ts):
            rule_of(m).compute_gradients(m, x, t, sse)
        rule_of(stacked).compute_gradients(stacked, torch.stack(xs), torch.stack(ts), seed_axis_loss(sse))
    for i, m in enumerate(solos):
        for key, value in m.state_dict().items():
            torch.testing.assert_close(stacked.state_dict()[key][i], value, rtol=1e-8, atol=1e-10, msg=key)


def test_options_are_checked_and_convnets_refused():
    for bad in ({"solver": "adam"}, {"form": "sideways"}, {"sigma": 0.0}, {"solver": "ridge", "forget": 0.0},
                {"solver": "ridge", "forget": 1.5}, {"solver": "sgd", "forget": 0.9}):
        with pytest.raises(ValueError):
            fa_bench.convert(mlp([3, 4, 2]), "np_feedback", **bad)
    with pytest.raises(TypeError, match="sigma"):
        fa_bench.convert(mlp([3, 4, 2]), "sg", sigma=0.1)  # sg has no noise
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    for name in ("np_feedback", "sg"):
        assert RULES[name].uses_backward and not RULES[name].learns_feedback
        with pytest.raises(ValueError, match="fully connected"):
            fa_bench.convert(copy.deepcopy(conv), name)


def test_the_ridge_sums_keep_a_batch_after_a_million():
    # V and S are running sums over every batch (1 M at the paper's length): in float32, once V's entries
    # reach ~5e7 a batch's increment of ~60 is rounded to the ulp (4) or lost, and B = S V⁻¹ drifts;
    # float64 sums keep each batch's increment
    model = fa_bench.convert(mlp([6, 7, 5, 4]), "np_feedback", solver="ridge")
    layer = layers_of(model)[-1]
    assert layer.feedback_V.dtype == layer.feedback_S.dtype == torch.float64
    with torch.no_grad():
        layer.feedback_V.mul_(0).add_(torch.eye(4, dtype=torch.float64) * 5e7)
        layer.feedback_S.fill_(5e7 + 1)
    V0, S0 = layer.feedback_V.clone(), layer.feedback_S.clone()
    x, t = next(iter(batches([6, 4], 1, 16)))
    rule = rule_of(model)
    rule.compute_gradients(model, x, t, sse)
    added_V = layer.feedback_V - V0
    assert added_V.abs().max() > 0 and torch.all(added_V.diagonal() > 0)  # ẽᵀẽ's diagonal, every entry kept
    # what float32 sums would have kept of the same increments: at this size, a multiple of the ulp (4)
    lost = (V0.float() + added_V.float()).double() - V0
    assert not torch.allclose(lost, added_V, rtol=1e-3, atol=0)
    assert torch.isfinite(layer.feedback_weight).all()
