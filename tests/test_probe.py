"""The alignment probe measures the model as it is now, and never moves the training trajectory."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fa_bench
from fa_bench.config import compose_config
from fa_bench.probe import AlignmentProbe
from fa_bench.run import run


def ce(out, target):
    return F.cross_entropy(out, target, reduction="none")


def trained(rule, sizes=(6, 8, 8, 4), steps=5, lr=0.5, **opts):
    torch.manual_seed(0)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([nn.Tanh()] if i < len(sizes) - 2 else [])
    model = fa_bench.convert(nn.Sequential(*layers), rule, **opts)
    x, t = torch.randn(16, sizes[0]), torch.randint(0, sizes[-1], (16,))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):  # big steps, so weights change sign between forward passes
        opt.zero_grad()
        fa_bench.rule_of(model).compute_gradients(model, x, t, ce)
        opt.step()
    return model, x, t


def by_metric(rows, name):
    return {layer: value for metric, layer, value in rows if metric == name}


@pytest.mark.parametrize("rule", ["usf", "frsf", "brsf"])
def test_sign_concordant_feedback_is_measured_against_the_current_weights(rule):
    model, x, t = trained(rule)
    rows = AlignmentProbe(model, ce).measure(x, t)  # measured after the last update, before any forward
    congruence = by_metric(rows, "sign_congruence")
    assert congruence and all(v == 1.0 for v in congruence.values()), congruence
    if rule == "usf":  # B = sign(W): the angle between W and its own sign pattern, by hand
        for name, layer in fa_bench.converted_layers(model):
            W = layer.weight.detach().flatten()
            by_hand = torch.rad2deg(torch.arccos(W.abs().sum() / (W.norm() * W.numel() ** 0.5))).item()
            assert by_metric(rows, "weight_angle")[name] == pytest.approx(by_hand, abs=1e-3)


def test_bp_measured_against_itself_is_exact():
    model, x, t = trained("bp")
    rows = AlignmentProbe(model, ce).measure(x, t)
    assert all(v == pytest.approx(0.0, abs=1e-4) for v in by_metric(rows, "delta_angle").values())
    assert all(v == pytest.approx(1.0) for v in by_metric(rows, "norm_ratio").values())
    assert all(v == pytest.approx(0.0, abs=1e-4) for v in by_metric(rows, "update_angle").values())


def test_fa_probe_matches_a_hand_computation():
    model, x, t = trained("fa", sizes=(6, 8, 4), steps=2)
    (_, hidden), (_, out) = fa_bench.converted_layers(model)
    rows = AlignmentProbe(model, ce).measure(x, t)
    # by hand: e at the output, δ_FA = (e B) ∘ tanh', δ_BP = (e W) ∘ tanh'
    a = F.linear(x, hidden.weight, hidden.bias)
    y = F.linear(torch.tanh(a), out.weight, out.bias).detach().requires_grad_(True)
    (e,) = torch.autograd.grad(ce(y, t).mean(), y)
    d_fa = (e @ out.feedback_weight) * (1 - torch.tanh(a) ** 2)
    d_bp = (e @ out.weight) * (1 - torch.tanh(a) ** 2)
    cos = F.cosine_similarity(d_fa, d_bp, dim=1).clamp(-1, 1)
    expected = torch.rad2deg(torch.arccos(cos)).mean().item()
    assert by_metric(rows, "delta_angle")["0"] == pytest.approx(expected, abs=1e-3)
    assert by_metric(rows, "norm_ratio")["0"] == pytest.approx((d_bp.norm() / d_fa.norm()).item(), rel=1e-5)
    assert by_metric(rows, "delta_angle")["2"] == pytest.approx(0.0, abs=1e-4)  # the output layer's δ is e
    # the update the rule reports for W0 (δ_FA xᵀ) against the true gradient (δ_BP xᵀ)
    g_fa, g_bp = (d_fa.t() @ x).flatten(), (d_bp.t() @ x).flatten()
    by_hand = torch.rad2deg(torch.arccos(F.cosine_similarity(g_fa, g_bp, dim=0).clamp(-1, 1))).item()
    assert by_metric(rows, "update_angle")["0"] == pytest.approx(by_hand, abs=1e-3)
    # weight-feedback comparisons for the output layer, whose B has W's shape
    W, B = out.weight.detach(), out.feedback_weight
    cos = F.cosine_similarity(W.flatten(), B.flatten(), dim=0).clamp(-1, 1)
    assert by_metric(rows, "weight_angle")["2"] == pytest.approx(torch.rad2deg(torch.arccos(cos)).item(), abs=1e-3)
    assert by_metric(rows, "rel_error")["2"] == pytest.approx(((W - B).norm() / W.norm()).item(), rel=1e-6)
    assert by_metric(rows, "sign_congruence")["2"] == pytest.approx((W.sign() == B.sign()).double().mean().item())
    # neuron_angle: hidden unit j's outgoing weights W[:, j] against its feedback B[:, j], averaged
    per_unit = torch.rad2deg(torch.arccos(F.cosine_similarity(W, B, dim=0).clamp(-1, 1)))
    assert by_metric(rows, "neuron_angle")["2"] == pytest.approx(per_unit.mean().item(), abs=1e-3)


def test_dfa_logs_no_weight_comparisons_even_when_shapes_coincide():
    # 8 -> 4 -> 4: the hidden layer's DFA matrix happens to have W's shape, but it is not W's twin
    model, x, t = trained("dfa", sizes=(8, 4, 4, 4))
    rows = AlignmentProbe(model, ce).measure(x, t)
    assert not by_metric(rows, "weight_angle") and not by_metric(rows, "sign_congruence")
    assert set(by_metric(rows, "delta_angle")) == {"0", "2", "4"}


def test_sign_flips_accumulate():
    model, x, t = trained("fa", steps=0)
    probe = AlignmentProbe(model, ce)
    assert all(v == 0 for v in by_metric(probe.measure(x, t), "sign_flips").values())
    with torch.no_grad():
        for _, layer in fa_bench.converted_layers(model):
            layer.weight[0].neg_()  # flip one row's signs ...
    probe.measure(x, t)
    with torch.no_grad():
        for _, layer in fa_bench.converted_layers(model):
            layer.weight[0].neg_()  # ... and back: "at any logged step so far" still counts them
    flips = by_metric(probe.measure(x, t), "sign_flips")
    for name, layer in fa_bench.converted_layers(model):
        assert flips[name] == pytest.approx(layer.weight.shape[1] / layer.weight.numel())


def test_brsf_trajectory_does_not_depend_on_the_evaluation_cadence(tmp_path):
    # evaluation runs forward passes; a rule that drew its random B there would shift training
    base = ["rule=brsf", "dataset=linear_teacher", "model=linear_30_20_10", "dataset.n_train=64",
            "dataset.n_test=16", "trainer.batch_size=4", "trainer.progress=false", "metrics.every=3"]
    finals = []
    for every, eval_bs in [(16, 16), (4, 16), (16, 3)]:
        summary = run(compose_config(base + [f"trainer.eval_every={every}", f"trainer.eval_batch_size={eval_bs}"]),
                      tmp_path / f"{every}_{eval_bs}")
        finals.append(summary["final"]["test/loss"])
    assert finals[0] == finals[1] == finals[2]


def test_probe_leaves_buffers_and_masks_as_it_found_them():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 4))
    model = fa_bench.convert(net, "bp")
    x, t = torch.randn(16, 6), torch.randint(0, 4, (16,))
    stats = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    rows = AlignmentProbe(model, ce).measure(x, t)
    assert torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, stats[k]), k
    # both passes saw the same dropout masks and batch statistics: bp against exact bp is exact
    assert all(v == pytest.approx(0.0, abs=1e-3) for v in by_metric(rows, "delta_angle").values())
    assert all(v == pytest.approx(0.0, abs=1e-3) for v in by_metric(rows, "update_angle").values())


def test_feedback_angle_is_lansdells_angle_between_what_b_and_w_send_down():
    """angle(ẽ·B, ẽ·W) for the error ẽ the rule delivers to a layer's output; 0 when B = W."""
    import math

    from fa_bench.probe import AlignmentProbe

    torch.manual_seed(0)
    model = fa_bench.convert(nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)),
                             "fa", seed=1)
    x, t = torch.randn(16, 6), torch.randn(16, 3)
    rows = AlignmentProbe(model, lambda o, y: 0.5 * (o - y).pow(2).sum(1)).measure(x, t)
    angles = {layer: v for name, layer, v in rows if name == "feedback_angle"}
    assert set(angles) == {"2", "4"}  # not the first layer
    # by hand for the output layer: ẽ there is ∂(mean loss)/∂out
    out = model(x)
    e = ((out - t) / 16).detach().double()
    W, B = model[4].weight.detach().double(), model[4].feedback_weight.double()
    a, b = (e @ B).flatten(), (e @ W).flatten()
    expected = math.degrees(math.acos(float(a @ b / (a.norm() * b.norm()))))
    assert angles["4"] == pytest.approx(expected, abs=1e-6)
    with torch.no_grad():
        for i in (2, 4):
            model[i].feedback_weight.copy_(model[i].weight)
    rows = AlignmentProbe(model, lambda o, y: 0.5 * (o - y).pow(2).sum(1)).measure(x, t)
    assert all(v == pytest.approx(0, abs=1e-4) for name, _, v in rows if name == "feedback_angle")


