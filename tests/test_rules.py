"""Mathematical tests of the rule engine (SPEC §2): every rule's gradients are checked by VALUE.

Conventions used throughout:
- nets are built in float64 (``model.double()`` before ``convert``) so "exact" can mean agreement to
  ~1e-12, not to float32 noise;
- ``loss_fn(out, target)`` returns per-example losses; ``compute_gradients`` backpropagates their mean,
  so hand formulas carry a 1/N;
- a feedback matrix B has W's shape for layer-wise rules and the layer sends ``grad_out @ B`` to its
  input (B plays the role of W in ``grad_x = grad_out @ W``); Lillicrap's B is our Bᵀ.
"""
from __future__ import annotations

import copy
import itertools
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fa_bench
from fa_bench import RULES, converted_layers
from fa_bench.rules import Rule

ALL_RULES = sorted(RULES)
FEEDBACK_RULES = [n for n in ALL_RULES if RULES[n].has_feedback]
# rules whose B is a random draw (so the seed must matter); usf/brsf start from sign(W)
RANDOM_B_RULES = [n for n in ("fa", "dfa", "frsf", "matched") if n in RULES]
REDRAWN_B_RULES = {"brsf"}  # B drawn afresh every forward pass, from a stream not in state_dict
CONF_RULE_DIR = Path(__file__).resolve().parents[1] / "conf" / "rule"
TIGHT = {"rtol": 1e-10, "atol": 1e-12}  # float64 "exact": only summation order may differ


# ------------------------------------------------------------------------------------------------
# helpers: nets, losses, one step of gradients
# ------------------------------------------------------------------------------------------------
def mlp(sizes, act=nn.Tanh, bias=True, seed=0):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b, bias=bias))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers).double()


# conv keyword sets covering every geometry the converted Conv2d must reproduce
CONV_CASES = {
    "stride2_pad1": {"stride": 2, "padding": 1},
    "pad2": {"padding": 2},
    "dilation2": {"dilation": 2},
    "groups2": {"groups": 2},
    "no_bias": {"bias": False},
    "same_dilated": {"padding": "same", "dilation": 2},
    "all_at_once": {"stride": 2, "padding": 2, "dilation": 2, "groups": 2, "bias": False},
}
CONV_INPUT = (3, 2, 9, 9)  # batch, channels, height, width
# padding the conv kernel cannot do itself: applied by F.pad before the rule (nn.Conv2d's own semantics)
PADDING_CASES = {
    "reflect": {"padding": 1, "padding_mode": "reflect"},
    "circular_stride2": {"padding": 2, "padding_mode": "circular", "stride": 2},
    "replicate_same": {"padding": "same", "padding_mode": "replicate"},
    "same_even_kernel": {"padding": "same", "kernel_size": 4},
}


def convnet(conv_kw=None, pool=False, n_out=5, in_shape=CONV_INPUT, seed=0):
    """Conv → tanh [→ maxpool] → Conv → tanh [→ maxpool] → Flatten → Linear, in float64."""
    conv_kw = dict(conv_kw or {})
    k = conv_kw.pop("kernel_size", 3)
    torch.manual_seed(seed)
    c = in_shape[1]
    body = [nn.Conv2d(c, 4, k, **conv_kw), nn.Tanh()]
    body += [nn.MaxPool2d(2)] if pool else []
    body += [nn.Conv2d(4, 4, k, **conv_kw), nn.Tanh()]
    body += [nn.MaxPool2d(2)] if pool else []
    body += [nn.Flatten()]
    feats = nn.Sequential(*body)(torch.zeros(in_shape)).shape[1]  # size the head by a dry run
    return nn.Sequential(*body, nn.Linear(feats, n_out)).double()


def ce(out, target):
    return F.cross_entropy(out, target, reduction="none")


def sse(out, target):
    return 0.5 * ((out - target) ** 2).flatten(1).sum(1)


def class_batch(n, shape, n_classes, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *shape), generator=g, dtype=torch.float64)
    return x, torch.randint(0, n_classes, (n,), generator=g)


def converted(model, rule, **opts):
    """A converted deep copy, so the plain model stays the autograd reference."""
    return fa_bench.convert(copy.deepcopy(model), rule, **opts)


def rule_of(model):
    return converted_layers(model)[0][1].rule


def layer_dict(model):
    return dict(converted_layers(model))


def step_grads(model, x, target, loss_fn):
    """One compute_gradients call; returns {param name: grad} plus 'input' (grad of x)."""
    x = x.clone().requires_grad_(True)
    rule_of(model).compute_gradients(model, x, target, loss_fn)
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads["input"] = x.grad
    return grads


