"""Lansdell, Prakash & Kording 2020: Fig. 4's fixed-W setup, and the CIFAR CNN of Tables 1 and 2b.

- lansdell_fig4: W is bitwise what it was drawn as after training, while B moves (by the ridge solver);
- the CNN (the paper's and the code's first layer): output shape, and the sizes of its layers;
- np_feedback / sg form=direct on convolutions, in float64 on a tiny linear conv net:
  - the node-perturbation estimate λ̂ at a conv layer's input is unbiased for ∂L/∂(that input);
  - with W fixed, B_l converges to J_l = ∂a_out/∂(layer l's input) (Corollary 1 on a conv net): exactly
    (up to γ) for sg, to a few percent for np_feedback, and not at all when λ̂ is shuffled (a control);
  - with B_l = J_l the direct-form signals are exactly backprop's gradients, also through explicit
    (reflect) padding;
  - on the CNN every B but the first is sized output → layer input and moves in one step;
- lansdell_table1 and lansdell_table2b run end to end on the session's fake CIFAR files, and Table 2b's
  noise cells really put noise on the activations (the same seed trains differently without it).
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fa_bench
from fa_bench import converted_layers
from fa_bench.config import compose_config
from fa_bench.models import build_model
from fa_bench.run import resolve_config, run


def sse(out, target):
    return 0.5 * ((out - target) ** 2).flatten(1).sum(1)


def layers_of(model):
    return [layer for _, layer in converted_layers(model)]


def rel_error(A, B):
    return ((A - B).norm() / A.norm()).item()


# ------------------------------------------------------------------------------------------------
# Fig. 4: W fixed, B learns
# ------------------------------------------------------------------------------------------------
TINY_MNIST = ["trainer.max_steps=6", "trainer.batch_size=8", "trainer.eval_every=3", "trainer.progress=false",
              "metrics.every=3", "metrics.batch_size=16", "dataset.n_train=64", "dataset.n_test=32"]


@pytest.mark.parametrize("cell", ["lansdell_fig4_c1e-2", "lansdell_fig4_n30"])
def test_fig4_holds_w_at_its_draw_while_b_learns(tmp_path, cell, monkeypatch):
    import fa_bench.run as run_mod

    cfg = resolve_config(compose_config(["experiment=lansdell_fig4", f"cell={cell}", *TINY_MNIST]))
    assert cfg.rule.warmup_steps == cfg.trainer.max_steps and cfg.rule.solver == "ridge"
    assert cfg.rule.gamma == 0.1
    caught = {}
    real_convert = run_mod.fa_bench.convert

    def spy(model, *args, **kwargs):  # the model run() trains, with its W and B as first drawn
        out = real_convert(model, *args, **kwargs)
        caught["model"] = out
        caught["start"] = {k: v.clone() for k, v in out.state_dict().items()}
        return out

    monkeypatch.setattr(run_mod.fa_bench, "convert", spy)
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == 6
    model, start = caught["model"], caught["start"]
    layers = layers_of(model)
    if cell.endswith("n30"):
        assert [layer.weight.shape[0] for layer in layers] == [30, 50, 10]
    for name, layer in converted_layers(model):
        assert torch.equal(layer.weight, start[f"{name}.weight"]) and torch.equal(layer.bias, start[f"{name}.bias"])
    assert torch.equal(layers[0].feedback_weight, start[f"{converted_layers(model)[0][0]}.feedback_weight"])
    for name, layer in converted_layers(model)[1:]:  # every learned B moved: the ridge solution of 6 batches
        assert not torch.allclose(layer.feedback_weight, start[f"{name}.feedback_weight"])
        V = layer.feedback_V  # γI + Σ ẽᵀẽ over the 6 batches
        assert V.trace() > 0.1 * V.shape[0] and torch.equal(V, V.t())


# ------------------------------------------------------------------------------------------------
# the CNN
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model_cfg, first, n_classes", [("lansdell_cifar_cnn", (32, 3, 3, 3), 10),
                                                         ("lansdell_cifar_cnn_code", (96, 3, 5, 5), 100)])
def test_cnn_shapes(model_cfg, first, n_classes):
    cfg = compose_config([f"model={model_cfg}", f"model.n_classes={n_classes}"])
    kwargs = {k: v for k, v in dict(cfg.model).items() if k != "name"}
    model = build_model(cfg.model.name, **kwargs)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert tuple(convs[0].weight.shape) == first
    assert [tuple(c.weight.shape[:2]) for c in convs[1:]] == [(128, first[0]), (256, 128)]
    assert [c.kernel_size for c in convs[1:]] == [(5, 5), (5, 5)]
    assert [tuple(m.weight.shape) for m in linears] == [(2048, 256 * 4 * 4), (2048, 2048), (n_classes, 2048)]
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in model) == 2
    x = torch.randn(2, 3, 32, 32)
    h = x
    sides = []
    for m in model:
        h = m(h)
        if isinstance(m, nn.MaxPool2d):
            sides.append(h.shape[-1])
    assert sides == [16, 8, 4]  # TF 'SAME' 3x3/2 pooling: ceil(n / 2)
    model.eval()
    assert model(x).shape == (2, n_classes)


# ------------------------------------------------------------------------------------------------
# the direct form on convolutions
# ------------------------------------------------------------------------------------------------
def linear_conv_net(pad_mode="zeros", seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 1, 3, padding=1, padding_mode=pad_mode),
                         nn.Flatten(), nn.Linear(9, 3)).double()


def direct_map(plain, k, shape):
    """J_k: the Jacobian of the output with respect to module k's input, (n_out, numel of one input)."""
    mods = list(plain)

    def tail(h):
        for m in mods[k:]:
            h = m(h)
        return h

    return torch.autograd.functional.jacobian(tail, torch.zeros(1, *shape, dtype=torch.float64)).reshape(3, -1)


