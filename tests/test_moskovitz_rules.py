"""Moskovitz et al. (2018) rules, checked by value: usf_init, usf_sn, bp_noise, bp_align, dense_fa.

Conventions as in test_rules.py: float64 nets, per-example losses whose mean is backpropagated, B of
W's shape with ``grad_x = grad_out @ B``.
"""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fa_bench
from fa_bench import converted_layers
from fa_bench import metrics as M
from fa_bench.probe import AlignmentProbe
from fa_bench.seeding import DeviceStreams
from test_rules import mlp  # the float64 MLP every rule test builds

TIGHT = {"rtol": 1e-10, "atol": 1e-12}


def convnet(in_shape=(3, 2, 10, 10), n_out=5, seed=0):
    """Conv → tanh → maxpool → Conv → tanh → maxpool → Flatten → Linear (converted: 0, 3, 7)."""
    torch.manual_seed(seed)
    body = [nn.Conv2d(in_shape[1], 4, 3, padding=1), nn.Tanh(), nn.MaxPool2d(2),
            nn.Conv2d(4, 3, 3, padding=1, stride=1), nn.Tanh(), nn.MaxPool2d(2), nn.Flatten()]
    feats = nn.Sequential(*body)(torch.zeros(in_shape)).shape[1]
    return nn.Sequential(*body, nn.Linear(feats, n_out)).double()


def ce(out, target):
    return F.cross_entropy(out, target, reduction="none")


def batch(n, shape, n_classes, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g, dtype=torch.float64), torch.randint(0, n_classes, (n,), generator=g)


def converted(model, rule, **opts):
    return fa_bench.convert(copy.deepcopy(model), rule, **opts)


def layers_of(model):
    return [layer for _, layer in converted_layers(model)]


def step_grads(model, x, t, loss_fn=ce):
    model.zero_grad(set_to_none=True)  # after sgd_steps: this step's gradients only
    x = x.clone().requires_grad_(True)
    fa_bench.rule_of(model).compute_gradients(model, x, t, loss_fn)
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads["input"] = x.grad
    return grads


def autograd_grads(model, x, t, loss_fn=ce, extra=None):
    model = copy.deepcopy(model)
    x = x.clone().requires_grad_(True)
    loss = loss_fn(model(x), t).mean()
    if extra is not None:
        loss = loss + extra(model)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads["input"] = x.grad
    return grads


def close(got, want, what=""):
    torch.testing.assert_close(got, want, **TIGHT, msg=(lambda m: f"{what}: {m}") if what else None)


def output_error(plain, x, t):
    out = plain(x).detach().requires_grad_(True)
    (e,) = torch.autograd.grad(ce(out, t).mean(), out)
    return e


def forward_by_hand(layers, x, act=torch.tanh):
    """Inputs and pre-activations of each Linear layer of a plain tanh MLP."""
    inputs, pre, h = [], [], x
    for layer in layers:
        a = F.linear(h, layer.weight.detach(), None if layer.bias is None else layer.bias.detach())
        inputs.append(h)
        pre.append(a)
        h = act(a)
    return inputs, pre


def sgd_steps(model, x, t, steps=5, lr=0.5):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        fa_bench.rule_of(model).compute_gradients(model, x, t, ce)
        opt.step()


def dtanh(a):
    return 1 - torch.tanh(a) ** 2


# ------------------------------------------------------------------------------------------------
# usf_init (eq. 4): B_t = |B0| ∘ sign(W_t), B0 with variance 1/n_out
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("distribution", ["normal", "uniform"])
@pytest.mark.parametrize("shape", [(100, 400), (32, 8, 3, 3)])
def test_usf_init_magnitude_has_variance_one_over_fan_out(distribution, shape):
    module = nn.Linear(shape[1], shape[0]) if len(shape) == 2 else nn.Conv2d(shape[1], shape[0], shape[2])
    layer = fa_bench.convert(module, "usf_init", distribution=distribution, seed=0)
    fan_out = shape[0] * math.prod(shape[2:])  # out_features, or out_channels × kernel area
    R = layer.feedback_magnitude
    assert (R >= 0).all()
    assert (R ** 2).mean().item() == pytest.approx(1 / fan_out, rel=0.06)  # E|B0|² = var B0
    if distribution == "uniform":
        assert R.max().item() <= math.sqrt(3 / fan_out)
    assert torch.equal(layer.feedback_weight, R * torch.sign(layer.weight.detach()))