def autograd_grads(model, x, target, loss_fn):
    """Plain autograd on an unconverted copy: the reference every rule is measured against."""
    model = copy.deepcopy(model)
    x = x.clone().requires_grad_(True)
    loss_fn(model(x), target).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    grads["input"] = x.grad
    return grads


def assert_close(got, want, what="", exact=False):
    """float64 agreement up to summation order (or bit for bit), naming the tensor when it fails."""
    tol = {"rtol": 0, "atol": 0} if exact else TIGHT
    torch.testing.assert_close(got, want, **tol, msg=(lambda m: f"{what}: {m}") if what else None)


def assert_same_grads(got, want, names=None):
    for name in names or want:
        assert got[name] is not None, f"{name}: no gradient"
        assert_close(got[name], want[name], name)


def set_feedback_to_weight(model):
    with torch.no_grad():
        for _, layer in converted_layers(model):
            layer.feedback_weight.copy_(layer.weight)


def cosine(a, b):
    return F.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()


# the nets tests 1 and 2 run on: MLPs (bias / no bias, tanh / sigmoid) and every conv geometry
MLP_CASES = {
    "tanh_bias": {"act": nn.Tanh, "bias": True},
    "sigmoid_bias": {"act": nn.Sigmoid, "bias": True},
    "tanh_no_bias": {"act": nn.Tanh, "bias": False},
    "sigmoid_no_bias": {"act": nn.Sigmoid, "bias": False},
}


def reference_case(kind):
    """(model, x, target) for a named MLP_CASES / CONV_CASES entry."""
    if kind in MLP_CASES:
        model = mlp([6, 7, 5, 4], **MLP_CASES[kind])
        x, t = class_batch(5, (6,), 4)
    else:
        model = convnet({**CONV_CASES, **PADDING_CASES}[kind])
        x, t = class_batch(CONV_INPUT[0], CONV_INPUT[1:], 5)
    return model, x, t


ALL_NETS = list(MLP_CASES) + list(CONV_CASES) + list(PADDING_CASES)


# ------------------------------------------------------------------------------------------------
# 1-2. bp is autograd; fa with B := W is bp
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ALL_NETS)
def test_bp_matches_autograd(kind):
    model, x, t = reference_case(kind)
    assert_same_grads(step_grads(converted(model, "bp"), x, t, ce), autograd_grads(model, x, t, ce))


@pytest.mark.parametrize("kind", ALL_NETS)
def test_fa_with_feedback_equal_to_weight_is_bp(kind):
    model, x, t = reference_case(kind)
    fa = converted(model, "fa", seed=3)
    set_feedback_to_weight(fa)
    assert_same_grads(step_grads(fa, x, t, ce), step_grads(converted(model, "bp"), x, t, ce))


def test_fa_with_random_feedback_differs_from_bp():
    # guard for the two tests above: with a random B the hidden gradients must NOT match backprop
    model, x, t = reference_case("tanh_bias")
    fa, bp = step_grads(converted(model, "fa"), x, t, ce), autograd_grads(model, x, t, ce)
    assert_close(fa["4.weight"], bp["4.weight"])  # the output layer is exact
    for hidden in ("0.weight", "2.weight"):
        assert not torch.allclose(fa[hidden], bp[hidden], rtol=1e-3), hidden


def test_bp_on_token_inputs():
    # "any nn.Module": Linear layers applied to (batch, tokens, features) must fold the token axis
    model = mlp([6, 7, 4], seed=4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 6, generator=g, dtype=torch.float64)
    t = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    assert_same_grads(step_grads(converted(model, "bp"), x, t, sse), autograd_grads(model, x, t, sse))


# ------------------------------------------------------------------------------------------------
# 3. fa on one layer: grad_x = δ through B, grad_W = δ·xᵀ whatever B is
# ------------------------------------------------------------------------------------------------
def backward_through(layer, x, seed=5):
    """Push a random δ through one layer; returns (δ, x with .grad)."""
    x = x.clone().requires_grad_(True)
    out = layer(x)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    out.backward(grad_out)
    return grad_out, x


@pytest.mark.parametrize("init", ["uniform", "normal", "kaiming_uniform", "fan_out_uniform"])
def test_fa_linear_layer_algebra(init):
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Linear(5, 4).double(), "fa", init=init, scale=0.7, seed=2)
    x = torch.randn(6, 5, dtype=torch.float64)
    grad_out, x = backward_through(layer, x)
    B = layer.feedback_weight
    assert not torch.allclose(B, layer.weight)  # otherwise the test could not tell B from W
    assert_close(x.grad, grad_out @ B)
    assert_close(layer.weight.grad, grad_out.t() @ x.detach())
    assert_close(layer.bias.grad, grad_out.sum(0))