@pytest.mark.parametrize("rule", sorted(r for r, cls in fa_bench.RULES.items() if cls.uses_backward))
def test_one_shared_forward_measures_what_two_forwards_do(rule, monkeypatch):
    """Where the probe backpropagates twice through the rule's own forward (AlignmentProbe.shares_forward),
    every metric equals the one a separate exact-backprop forward gives, dropout and batch norm included."""
    def measured():  # a fresh model each time: brsf's probe leaves its own draw of B bound to the layers
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.3), nn.Linear(8, 8),
                            nn.Tanh(), nn.Linear(8, 4))
        model = fa_bench.convert(net, rule)
        x, t = torch.randn(16, 6), torch.randint(0, 4, (16,))
        probe = AlignmentProbe(model, ce)
        torch.manual_seed(1)
        return probe, probe.measure(x, t)

    probe, shared = measured()
    assert probe.shares_forward == (type(probe.rule).forward is fa_bench.layers.LayerBackward.forward)
    monkeypatch.setattr(AlignmentProbe, "shares_forward", property(lambda self: False))
    _, separate = measured()
    assert [(m, n) for m, n, _ in shared] == [(m, n) for m, n, _ in separate]
    assert [v for *_, v in shared] == pytest.approx([v for *_, v in separate], abs=1e-9, nan_ok=True)
    assert any(m == "delta_angle" for m, _, _ in shared)