def test_usf_init_refuses_unknown_distribution():
    with pytest.raises(ValueError, match="distribution"):
        fa_bench.convert(nn.Linear(3, 2), "usf_init", distribution="cauchy")


def test_usf_init_follows_the_sign_of_w_with_fixed_magnitude_by_value():
    plain = mlp([6, 7, 4], seed=2)
    model = converted(plain, "usf_init", seed=3)
    x, t = batch(5, (6,), 4)
    R = [layer.feedback_magnitude.clone() for layer in layers_of(model)]
    sgd_steps(model, x, t, steps=4, lr=2.0)  # big steps: some signs flip
    (hidden, out) = layers_of(model)
    for layer, r in zip(layers_of(model), R):
        assert torch.equal(layer.feedback_magnitude, r)
    grads = step_grads(model, x, t)
    W0, W1 = hidden.weight.detach(), out.weight.detach()
    B1 = R[1] * torch.sign(W1)
    inputs, pre = forward_by_hand([hidden, out], x)
    e = output_error(nn.Sequential(*model), x, t)
    delta = (e @ B1) * dtanh(pre[0])
    close(grads["0.weight"], delta.t() @ x, "hidden weight")
    close(grads["0.bias"], delta.sum(0), "hidden bias")
    close(grads["input"], delta @ (R[0] * torch.sign(W0)), "input")
    close(grads["2.weight"], e.t() @ inputs[1], "output weight")


def test_usf_init_conv_layer_sends_through_fixed_magnitude_sign_kernel():
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Conv2d(2, 4, 3, stride=2, padding=1).double(), "usf_init", seed=1)
    with torch.no_grad():
        layer.weight.neg_()  # every sign flips after conversion: B must follow
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out.backward(g)
    B = layer.feedback_magnitude * torch.sign(layer.weight.detach())
    close(x.grad, torch.nn.grad.conv2d_input(x.shape, B, g, stride=2, padding=1))
    close(layer.weight.grad, torch.nn.grad.conv2d_weight(x.detach(), layer.weight.shape, g, stride=2, padding=1))


# ------------------------------------------------------------------------------------------------
# usf_sn (eq. 5): B_t = ‖W_t‖ sign(W_t)/‖sign(W_t)‖
# ------------------------------------------------------------------------------------------------
def sn(W):
    return W.norm() * torch.sign(W) / torch.sign(W).norm()


def test_usf_sn_norm_equals_weight_norm_after_optimizer_steps():
    plain = mlp([6, 8, 8, 4], seed=1)
    model = converted(plain, "usf_sn")
    x, t = batch(16, (6,), 4)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    start = [layer.weight.detach().norm().item() for layer in layers_of(model)]
    for _ in range(6):
        before = [layer.weight.detach().clone() for layer in layers_of(model)]
        opt.zero_grad()
        fa_bench.rule_of(model).compute_gradients(model, x, t, ce)
        for layer, W in zip(layers_of(model), before):  # the B this step's backward used
            close(layer.feedback_weight, sn(W))
            close(layer.feedback_weight.norm(), W.norm())
        opt.step()
    for layer, n0 in zip(layers_of(model), start):  # ‖W‖ moved, and B's norm moved with it
        assert abs(layer.weight.detach().norm().item() - n0) > 1e-3
        layer(x if layer is layers_of(model)[0] else torch.zeros(1, layer.in_features, dtype=x.dtype))
        close(layer.feedback_weight.norm(), layer.weight.detach().norm())