@pytest.mark.parametrize("kind", list(CONV_CASES))
def test_fa_conv_layer_algebra(kind):
    kw = CONV_CASES[kind]
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Conv2d(2, 4, 3, **kw).double(), "fa", init="normal", seed=2)
    x = torch.randn(CONV_INPUT, dtype=torch.float64)
    grad_out, x = backward_through(layer, x)
    B = layer.feedback_weight
    # "same" padding resolved to numbers, as torch.nn.grad wants them
    geometry = {"stride": layer.stride, "padding": layer._padding_list(), "dilation": layer.dilation,
                "groups": layer.groups}
    assert_close(x.grad, torch.nn.grad.conv2d_input(x.shape, B, grad_out, **geometry))
    assert_close(layer.weight.grad, torch.nn.grad.conv2d_weight(x.detach(), B.shape, grad_out, **geometry))
    if layer.bias is not None:
        assert_close(layer.bias.grad, grad_out.sum((0, 2, 3)))
    else:
        assert layer.bias is None


# ------------------------------------------------------------------------------------------------
# 4. Lillicrap's 2-layer linear example, by hand
# ------------------------------------------------------------------------------------------------
def test_fa_two_layer_linear_by_hand():
    linear = mlp([4, 6, 3], act=nn.Identity, bias=False, seed=7)  # y = W1 W0 x
    model = converted(linear, "fa", init="uniform", scale=0.5, seed=11)
    (_, l0), (_, l1) = converted_layers(model)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 4, generator=g, dtype=torch.float64)
    t = torch.randn(5, 3, generator=g, dtype=torch.float64)
    W0, W1, B1 = l0.weight.detach(), l1.weight.detach(), l1.feedback_weight
    h = x @ W0.t()
    y = h @ W1.t()
    e = (y - t) / len(x)  # ∂(mean loss)/∂y for 0.5‖y − t‖²
    step_grads(model, x, t, sse)
    # Lillicrap: ΔW1 ∝ e hᵀ, ΔW0 ∝ (B e) xᵀ with his B = our B1ᵀ, summed over the batch
    assert_close(l1.weight.grad, e.t() @ h)
    assert_close(l0.weight.grad, (e @ B1).t() @ x)


# ------------------------------------------------------------------------------------------------
# 5. dfa
# ------------------------------------------------------------------------------------------------
def output_error(plain, x, t, loss_fn):
    """e = ∂(mean loss)/∂(output pre-activation), from autograd on the plain net."""
    out = plain(x).detach().requires_grad_(True)
    (e,) = torch.autograd.grad(loss_fn(out, t).mean(), out)
    return e


def test_dfa_one_hidden_layer_is_fa():
    model = mlp([6, 8, 4], seed=1)
    x, t = class_batch(7, (6,), 4)
    fa, dfa = converted(model, "fa", seed=4), converted(model, "dfa", seed=9)
    with torch.no_grad():  # share the output layer's B, the only feedback that reaches a weight
        layer_dict(dfa)["2"].feedback_weight.copy_(layer_dict(fa)["2"].feedback_weight)
    got, want = step_grads(dfa, x, t, ce), step_grads(fa, x, t, ce)
    # parameters only: what the bottom layer sends to x differs by design (e·B_0 vs δ_0·B_0)
    assert_same_grads(got, want, names=[n for n, _ in model.named_parameters()])


def test_dfa_feedback_shapes():
    model = converted(mlp([6, 7, 8, 4]), "dfa")
    shapes = {n: tuple(l.feedback_weight.shape) for n, l in converted_layers(model)}
    # hidden layer k: (n_outputs, in_features of k); the output layer: W's shape
    assert shapes == {"0": (4, 6), "2": (4, 7), "4": (4, 8)}


def test_dfa_deep_mlp_by_hand():
    model = mlp([6, 7, 8, 9, 4], act=nn.Tanh, seed=2)
    x, t = class_batch(5, (6,), 4)
    dfa = converted(model, "dfa", init="uniform", scale=0.3, seed=1)
    step_grads(dfa, x, t, ce)
    layers = [l for _, l in converted_layers(dfa)]
    e = output_error(model, x, t, ce)
    # forward by hand: a_k = W_k h_{k-1} + b_k, h_k = tanh(a_k)
    h_prev, inputs, pre = x, [], []
    for layer in layers:
        a = F.linear(h_prev, layer.weight.detach(), layer.bias.detach())
        inputs.append(h_prev)
        pre.append(a)
        h_prev = torch.tanh(a)
    for k in range(len(layers) - 1):  # hidden layers: B of the layer ABOVE, which sends e·B to h_k
        delta = (e @ layers[k + 1].feedback_weight) * (1 - torch.tanh(pre[k]) ** 2)
        assert_close(layers[k].weight.grad, delta.t() @ inputs[k], f"hidden layer {k}")
        assert_close(layers[k].bias.grad, delta.sum(0))
    assert_close(layers[-1].weight.grad, e.t() @ inputs[-1])


