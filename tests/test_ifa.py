"""Indirect feedback alignment (Nøkland 2016, eq. 9) checked by value against hand computations.

Conventions as in test_rules.py: float64 nets, per-example losses whose mean is backpropagated (so e
carries 1/N), and B of shape (n_outputs, in_features) sending e·B to a layer's input (Nøkland's B is
our Bᵀ). With converted layers 0..L (L the output), the formulas checked are

    δa_0 = (e·B_1) ⊙ f'(a_0),   δa_k = (δa_{k-1}·W_kᵀ) ⊙ f'(a_k),   grad W_k = δa_kᵀ h_{k-1},   grad W_L = eᵀ h_{L-1}.
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

TIGHT = {"rtol": 1e-10, "atol": 1e-12}
ACTS = {"tanh": (nn.Tanh, lambda a: 1 - torch.tanh(a) ** 2, torch.tanh),
        "sigmoid": (nn.Sigmoid, lambda a: torch.sigmoid(a) * (1 - torch.sigmoid(a)), torch.sigmoid)}


def mlp(sizes, act="tanh", bias=True, seed=0, dropout=0.0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(ACTS[act][0]())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers).double()


def ce(out, target):
    return F.cross_entropy(out, target, reduction="none")


def batch(n=5, n_in=6, n_classes=4, seed=1, tokens=None):
    g = torch.Generator().manual_seed(seed)
    shape = (n, n_in) if tokens is None else (n, tokens, n_in)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    return x, torch.randint(0, n_classes, shape[:-1], generator=g)


def converted(model, rule, **opts):
    return fa_bench.convert(copy.deepcopy(model), rule, **opts)


def step(model, x, t, loss_fn=ce):
    """One compute_gradients; returns {param name: grad, 'input': grad of x}."""
    x = x.clone().requires_grad_(True)
    fa_bench.rule_of(model).compute_gradients(model, x, t, loss_fn)
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads["input"] = x.grad
    return grads


def output_error(plain, x, t, loss_fn=ce):
    """e = ∂(mean loss)/∂(output pre-activation), by autograd on the unconverted net."""
    out = plain(x).detach().requires_grad_(True)
    (e,) = torch.autograd.grad(loss_fn(out, t).mean(), out)
    return e


def hand_forward(layers, x, act):
    """Each layer's input h_{k-1} and pre-activation a_k, computed by hand."""
    h, inputs, pre = x, [], []
    for layer in layers:
        a = F.linear(h, layer.weight.detach(), None if layer.bias is None else layer.bias.detach())
        inputs.append(h)
        pre.append(a)
        h = ACTS[act][2](a)
    return inputs, pre


def hand_ifa_deltas(layers, e, pre, act):
    """Nøkland eq. 9: δa for every hidden layer (module order)."""
    fprime = ACTS[act][1]
    deltas = [(e @ layers[1].feedback_weight) * fprime(pre[0])]
    for k in range(1, len(layers) - 1):
        deltas.append((deltas[-1] @ layers[k].weight.detach().t()) * fprime(pre[k]))
    return deltas


def assert_close(got, want, what=""):
    torch.testing.assert_close(got, want, **TIGHT, msg=(lambda m: f"{what}: {m}") if what else None)


# ------------------------------------------------------------------------------------------------
# eq. 9 by hand
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("sizes", [[6, 7, 8, 4], [6, 7, 8, 9, 4]], ids=["2_hidden", "3_hidden"])
def test_ifa_hidden_updates_are_eq9_by_hand(sizes, act, bias):
    plain = mlp(sizes, act=act, bias=bias, seed=2)
    x, t = batch()
    model = converted(plain, "ifa", init="uniform", scale=0.3, seed=1)
    step(model, x, t)
    layers = [l for _, l in converted_layers(model)]
    e = output_error(plain, x, t)
    inputs, pre = hand_forward(layers, x, act)
    for k, delta in enumerate(hand_ifa_deltas(layers, e, pre, act)):
        assert_close(layers[k].weight.grad, delta.t() @ inputs[k], f"hidden layer {k} weight")
        if bias:
            assert_close(layers[k].bias.grad, delta.sum(0), f"hidden layer {k} bias")
    assert_close(layers[-1].weight.grad, e.t() @ inputs[-1], "output layer")


def test_ifa_output_layer_gets_the_backprop_gradient():
    plain = mlp([6, 7, 8, 9, 4], seed=3)
    x, t = batch()
    got = step(converted(plain, "ifa", seed=5), x, t)
    ref = copy.deepcopy(plain)
    ce(ref(x), t).mean().backward()
    assert_close(got["6.weight"], ref[6].weight.grad, "output weight")
    assert_close(got["6.bias"], ref[6].bias.grad, "output bias")
    # guard: the hidden layers do NOT get backprop's gradient
    assert not torch.allclose(got["2.weight"], ref[2].weight.grad, rtol=1e-3)


def test_ifa_with_one_hidden_layer_is_dfa():
    plain = mlp([6, 8, 4], seed=1)
    x, t = batch()
    ifa, dfa = step(converted(plain, "ifa", seed=9), x, t), step(converted(plain, "dfa", seed=9), x, t)
    assert set(ifa) == set(dfa)
    for name in dfa:  # the input signal too: layer 0 sends e·B_0 in both
        torch.testing.assert_close(ifa[name], dfa[name], rtol=0, atol=0, msg=name)