def test_usf_sn_gradients_by_hand():
    plain = mlp([6, 7, 5, 4], seed=3)
    model = converted(plain, "usf_sn")
    x, t = batch(5, (6,), 4)
    sgd_steps(model, x, t, steps=3, lr=1.0)
    grads = step_grads(model, x, t)
    layers = layers_of(model)
    inputs, pre = forward_by_hand(layers, x)
    delta = output_error(nn.Sequential(*model), x, t)
    for k in (2, 1, 0):
        close(grads[f"{2 * k}.weight"], delta.t() @ inputs[k], f"layer {k}")
        sent = delta @ sn(layers[k].weight.detach())
        if k == 0:
            close(grads["input"], sent, "input")
        else:
            delta = sent * dtanh(pre[k - 1])


def test_usf_sn_conv_layer_normalises_the_whole_kernel():
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Conv2d(2, 4, 3, padding=1).double(), "usf_sn")
    with torch.no_grad():
        layer.weight.mul_(3.0)
    x = torch.randn(3, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out.backward(g)
    B = sn(layer.weight.detach())
    close(layer.feedback_weight.norm(), layer.weight.detach().norm())
    close(x.grad, torch.nn.grad.conv2d_input(x.shape, B, g, padding=1))


def test_usf_sn_all_zero_weight_gives_zero_feedback():
    layer = fa_bench.convert(nn.Linear(3, 2), "usf_sn")
    with torch.no_grad():
        layer.weight.zero_()
    layer(torch.randn(4, 3))
    assert torch.equal(layer.feedback_weight, torch.zeros(2, 3))


@pytest.mark.parametrize("rule", ["usf_sn", "usf_init"])
def test_probe_reads_this_steps_sign_concordant_feedback(rule):
    # measured after the last update and before any forward: B must be rebuilt from the current W
    torch.manual_seed(0)
    model = fa_bench.convert(nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(),
                                           nn.Linear(8, 4)), rule)
    x, t = torch.randn(16, 6), torch.randint(0, 4, (16,))
    sgd_steps(model, x, t, steps=5, lr=2.0)
    rows = AlignmentProbe(model, ce).measure(x, t)
    by = {(m, layer): v for m, layer, v in rows}
    for name, layer in converted_layers(model):
        W = layer.weight.detach()
        B = sn(W) if rule == "usf_sn" else layer.feedback_magnitude * torch.sign(W)
        assert by[("sign_congruence", name)] == 1.0
        assert by[("weight_angle", name)] == pytest.approx(M.angle(W, B), abs=1e-6)
        assert by[("rel_error", name)] == pytest.approx(M.rel_error(W, B), abs=1e-6)


# ------------------------------------------------------------------------------------------------
# bp_noise (§5.3): δ̃ = δ + ξ, ξ ~ N(0, rms(δ)²) per layer per batch, not sent down
# ------------------------------------------------------------------------------------------------
def noise_stream(seed=0):
    return DeviceStreams(seed, "bp_noise")("cpu")


def with_noise(delta, g):
    xi = torch.randn(delta.shape, generator=g, dtype=delta.dtype)
    return delta + delta.pow(2).mean().sqrt() * xi


def test_bp_noise_gradients_by_hand():
    plain = mlp([6, 7, 5, 4], seed=2)
    model = converted(plain, "bp_noise", seed=4)
    x, t = batch(5, (6,), 4)
    grads = step_grads(model, x, t)
    layers = layers_of(model)
    inputs, pre = forward_by_hand(layers, x)
    g = noise_stream(4)  # the backward draws top-down: output layer first
    delta = output_error(plain, x, t)
    for k in (2, 1, 0):
        noisy = with_noise(delta, g)
        close(grads[f"{2 * k}.weight"], noisy.t() @ inputs[k], f"layer {k} weight")
        close(grads[f"{2 * k}.bias"], noisy.sum(0), f"layer {k} bias")
        sent = delta @ layers[k].weight.detach()  # the clean BP signal goes down
        delta = sent * dtanh(pre[k - 1]) if k else sent
    close(grads["input"], autograd_grads(plain, x, t)["input"], "input: exact backprop")