def test_dfa_on_token_inputs_sends_error_per_position():
    # Linear layers on (batch, tokens, features): each position's hidden layer gets e at that position
    model = mlp([6, 7, 4], seed=4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 3, 6, generator=g, dtype=torch.float64)
    t = torch.randn(5, 3, 4, generator=g, dtype=torch.float64)
    dfa = converted(model, "dfa", seed=2)
    step_grads(dfa, x, t, sse)
    hidden, out = [l for _, l in converted_layers(dfa)]
    e = output_error(model, x, t, sse)
    a = F.linear(x, hidden.weight.detach(), hidden.bias.detach())
    delta = (e @ out.feedback_weight) * (1 - torch.tanh(a) ** 2)
    assert_close(hidden.weight.grad, delta.reshape(-1, 7).t() @ x.reshape(-1, 6), "token-wise DFA")


@pytest.mark.parametrize("kind", list(PADDING_CASES))
def test_dfa_feedback_matches_padded_conv_inputs(kind):
    # with explicit padding the rule's Function sees the padded input: B must be sized for it
    model = convnet(PADDING_CASES[kind])
    x, t = class_batch(CONV_INPUT[0], CONV_INPUT[1:], 5)
    dfa = converted(model, "dfa", example_input=x)
    second = layer_dict(dfa)["2"]  # its input is the first conv's tanh output, padded before the rule
    h = torch.tanh(model[0](x))
    pad = second._reversed_padding_repeated_twice
    mode = "constant" if second.padding_mode == "zeros" else second.padding_mode
    padded = F.pad(h, pad, mode=mode) if second._explicit_padding() else h
    assert second.feedback_weight.shape == (5, padded[0].numel())
    grads = step_grads(dfa, x, t, ce)
    assert all(torch.isfinite(g).all() for n, g in grads.items() if g is not None)
    assert grads["0.weight"].abs().sum() > 0


def test_autocast_bf16_backward_runs_in_low_precision_and_returns_param_dtypes():
    model = mlp([6, 7, 4], seed=3).float()
    x, t = class_batch(5, (6,), 4)
    x = x.float()
    fa = converted(model, "fa", seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ce(fa(x), t).mean()
    loss.backward()
    reference = converted(model, "fa", seed=1)
    ce(reference(x), t).mean().backward()
    for (name, p), q in zip(fa.named_parameters(), reference.parameters()):
        if p.grad is None:
            continue
        assert p.grad.dtype == p.dtype, name
        assert cosine(p.grad, q.grad) > 0.99, name  # bf16 arithmetic, same direction
        assert not torch.equal(p.grad, q.grad), name  # ... and it really ran in bf16


def test_convert_leaves_model_state_untouched():
    # the shape-finding pass DFA needs must not update batch-norm statistics or draw dropout masks
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Dropout(0.5), nn.Flatten(),
                          nn.Linear(3 * 7 * 7, 4)).double()
    state = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    x, _ = class_batch(CONV_INPUT[0], CONV_INPUT[1:], 4)
    fa_bench.convert(model, "dfa", example_input=x)
    assert model.training
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in state.items():
        assert torch.equal(model.state_dict()[k], v), k


def test_dfa_conv_needs_example_input():
    with pytest.raises(ValueError, match="example_input"):
        converted(convnet(), "dfa")


def test_dfa_convnet_by_hand():
    in_shape = (3, 1, 10, 10)
    plain = convnet({"padding": 1}, pool=True, in_shape=in_shape, seed=3)
    x, t = class_batch(in_shape[0], in_shape[1:], 5)
    dfa = converted(plain, "dfa", example_input=x, seed=5)
    step_grads(dfa, x, t, ce)
    e = output_error(plain, x, t, ce)
    layers = layer_dict(dfa)
    idx = [int(n) for n in layers]  # Sequential indices of the converted layers, bottom to top
    for below, above in itertools.pairwise(idx):
        if not isinstance(plain[below], nn.Conv2d):
            continue
        # e·B_above is injected at the input of the layer above and pushed back to the conv's
        # pre-activation through whatever plain modules (tanh, max-pool, flatten) lie between
        h = plain[:below](x)
        a = plain[below](h).detach().requires_grad_(True)
        between = plain[below + 1:above](a)
        inject = (e @ layers[str(above)].feedback_weight).view(between.shape)
        (delta,) = torch.autograd.grad(between, a, grad_outputs=inject)
        conv = plain[below]
        want = torch.nn.grad.conv2d_weight(h, conv.weight.shape, delta, conv.stride, conv.padding,
                                           conv.dilation, conv.groups)
        assert_close(layers[str(below)].weight.grad, want, f"conv layer {below}")
        assert_close(layers[str(below)].bias.grad, delta.sum((0, 2, 3)))