def example_input():
    return torch.zeros(2, 1, 3, 3, dtype=torch.float64)


def train_feedback(model, n_batches, n, seed=1):
    rule = layers_of(model)[0].rule
    W0 = [layer.weight.detach().clone() for layer in layers_of(model)]
    g = torch.Generator().manual_seed(seed)
    for _ in range(n_batches):
        x = torch.randn(n, 1, 3, 3, generator=g, dtype=torch.float64)
        t = torch.randn(n, 3, generator=g, dtype=torch.float64)
        rule.compute_gradients(model, x, t, sse)
        for p in model.parameters():
            p.grad = None
    assert all(torch.equal(w, layer.weight) for w, layer in zip(W0, layers_of(model)))


def test_conv_estimate_is_unbiased_for_the_input_gradient():
    plain = linear_conv_net(seed=3)
    conv2 = plain[1]
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    t1 = torch.randn(1, 3, generator=g, dtype=torch.float64)
    h = plain[0](x1).detach().requires_grad_(True)
    want = torch.autograd.grad(sse(plain[3](plain[2](conv2(h))), t1).sum(), h)[0][0]
    model = fa_bench.convert(copy.deepcopy(plain), "np_feedback", form="direct", sigma=1e-3, seed=2,
                             example_input=example_input())
    rule = layers_of(model)[0].rule
    x, t = x1.repeat(40000, 1, 1, 1), t1.repeat(40000, 1)
    clean = sse(model(x), t).detach()
    targets = rule.regression_targets(model, x, t, sse, clean, lambda: None)
    est = targets[id(layers_of(model)[1])]
    assert est.shape == (40000, 2, 3, 3)  # the conv layer's input, unflattened
    est = est.mean(0)
    cos = F.cosine_similarity(est.flatten(), want.flatten(), dim=0).item()
    ratio = (est.norm() / want.norm()).item()
    assert cos > 0.98 and 0.9 < ratio < 1.1, (cos, ratio)


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_sg_direct_conv_feedback_is_the_direct_map(pad_mode):
    plain = linear_conv_net(pad_mode)
    J = direct_map(plain, 1, (2, 3, 3))
    model = fa_bench.convert(copy.deepcopy(plain), "sg", form="direct", solver="ridge", gamma=0.1,
                             example_input=example_input())
    l0, l1, l2 = layers_of(model)
    assert l1.feedback_weight.shape == (3, 18) and l2.feedback_weight.shape == (3, 9)
    assert rel_error(J, l1.feedback_weight) > 0.5
    train_feedback(model, 5, 2000)
    assert rel_error(J, l1.feedback_weight) < 1e-4  # exact up to γ's shrinkage
    assert rel_error(l2.weight, l2.feedback_weight) < 1e-4


def test_sg_direct_conv_sgd_solver_converges_to_the_direct_map():
    # B ← B − η Σ eᵀ(eB − λ) with the exact λ = e J: gradient descent on a quadratic whose minimum is J
    plain = linear_conv_net()
    J = direct_map(plain, 1, (2, 3, 3))
    model = fa_bench.convert(copy.deepcopy(plain), "sg", form="direct", solver="sgd", lr_feedback=1e-3,
                             example_input=example_input())
    train_feedback(model, 200, 100)
    assert rel_error(J, layers_of(model)[1].feedback_weight) < 1e-6


def test_np_direct_conv_feedback_converges_to_the_direct_map():
    plain = linear_conv_net()
    J = direct_map(plain, 1, (2, 3, 3))
    model = fa_bench.convert(copy.deepcopy(plain), "np_feedback", form="direct", solver="ridge", sigma=1e-3,
                             example_input=example_input())
    l0, l1, l2 = layers_of(model)
    first_B = l0.feedback_weight.clone()
    train_feedback(model, 60, 2000)
    assert rel_error(J, l1.feedback_weight) < 0.12
    assert rel_error(l2.weight, l2.feedback_weight) < 0.05
    assert torch.equal(l0.feedback_weight, first_B)  # the first layer's B is never learned