def test_ifa_shares_dfa_feedback_and_differs_from_dfa_above_the_first_hidden_layer():
    plain = mlp([6, 7, 8, 9, 4], seed=4)
    x, t = batch()
    ifa_model, dfa_model = converted(plain, "ifa", seed=3), converted(plain, "dfa", seed=3)
    for (n, a), (_, b) in zip(converted_layers(ifa_model), converted_layers(dfa_model)):
        assert torch.equal(a.feedback_weight, b.feedback_weight), n
    ifa, dfa = step(ifa_model, x, t), step(dfa_model, x, t)
    # layer 0 gets (e·B_1) ⊙ f'(a_0) under both rules; layers 1, 2 differ (forward vs direct feedback)
    assert_close(ifa["0.weight"], dfa["0.weight"], "first hidden layer")
    assert_close(ifa["6.weight"], dfa["6.weight"], "output layer")
    for hidden in ("2.weight", "4.weight"):
        assert not torch.allclose(ifa[hidden], dfa[hidden], rtol=1e-3), hidden


def test_ifa_delta_at_each_layer_is_what_the_probe_reads():
    # the probe reads layer.record["delta"]: under ifa it must be eq. 9's δa, and e at the output
    plain = mlp([6, 7, 8, 9, 4], seed=6)
    x, t = batch()
    model = converted(plain, "ifa", init="uniform", scale=0.4, seed=2)
    layers = [l for _, l in converted_layers(model)]
    for layer in layers:
        layer.record = {}
    step(model, x, t)
    e = output_error(plain, x, t)
    _, pre = hand_forward(layers, x, "tanh")
    for k, delta in enumerate(hand_ifa_deltas(layers, e, pre, "tanh")):
        assert_close(layers[k].record["delta"], delta, f"δa_{k}")
    assert_close(layers[-1].record["delta"], e, "e")


def test_ifa_through_dropout_uses_the_masks_of_the_forward_pass():
    # the modules between layers (tanh, dropout) supply f': with dropout it is f'(a) · mask / (1 − p)
    p = 0.3
    plain = mlp([6, 7, 8, 9, 4], seed=7, dropout=p)
    x, t = batch(n=8)
    model = converted(plain, "ifa", init="uniform", scale=0.4, seed=2).train()
    masks = []
    for m in model:
        if isinstance(m, nn.Dropout):
            m.register_forward_hook(lambda mod, inp, out: masks.append((out != 0).double() / (1 - p)))
    torch.manual_seed(11)
    step(model, x, t)
    layers = [l for _, l in converted_layers(model)]
    # the forward by hand with the captured masks
    h, inputs, pre = x, [], []
    for k, layer in enumerate(layers):
        a = F.linear(h, layer.weight.detach(), layer.bias.detach())
        inputs.append(h)
        pre.append(a)
        h = torch.tanh(a) * masks[k] if k < len(masks) else a
    out = h.detach().requires_grad_(True)
    (e,) = torch.autograd.grad(ce(out, t).mean(), out)
    fprime = [(1 - torch.tanh(a) ** 2) * mask for a, mask in zip(pre, masks)]
    delta = (e @ layers[1].feedback_weight) * fprime[0]
    for k in range(len(layers) - 1):
        if k:
            delta = (delta @ layers[k].weight.detach().t()) * fprime[k]
        assert_close(layers[k].weight.grad, delta.t() @ inputs[k], f"hidden layer {k}")


def test_ifa_on_token_inputs_sends_the_error_per_position():
    plain = mlp([6, 7, 8, 4], seed=4)
    x, t = batch(n=5, tokens=3)
    model = converted(plain, "ifa", seed=2)
    step(model, x, t, loss_fn=lambda out, tt: ce(out.transpose(1, 2), tt).mean(1))
    layers = [l for _, l in converted_layers(model)]
    out = plain(x).detach().requires_grad_(True)
    (e,) = torch.autograd.grad(ce(out.transpose(1, 2), t).mean(1).mean(), out)
    inputs, pre = hand_forward(layers, x, "tanh")
    for k, delta in enumerate(hand_ifa_deltas(layers, e, pre, "tanh")):
        want = delta.reshape(-1, delta.shape[-1]).t() @ inputs[k].reshape(-1, inputs[k].shape[-1])
        assert_close(layers[k].weight.grad, want, f"hidden layer {k}")


# ------------------------------------------------------------------------------------------------
# where ifa does not apply
# ------------------------------------------------------------------------------------------------
def test_ifa_refuses_convnets_at_convert_time_and_says_why():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(4 * 5 * 5, 5))
    assert not RULES["ifa"].supports_conv
    with pytest.raises(ValueError, match=r"fully connected.*\['0'\].*eq\. 9.*dfa or fa"):
        fa_bench.convert(model, "ifa", example_input=torch.zeros(2, 2, 10, 10))


def test_ifa_needs_the_output_layer_last():
    with pytest.raises(ValueError, match="must be the last converted layer"):
        fa_bench.convert(mlp([6, 7, 8, 4]), "ifa", output_layer="2")


def test_ifa_is_a_config_choice():
    from fa_bench.config import compose_config
    from fa_bench.run import resolve_config

    cfg = resolve_config(compose_config(["rule=ifa", "model=nokland_4x100_tanh"]))
    assert cfg.rule.name == "ifa"