# ------------------------------------------------------------------------------------------------
# 6. shallow
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["tanh_bias", "stride2_pad1"])
def test_shallow_trains_only_the_output_layer(kind):
    model, x, t = reference_case(kind)
    shallow = converted(model, "shallow")
    got, want = step_grads(shallow, x, t, ce), autograd_grads(model, x, t, ce)
    out_name = converted_layers(shallow)[-1][0]
    assert got["input"] is None  # the output layer sends nothing down: no backward work below it
    for name, layer in converted_layers(shallow):
        if name == out_name:
            assert_same_grads(got, want, names=[f"{name}.weight", f"{name}.bias"])
        else:
            assert layer.weight.grad is None and layer.bias.grad is None, name


# ------------------------------------------------------------------------------------------------
# 7. sign-concordant feedback: usf, frsf, brsf
# ------------------------------------------------------------------------------------------------
def flip_all_weight_signs(model):
    """One real SGD step whose gradient is 2W: W ← W − 2W = −W, so every sign flips."""
    for _, layer in converted_layers(model):
        layer.weight.grad = 2 * layer.weight.detach()
    torch.optim.SGD([l.weight for _, l in converted_layers(model)], lr=1.0).step()


def assert_sign_concordant(model, magnitude=None):
    for name, layer in converted_layers(model):
        W, B = layer.weight.detach(), layer.feedback_weight
        want = torch.sign(W) if magnitude is None else magnitude(layer) * torch.sign(W)
        assert_close(B, want, f"layer {name}", exact=True)


def test_usf_feedback_is_sign_of_weight_and_refreshes():
    model = converted(mlp([5, 6, 3]), "usf")
    x, _ = class_batch(4, (5,), 3)
    model(x)
    assert_sign_concordant(model)
    before = {n: l.feedback_weight.clone() for n, l in converted_layers(model)}
    flip_all_weight_signs(model)
    model(x)  # the next forward must refresh B from the new W
    assert_sign_concordant(model)
    for name, layer in converted_layers(model):
        assert torch.equal(layer.feedback_weight, -before[name])


def test_usf_input_gradient_uses_sign_of_weight():
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Linear(5, 4).double(), "usf")
    grad_out, x = backward_through(layer, torch.randn(6, 5, dtype=torch.float64))
    assert_close(x.grad, grad_out @ torch.sign(layer.weight.detach()))


def test_frsf_magnitude_is_fixed():
    model = converted(mlp([5, 6, 3]), "frsf", init="uniform", seed=3)
    x, _ = class_batch(4, (5,), 3)
    R = {n: l.feedback_magnitude.clone() for n, l in converted_layers(model)}
    assert all((r >= 0).all() and r.std() > 0 for r in R.values())  # |R|, and random
    for _ in range(2):
        model(x)
        assert_sign_concordant(model, magnitude=lambda l: l.feedback_magnitude)
        for name, layer in converted_layers(model):
            assert torch.equal(layer.feedback_magnitude, R[name])
        flip_all_weight_signs(model)


def brsf_feedback_sequence(seed, n_batches=3):
    model = converted(mlp([5, 6, 3]), "brsf", seed=seed)
    x, _ = class_batch(4, (5,), 3)
    seq = []
    for _ in range(n_batches):
        model(x)  # one batch: B is redrawn in the forward pass
        # B == |B|∘sign(W): B carries W's signs, and is 0 exactly where W is
        assert_sign_concordant(model, magnitude=lambda l: l.feedback_weight.abs())
        seq.append([l.feedback_weight.clone() for _, l in converted_layers(model)])
    return seq


def test_brsf_magnitude_redrawn_each_batch_and_seeded():
    first, again, other = brsf_feedback_sequence(4), brsf_feedback_sequence(4), brsf_feedback_sequence(5)
    for step in range(1, len(first)):
        for prev, cur in zip(first[step - 1], first[step]):
            assert torch.equal(torch.sign(prev), torch.sign(cur))
            assert not torch.allclose(prev.abs(), cur.abs())  # magnitudes redrawn
    for a, b in zip(first, again):
        assert all(torch.equal(p, q) for p, q in zip(a, b))  # same seed, same sequence
    assert not all(torch.equal(p, q) for p, q in zip(first[0], other[0]))


def test_brsf_input_gradient_uses_this_batchs_feedback():
    torch.manual_seed(0)
    layer = fa_bench.convert(nn.Linear(5, 4).double(), "brsf", seed=1)
    x = torch.randn(6, 5, dtype=torch.float64)
    for _ in range(2):
        grad_out, xg = backward_through(layer, x)
        assert_close(xg.grad, grad_out @ layer.feedback_weight)