def test_np_direct_conv_with_shuffled_estimate_does_not_converge(monkeypatch):
    plain = linear_conv_net()
    J = direct_map(plain, 1, (2, 3, 3))
    model = fa_bench.convert(copy.deepcopy(plain), "np_feedback", form="direct", solver="ridge", sigma=1e-3,
                             example_input=example_input())
    rule = layers_of(model)[0].rule
    right = rule.regression_targets
    perm = torch.randperm(2000, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(rule, "regression_targets", lambda *a: {k: v[perm] for k, v in right(*a).items()})
    train_feedback(model, 30, 2000)
    assert rel_error(J, layers_of(model)[1].feedback_weight) > 0.5


@pytest.mark.parametrize("pad_mode", ["zeros", "reflect"])
def test_direct_signals_with_the_direct_map_are_backprop(pad_mode):
    # with B_l = J_l (and B_out = W_out) a linear net's direct-form signals are its true gradients: every
    # parameter's .grad equals backprop's, including the first conv (reached through the padded layer)
    plain = linear_conv_net(pad_mode, seed=4)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(16, 1, 3, 3, generator=g, dtype=torch.float64)
    t = torch.randn(16, 3, generator=g, dtype=torch.float64)
    ref = copy.deepcopy(plain)
    sse(ref(x), t).mean().backward()
    model = fa_bench.convert(copy.deepcopy(plain), "np_feedback", form="direct", warmup_steps=0,
                             example_input=example_input())
    l0, l1, l2 = layers_of(model)
    with torch.no_grad():
        l1.feedback_weight.copy_(direct_map(plain, 1, (2, 3, 3)))
        l2.feedback_weight.copy_(l2.weight)
    out = model(x)
    sse(out, t).mean().backward()
    for (name, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-9, atol=1e-12, msg=name)


def test_np_direct_on_the_cnn_learns_every_b_but_the_first():
    model = build_model("lansdell_cifar_cnn", channels=[4, 4, 4], hidden=16, seed=0)
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 10
    model = fa_bench.convert(model, "np_feedback", form="direct", solver="sgd", lr_feedback=1e-2, sigma=0.067,
                             example_input=x[:2])
    layers = layers_of(model)
    # B maps the 10 outputs to each layer's input: pooled 4x16x16 and 4x8x8 maps, 4x4x4 flattened, 16, 16
    assert [tuple(layer.feedback_weight.shape) for layer in layers[1:]] == [
        (10, 4 * 16 * 16), (10, 4 * 8 * 8), (10, 4 * 4 * 4), (10, 16), (10, 16)]
    before = [layer.feedback_weight.clone() for layer in layers]
    ce = lambda out, t: F.cross_entropy(out, t, reduction="none")  # noqa: E731
    layers[0].rule.compute_gradients(model, x, y, ce)
    assert torch.equal(layers[0].feedback_weight, before[0])
    assert all(not torch.equal(layer.feedback_weight, b) for layer, b in zip(layers[1:], before[1:]))
    assert all(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
               for p in model.parameters())


def test_layer_form_still_refuses_convolutions():
    with pytest.raises(ValueError, match="form=direct"):
        fa_bench.convert(linear_conv_net(), "np_feedback", example_input=example_input())


# ------------------------------------------------------------------------------------------------
# Tables 1 and 2b end to end on fake CIFAR
# ------------------------------------------------------------------------------------------------
TINY_CNN = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.batch_size=8", "trainer.eval_every=2",
            "trainer.eval_batch_size=20", "trainer.progress=false", "metrics.every=2", "metrics.batch_size=8",
            "model.channels=[4,4,4]", "model.hidden=16"]


@pytest.mark.parametrize("experiment, cell, extra", [
    ("lansdell_table1", "lansdell_t1_c10_np", []), ("lansdell_table1", "lansdell_t1_c100_dfa", []),
    ("lansdell_table1", "lansdell_t1_c10_bp", []), ("lansdell_table2b", "lansdell_t2b_sg", []),
    ("lansdell_table1", "lansdell_t1_c100_np", ["model=lansdell_cifar_cnn_code"])])  # the code's 5x5 first layer
def test_tables_run_end_to_end_on_fake_cifar(tmp_path, fake_cifar_accepted, experiment, cell, extra):
    cfg = resolve_config(compose_config([f"experiment={experiment}", f"cell={cell}", *extra, *TINY_CNN]))
    assert cfg.model.kernels[0] == (5 if extra else 3) and cfg.model.n_classes == (100 if "c100" in cell else 10)
    summary = run(cfg, tmp_path / "run")
    assert summary["status"] == "completed" and summary["steps"] == 2, summary
    assert summary["dataset"] == ("cifar100" if "c100" in cell else "cifar10")
    assert 0 <= summary["final"]["test/error"] <= 100


def test_table2b_noise_cells_put_noise_on_the_activations(tmp_path, fake_cifar_accepted):
    # the same seed with and without the cell's noise: only noise.activations differs, and it changes training
    summaries = {}
    for cell in ("lansdell_t2b_bp", "lansdell_t2b_bp_noise"):
        cfg = resolve_config(compose_config(["experiment=lansdell_table2b", f"cell={cell}", *TINY_CNN]))
        assert (cfg.noise.activations or 0.0) == (0.067 if cell.endswith("noise") else 0.0)
        summaries[cell] = run(cfg, tmp_path / cell)
    losses = [summaries[cell]["final"]["train/loss"] for cell in ("lansdell_t2b_bp", "lansdell_t2b_bp_noise")]
    assert losses[0] != losses[1]