def test_bp_noise_conv_layer_by_hand():
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Conv2d(2, 4, 3, stride=2, padding=1).double(), "bp_noise", seed=2)
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    out = layer(x)
    d = torch.randn(out.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    out.backward(d)
    noisy = with_noise(d, noise_stream(2))
    geo = {"stride": 2, "padding": 1}
    close(layer.weight.grad, torch.nn.grad.conv2d_weight(x.detach(), layer.weight.shape, noisy, **geo))
    close(layer.bias.grad, noisy.sum((0, 2, 3)))
    close(x.grad, torch.nn.grad.conv2d_input(x.shape, layer.weight.detach(), d, **geo))


def test_bp_noise_redraws_every_step_and_is_seeded():
    plain = mlp([6, 7, 4], seed=2)
    x, t = batch(5, (6,), 4)
    a = converted(plain, "bp_noise", seed=1)
    first = step_grads(a, x, t)["0.weight"].clone()
    second = step_grads(a, x, t)["0.weight"]
    assert not torch.allclose(first, second)
    again = step_grads(converted(plain, "bp_noise", seed=1), x, t)["0.weight"]
    assert torch.equal(first, again)


def test_bp_noise_angle_to_backprop_is_45_degrees_at_every_layer():
    # a wide net: the angle over the batch is 45° ± O(1/√(batch × units)) rad
    plain = mlp([50, 512, 512, 256, 10], seed=0)
    x, t = batch(64, (50,), 10)
    angles = {}
    for rule in ("bp_noise", "bp"):
        model = converted(plain, rule, seed=0)
        for layer in layers_of(model):
            layer.record = {}
        step_grads(model, x, t)
        angles[rule] = [layer.record["delta"] for layer in layers_of(model)]
    for k, (noisy, exact) in enumerate(zip(*angles.values())):
        assert M.angle(noisy, exact) == pytest.approx(45.0, abs=1.5), f"layer {k}"


def test_bp_noise_probe_sees_the_noisy_delta():
    plain = mlp([50, 512, 256, 10], seed=0).float()
    x, t = batch(64, (50,), 10)
    model = converted(plain, "bp_noise", seed=0)
    rows = AlignmentProbe(model, ce).measure(x.float(), t)
    update = {layer: v for m, layer, v in rows if m == "update_angle"}
    delta = {layer: v for m, layer, v in rows if m == "delta_angle"}
    for name in ("0", "2"):  # hidden layers: the probe's per-example angle reads the paper's ≈45°
        assert delta[name] == pytest.approx(45.0, abs=3), delta
    assert all(v > 30 for v in update.values()), update


# ------------------------------------------------------------------------------------------------
# bp_align (eq. 9): backprop on J + λ Σ_l ‖W_l − V_l‖²
# ------------------------------------------------------------------------------------------------
def penalty(lam):
    def extra(model):  # applied to the plain model, with the converted model's V by layer name
        return lam * sum(((dict(model.named_modules())[n].weight - V) ** 2).sum() for n, V in extra.targets.items())
    return extra


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_bp_align_gradient_is_backprop_of_the_penalised_loss(kind):
    if kind == "mlp":
        plain, (x, t) = mlp([6, 7, 5, 4], seed=1), batch(5, (6,), 4)
        model = converted(plain, "bp_align", lam=0.3, seed=2)
    else:
        plain, (x, t) = convnet(), batch(3, (2, 10, 10), 5)
        model = converted(plain, "bp_align", lam=0.3, seed=2)
    targets = {n: layer.align_target.clone() for n, layer in converted_layers(model)}
    grads = step_grads(model, x, t)
    bp = autograd_grads(plain, x, t)
    extra = penalty(0.3)
    extra.targets = targets
    want = autograd_grads(plain, x, t, extra=extra)  # autograd of the explicit eq. 9 loss
    for name, layer in converted_layers(model):
        W, V = layer.weight.detach(), targets[name]
        close(grads[f"{name}.weight"], bp[f"{name}.weight"] + 2 * 0.3 * (W - V), f"{name} weight")
        close(grads[f"{name}.weight"], want[f"{name}.weight"], f"{name} weight (autograd of eq. 9)")
        close(grads[f"{name}.bias"], bp[f"{name}.bias"], f"{name} bias: not penalised")
    close(grads["input"], bp["input"])


def test_bp_align_targets_are_fixed_seeded_and_saved():
    plain = mlp([6, 7, 4], seed=1)
    x, t = batch(5, (6,), 4)
    model = converted(plain, "bp_align", seed=3)
    assert fa_bench.rule_of(model).opts["lam"] == 1e-3
    V = {n: layer.align_target.clone() for n, layer in converted_layers(model)}
    sgd_steps(model, x, t, steps=3)
    state = model.state_dict()
    for n, layer in converted_layers(model):
        assert torch.equal(layer.align_target, V[n]) and torch.equal(state[f"{n}.align_target"], V[n])
        assert layer.align_target.shape == layer.weight.shape
    other = converted(plain, "bp_align", seed=4)
    assert not torch.equal(layers_of(other)[0].align_target, V["0"])
    same = converted(plain, "bp_align", seed=3)
    assert torch.equal(layers_of(same)[0].align_target, V["0"])


def test_bp_align_pulls_weights_towards_targets():
    plain = mlp([6, 7, 4], seed=1)
    x, t = batch(5, (6,), 4)
    model = converted(plain, "bp_align", lam=1.0, seed=3)
    gap = [(layer.weight - layer.align_target).norm().item() for layer in layers_of(model)]
    sgd_steps(model, x, t, steps=20, lr=0.1)
    for layer, g0 in zip(layers_of(model), gap):
        assert (layer.weight - layer.align_target).norm().item() < 0.5 * g0


def test_bp_align_refuses_negative_lambda():
    with pytest.raises(ValueError, match="lam"):
        fa_bench.convert(nn.Linear(3, 2), "bp_align", lam=-1.0)


# ------------------------------------------------------------------------------------------------
# dense_fa: δ_l = (Σ_{k>l} B_{l,k} δ_k) ⊙ f′(u_l)
# ------------------------------------------------------------------------------------------------
def test_dense_fa_feedback_shapes():
    model = converted(mlp([6, 7, 8, 9, 4]), "dense_fa")
    shapes = {n: {k: tuple(v.shape) for k, v in layer.named_buffers()} for n, layer in converted_layers(model)}
    assert shapes == {
        "0": {"feedback_weight": (7, 6), "dense_feedback_1": (8, 6), "dense_feedback_2": (9, 6),
              "dense_feedback_3": (4, 6)},
        "2": {"feedback_weight": (8, 7), "dense_feedback_1": (9, 7), "dense_feedback_2": (4, 7)},
        "4": {"feedback_weight": (9, 8), "dense_feedback_1": (4, 8)},
        "6": {"feedback_weight": (4, 9)},
    }


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
def test_dense_fa_adjacent_only_is_fa(kind):
    if kind == "mlp":
        plain, (x, t), extra = mlp([6, 7, 8, 9, 4], seed=2), batch(5, (6,), 4), {}
    else:
        plain, (x, t) = convnet(), batch(3, (2, 10, 10), 5)
        extra = {"example_input": x}
    dense = converted(plain, "dense_fa", seed=5, only_adjacent=True, **extra)
    fa = converted(plain, "fa", seed=5)
    for a, b in zip(layers_of(dense), layers_of(fa)):
        assert torch.equal(a.feedback_weight, b.feedback_weight)  # the same draw as fa's
    got, want = step_grads(dense, x, t), step_grads(fa, x, t)
    for name in want:
        close(got[name], want[name], name)


def test_dense_fa_one_hidden_layer_trains_as_fa():
    plain, (x, t) = mlp([6, 8, 4], seed=1), batch(7, (6,), 4)
    got, want = step_grads(converted(plain, "dense_fa", seed=2), x, t), step_grads(converted(plain, "fa", seed=2), x, t)
    for name, _ in plain.named_parameters():
        close(got[name], want[name], name)
    assert not torch.allclose(got["input"], want["input"])  # the input also gets e through D_{0,1}


def test_dense_fa_three_hidden_layers_by_hand():
    plain, (x, t) = mlp([6, 7, 8, 9, 4], seed=2), batch(5, (6,), 4)
    model = converted(plain, "dense_fa", init="uniform", scale=0.4, seed=1)
    grads = step_grads(model, x, t)
    L = layers_of(model)
    inputs, pre = forward_by_hand(L, x)
    B = [layer.feedback_weight for layer in L]

    def D(j, d):
        return getattr(L[j], f"dense_feedback_{d}")

    d3 = output_error(plain, x, t)
    d2 = (d3 @ B[3]) * dtanh(pre[2])
    d1 = (d2 @ B[2] + d3 @ D(2, 1)) * dtanh(pre[1])
    d0 = (d1 @ B[1] + d2 @ D(1, 1) + d3 @ D(1, 2)) * dtanh(pre[0])
    to_x = d0 @ B[0] + d1 @ D(0, 1) + d2 @ D(0, 2) + d3 @ D(0, 3)
    for k, delta in enumerate((d0, d1, d2, d3)):
        close(grads[f"{2 * k}.weight"], delta.t() @ inputs[k], f"layer {k} weight")
        close(grads[f"{2 * k}.bias"], delta.sum(0), f"layer {k} bias")
    close(grads["input"], to_x, "input")


def test_dense_fa_convnet_by_hand():
    plain, (x, t) = convnet(seed=3), batch(3, (2, 10, 10), 5)
    model = converted(plain, "dense_fa", example_input=x, init="normal", scale=0.2, seed=4)
    grads = step_grads(model, x, t)
    c0, c3, lin = (dict(converted_layers(model))[n] for n in ("0", "3", "7"))
    assert c0.dense_feedback_1.shape == (3 * 5 * 5, 2 * 10 * 10)  # conv 3's output -> conv 0's input
    assert c0.dense_feedback_2.shape == (5, 2 * 10 * 10)
    assert c3.dense_feedback_1.shape == (5, 4 * 5 * 5)
    e = output_error(plain, x, t)

    def back(lo, hi, signal):
        """δ at module lo's output, from ``signal`` injected at module hi's input (through plain modules)."""
        a = plain[:lo + 1](x).detach().requires_grad_(True)
        (g,) = torch.autograd.grad(plain[lo + 1:hi](a), a, grad_outputs=signal)
        return a.detach(), g

    h7 = plain[:7](x)
    close(grads["7.weight"], e.t() @ h7)
    in3 = plain[:3](x)
    a3, d3 = back(3, 7, (e @ lin.feedback_weight).view(3, -1))
    geo = {"padding": 1}
    close(grads["3.weight"], torch.nn.grad.conv2d_weight(in3, c3.weight.shape, d3, **geo), "conv 3")
    sent = (torch.nn.grad.conv2d_input(in3.shape, c3.feedback_weight, d3, **geo)
            + (e @ c3.dense_feedback_1).view(in3.shape))
    _, d0 = back(0, 3, sent)
    close(grads["0.weight"], torch.nn.grad.conv2d_weight(x, c0.weight.shape, d0, **geo), "conv 0")
    close(grads["0.bias"], d0.sum((0, 2, 3)))
    to_x = (torch.nn.grad.conv2d_input(x.shape, c0.feedback_weight, d0, **geo)
            + (d3.reshape(3, -1) @ c0.dense_feedback_1).view(x.shape) + (e @ c0.dense_feedback_2).view(x.shape))
    close(grads["input"], to_x, "input")


def test_dense_fa_holds_no_errors_after_a_step():
    plain, (x, t) = mlp([6, 7, 8, 4], seed=2), batch(5, (6,), 4)
    model = converted(plain, "dense_fa")
    step_grads(model, x, t)
    assert fa_bench.rule_of(model).deltas == {}
    rows = AlignmentProbe(model, ce).measure(x, t)  # the probe's own passes clear them too
    assert rows and fa_bench.rule_of(model).deltas == {}