# ------------------------------------------------------------------------------------------------
# 8. matched (Kolen-Pollack)
# ------------------------------------------------------------------------------------------------
def matched_setup(decay=0.0):
    model = converted(mlp([6, 7, 4], seed=2), "matched", seed=1, decay=decay)
    x, t = class_batch(5, (6,), 4)
    return model, x, t


def snapshot(model):
    return {n: (l.weight.detach().clone(), l.feedback_weight.detach().clone())
            for n, l in converted_layers(model)}


def test_matched_feedback_gets_weight_gradient():
    model, x, t = matched_setup()
    for _, layer in converted_layers(model):
        assert isinstance(layer.feedback_weight, nn.Parameter)
    step_grads(model, x, t, ce)
    for name, layer in converted_layers(model):
        assert layer.feedback_weight.grad is not None, name
        assert_close(layer.feedback_weight.grad, layer.weight.grad, name, exact=True)


def test_matched_sgd_moves_feedback_like_weight():
    model, x, t = matched_setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = snapshot(model)
    step_grads(model, x, t, ce)
    opt.step()
    for name, (W1, B1) in snapshot(model).items():
        W0, B0 = before[name]
        assert not torch.equal(W1, W0)
        assert_close(B1 - B0, W1 - W0)


@pytest.mark.parametrize("where", ["optimizer", "rule"])
def test_matched_weight_decay_closes_the_gap(where):
    # Kolen-Pollack: with decay on both W and B, W - B shrinks by exactly (1 - ηλ) per SGD step,
    # whether the decay comes from the optimizer or from the rule's own `decay` option
    lr, decay = 0.1, 0.05
    model, x, t = matched_setup(decay=decay if where == "rule" else 0.0)
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=decay if where == "optimizer" else 0.0)
    for _ in range(3):
        before = snapshot(model)
        opt.zero_grad()
        step_grads(model, x, t, ce)
        opt.step()
        for name, (W1, B1) in snapshot(model).items():
            W0, B0 = before[name]
            assert_close((W1 - B1).norm(), (1 - lr * decay) * (W0 - B0).norm())


def test_matched_default_decay_aligns_b_with_w():
    model, x, t = converted(mlp([6, 7, 4], seed=2), "matched", seed=1), *class_batch(5, (6,), 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    gap0 = {n: (l.weight - l.feedback_weight).norm().item() for n, l in converted_layers(model)}
    for _ in range(50):
        opt.zero_grad()
        step_grads(model, x, t, ce)
        opt.step()
    decay = rule_of(model).opts["decay"]
    assert decay > 0, "matched must decay by default (the rule is 'W's update plus weight decay')"
    for n, l in converted_layers(model):
        assert (l.weight - l.feedback_weight).norm().item() == pytest.approx(gap0[n] * (1 - 0.5 * decay) ** 50)


# ------------------------------------------------------------------------------------------------
# 9. node perturbation
# ------------------------------------------------------------------------------------------------
@pytest.fixture
def no_backward(monkeypatch):
    """Any autograd backward during the test raises: node perturbation must not need one."""
    def forbidden(*args, **kwargs):
        raise AssertionError("node_perturbation called autograd")
    monkeypatch.setattr(torch.autograd, "backward", forbidden)
    monkeypatch.setattr(torch.Tensor, "backward", forbidden)
    monkeypatch.setattr(torch.autograd, "grad", forbidden)


@pytest.mark.parametrize("sigma", [1e-3, 1e-5])
def test_node_perturbation_estimates_the_gradient(sigma, request):
    plain = mlp([4, 6, 3], act=nn.Identity, seed=3)  # a linear net
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, 4, generator=g, dtype=torch.float64)
    t1 = torch.randn(1, 3, generator=g, dtype=torch.float64)
    want = autograd_grads(plain, x1, t1, sse)  # true gradient on the single example
    # the estimate averages over the batch: one example repeated = many noise draws
    x, t = x1.repeat(20000, 1), t1.repeat(20000, 1)
    model = converted(plain, "node_perturbation", sigma=sigma, seed=1)
    request.getfixturevalue("no_backward")  # only now: the reference above did use autograd
    rule_of(model).compute_gradients(model, x, t, sse)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert cosine(p.grad, want[name]) > 0.9, f"{name}: cosine {cosine(p.grad, want[name]):.3f}"
        # unbiased, so the scale is right too (cosine alone would miss a wrong 1/σ² or 1/N)
        ratio = (p.grad.norm() / want[name].norm()).item()
        assert 0.9 < ratio < 1.1, f"{name}: |estimate| / |gradient| = {ratio:.3f}"


def test_node_perturbation_with_dropout_sees_the_same_masks_in_both_passes():
    # one example repeated: each row gets its own dropout mask; the true gradient is taken with the
    # very masks NP used, so only the perturbation may separate the two
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(5, 6), nn.Dropout(0.3), nn.Linear(6, 3)).double()
    x = torch.randn(1, 5, dtype=torch.float64).repeat(20000, 1)
    t = torch.randn(1, 3, dtype=torch.float64).repeat(20000, 1)
    model = converted(plain, "node_perturbation", sigma=1e-4, seed=3)
    before = torch.get_rng_state()
    rule_of(model).compute_gradients(model, x, t, sse)
    torch.set_rng_state(before)
    reference = copy.deepcopy(plain)
    sse(reference(x), t).mean().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert cosine(p.grad, q.grad) > 0.9, name
        assert 0.8 < (p.grad.norm() / q.grad.norm()).item() < 1.2, name


def test_node_perturbation_refuses_unconverted_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="1.weight"):
        fa_bench.convert(model, "node_perturbation")


# ------------------------------------------------------------------------------------------------
# 10. feedback as state: seeds, state_dict, dtype
# ------------------------------------------------------------------------------------------------
def feedback_of(model):
    return {n: l.feedback_weight.detach().clone() for n, l in converted_layers(model)}


@pytest.mark.parametrize("rule", FEEDBACK_RULES)
def test_feedback_survives_state_dict_and_dtype(rule):
    plain = mlp([5, 6, 3]).float()
    model = converted(plain, rule, seed=1)
    fresh = converted(plain, rule, seed=2)
    fresh.load_state_dict(model.state_dict())
    saved = feedback_of(model)
    for name, B in feedback_of(fresh).items():
        assert torch.equal(B, saved[name]), name
    if rule not in REDRAWN_B_RULES:  # B rebuilt in forward (usf, frsf) must come from saved state
        x, _ = class_batch(2, (5,), 3)
        model(x.float()), fresh(x.float())
        assert all(torch.equal(B, feedback_of(model)[n]) for n, B in feedback_of(fresh).items())
        saved = feedback_of(model)
    model.to(torch.float64)
    for name, B in feedback_of(model).items():
        assert B.dtype == torch.float64, name
        assert torch.equal(B, saved[name].double()), name


@pytest.mark.parametrize("rule", FEEDBACK_RULES)
def test_same_seed_same_feedback(rule):
    plain = mlp([5, 6, 3])
    a, b = feedback_of(converted(plain, rule, seed=7)), feedback_of(converted(plain, rule, seed=7))
    assert all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("rule", RANDOM_B_RULES)
def test_different_seed_different_feedback(rule):
    plain = mlp([5, 6, 3])
    a, b = feedback_of(converted(plain, rule, seed=7)), feedback_of(converted(plain, rule, seed=8))
    assert all(not torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("init", ["uniform", "normal", "kaiming_uniform", "fan_out_uniform"])
def test_feedback_init_scale(init):
    # a wide layer so the draw fills its range: the largest |B| sits just under the bound
    layer = fa_bench.convert(nn.Linear(400, 100), "fa", init=init, scale=0.5, seed=0)
    B = layer.feedback_weight
    if init == "normal":
        assert abs(B.std().item() - 0.5) < 0.01
        return
    bound = {"uniform": 0.5, "kaiming_uniform": 0.5 / math.sqrt(400),
             "fan_out_uniform": 0.5 / math.sqrt(100)}[init]
    assert bound * 0.99 < B.abs().max().item() <= bound


# ------------------------------------------------------------------------------------------------
# 11. registry-wide: every rule, every flag
# ------------------------------------------------------------------------------------------------
def registry_net(kind):
    if kind == "mlp":
        model = mlp([6, 7, 4]).float()
        x, t = class_batch(5, (6,), 4)
    else:
        model = convnet({"padding": 1}, pool=True, in_shape=(3, 2, 10, 10)).float()
        x, t = class_batch(3, (2, 10, 10), 5)
    return model, x.float(), t


@pytest.mark.parametrize("kind", ["mlp", "convnet"])
@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_rule_converts_and_learns(rule, kind):
    plain, x, t = registry_net(kind)
    if kind == "convnet" and not RULES[rule].supports_conv:  # refused before anything is swapped
        with pytest.raises(ValueError, match="fully connected"):
            converted(plain, rule, example_input=x)
        return
    model = converted(plain, rule, example_input=x)
    with torch.no_grad():  # the forward pass is the unconverted model's, to the bit
        assert torch.equal(model(x), plain(x))
    rule_of(model).compute_gradients(model, x, t, ce)
    name, out_layer = converted_layers(model)[-1]
    for p in (out_layer.weight, out_layer.bias):
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{rule}: output layer {name}"
        assert p.grad.abs().sum() > 0


@pytest.mark.parametrize("rule", ALL_RULES)
def test_rule_flags_match_the_layers(rule):
    cls = RULES[rule]
    model = converted(mlp([6, 7, 4]), rule)
    for name, layer in converted_layers(model):
        assert layer.rule.name == rule
        if not cls.has_feedback:
            assert not hasattr(layer, "feedback_weight"), name
            continue
        B = layer.feedback_weight
        assert isinstance(B, nn.Parameter) == cls.learns_feedback, name
        if not cls.learns_feedback:  # a fixed B is state (saved, moved by .to) but not trained
            assert "feedback_weight" in dict(layer.named_buffers()), name
        if cls.layerwise:
            assert B.shape == layer.weight.shape, name


@pytest.mark.parametrize("rule", ALL_RULES)
def test_every_rule_has_a_config(rule):
    assert (CONF_RULE_DIR / f"{rule}.yaml").is_file(), f"missing {CONF_RULE_DIR / (rule + '.yaml')}"


def test_report_lists_modules_with_their_own_weights():
    model = nn.Sequential(nn.Linear(4, 4), nn.MultiheadAttention(4, 2))
    report = fa_bench.convert(model, "fa").fa_report
    assert report.converted == ["0"]
    assert report.left_on_backprop["1"] == "MultiheadAttention"  # its in_proj_weight trains by autograd


def test_report_lists_what_stays_on_backprop():
    plain, _, _ = registry_net("convnet")
    report = converted(plain, "fa").fa_report
    assert report.converted == ["0", "3", "7"]
    assert report.left_on_backprop == {"1": "Tanh", "2": "MaxPool2d", "4": "Tanh", "5": "MaxPool2d",
                                       "6": "Flatten"}


# ------------------------------------------------------------------------------------------------
# 12. bad input
# ------------------------------------------------------------------------------------------------
def test_unknown_rule_lists_valid_rules():
    with pytest.raises(ValueError) as err:
        fa_bench.convert(mlp([3, 2]), "nope")
    words = set(re.findall(r"\w+", str(err.value)))  # whole words: "fa" must not hide in "dfa"
    assert "nope" in words
    assert set(ALL_RULES) <= words, f"missing {set(ALL_RULES) - words} in: {err.value}"


@pytest.mark.parametrize("rule", ALL_RULES)
def test_unknown_option_names_valid_options(rule):
    with pytest.raises(TypeError) as err:
        fa_bench.convert(mlp([3, 2]), rule, bogus_option=1)
    words = set(re.findall(r"\w+", str(err.value)))
    valid = {*Rule.options, *RULES[rule].options}  # the shared options plus the rule's own
    assert "bogus_option" in words
    assert valid <= words, f"missing {valid - words} in: {err.value}"


def test_model_without_convertible_layers():
    with pytest.raises(ValueError, match="no nn.Linear or nn.Conv2d"):
        fa_bench.convert(nn.Sequential(nn.Tanh(), nn.Flatten()), "fa")


@pytest.mark.parametrize("rule", ALL_RULES)
def test_unknown_output_layer(rule):
    # every rule gives Rule.attach's clear error naming the converted layers (not a bare KeyError)
    with pytest.raises(ValueError, match="converted") as err:
        fa_bench.convert(mlp([3, 4, 2]), rule, output_layer="nope")
    assert "output_layer" in str(err.value) and "'0'" in str(err.value) and "'2'" in str(err.value)


@pytest.mark.parametrize("rule", ["usf", "frsf", "brsf", "usf_init", "usf_sn"])
def test_sign_concordant_refresh_rebuilds_exactly_the_stale_feedback(rule, monkeypatch):
    """The probe's refresh: after an optimizer step every B follows the new W; with W unchanged since B
    was built (the probe's own rule pass) nothing is rebuilt, and a deferred B is built when read."""
    model = converted(mlp([5, 6, 4, 3]), rule)
    x, _ = class_batch(4, (5,), 3)
    model(x)
    flip_all_weight_signs(model)
    layers = converted_layers(model)
    instance = layers[0][1].rule
    for _, layer in layers:
        instance.refresh(layer)
    for name, layer in layers:
        W, B = layer.weight.detach(), layer.feedback_weight
        assert torch.equal(torch.sign(B), torch.sign(W)), f"layer {name}: B kept the old signs"
    calls = []
    monkeypatch.setattr(type(instance), "rebuild", lambda self, layer: calls.append(layer))
    model(x)  # rebuilds the B of every layer that sends an error down, from this W
    for _, layer in layers:
        instance.refresh(layer)
    assert calls == [], "refresh rebuilt a B that was built from the current W"
    flip_all_weight_signs(model)
    for _, layer in layers[1:]:
        instance.refresh(layer)
    assert calls == [layer for _, layer in layers[1:]], "refresh skipped a B whose W had changed"
