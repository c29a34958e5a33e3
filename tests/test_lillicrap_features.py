"""Features Lillicrap 2016's figures need, checked against known answers: sparse W and B (the 50 %
control), training phases that freeze layers (Fig. 5c), per-unit neuron angles (Fig. 5a), and the
target networks of Figs. 3d and 5."""
import math

import pytest
import torch
from torch import nn

import fa_bench
from fa_bench import metrics as M
from fa_bench.collect import read_table
from fa_bench.config import compose_config
from fa_bench.convert import converted_layers
from fa_bench.data import load_dataset
from fa_bench.engines.autograd import PhaseSchedule, train
from fa_bench.losses import sse
from fa_bench.probe import AlignmentProbe
from fa_bench.records import MetricsWriter
from fa_bench.run import ConfigError, build, resolve_config, run
from fa_bench.sparsity import masked_layers, sparsify
from fa_bench.trainer import TrainConfig


def _net(rule="fa", seed=0, **opts):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 40), nn.Tanh(), nn.Linear(40, 30), nn.Tanh(), nn.Linear(30, 4))
    return fa_bench.convert(model, rule, seed=seed, **opts)


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    return fa_bench.data.DataBundle(x, torch.tanh(x[:, :4]) * 2, x[:16], torch.tanh(x[:16, :4]) * 2,
                                    "regression", 4)


def _train(model, steps, phases=None, lr=0.05, decay=0.0, momentum=0.0):
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=decay, momentum=momentum)
    cfg = TrainConfig(epochs=100, max_steps=steps, batch_size=8, eval_every=4, eval_batch_size=16,
                      metrics_every=0, progress=False, phases=phases)
    return train(model, fa_bench.rule_of(model), _data(), sse, opt, cfg, MetricsWriter(None),
                 torch.Generator().manual_seed(0))


# --- sparse connectivity ----------------------------------------------------------------------
def test_sparsify_removes_the_fraction_from_w_and_b_independently():
    model = _net()
    layers = sparsify(model, 0.5, torch.Generator().manual_seed(1))
    assert len(layers) == 3
    W, B = layers[1].weight, layers[1].feedback_weight
    assert (W == 0).double().mean().item() == pytest.approx(0.5, abs=0.1)
    assert (B == 0).double().mean().item() == pytest.approx(0.5, abs=0.1)
    both = ((W != 0) & (B != 0)).double().mean().item()
    assert both == pytest.approx(0.25, abs=0.08)  # the paper's 25 % reciprocal connections
    assert not torch.equal(W == 0, B == 0)


def test_removed_weights_stay_removed_through_training_decay_and_momentum():
    model = _net()
    sparsify(model, 0.5, torch.Generator().manual_seed(1))
    masks = [(layer.weight_mask.clone(), layer.feedback_mask.clone(), layer.weight.detach().clone())
             for layer in masked_layers(model)]
    _train(model, 20, decay=0.01, momentum=0.9)
    for layer, (wm, bm, w0) in zip(masked_layers(model), masks):
        assert torch.all(layer.weight[wm == 0] == 0)
        assert torch.all(layer.feedback_weight[bm == 0] == 0)
        assert not torch.equal(layer.weight[wm == 1], w0[wm == 1])  # the kept weights do learn


def test_sparsity_is_a_config_option_and_rejects_bad_fractions():
    cfg = resolve_config(compose_config(["experiment=lillicrap_fig2", "hydra.mode=RUN", "rule=fa",
                                         "sparsity=0.5"]))
    _, model, _, _ = build(cfg, torch.device("cpu"))
    assert len(masked_layers(model)) == 2
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        resolve_config(compose_config(["sparsity=1.5"]))


def test_no_sparsity_leaves_the_model_untouched():
    model = _net()
    before = [p.detach().clone() for p in model.parameters()]
    assert sparsify(model, 0.0, torch.Generator().manual_seed(1)) == []
    assert masked_layers(model) == []
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --- phases that freeze layers ------------------------------------------------------------------
def test_phases_freeze_exactly_the_listed_layers_for_exactly_their_steps():
    model = _net()
    layers = [layer for _, layer in converted_layers(model)]
    snap = lambda: [(l.weight.detach().clone(), l.bias.detach().clone()) for l in layers]  # noqa: E731
    start = snap()
    _train(model, 5, phases=[{"steps": 5, "freeze": [-1, 0]}])
    after1 = snap()
    assert torch.equal(after1[0][0], start[0][0]) and torch.equal(after1[0][1], start[0][1])
    assert torch.equal(after1[2][0], start[2][0]) and torch.equal(after1[2][1], start[2][1])
    assert not torch.equal(after1[1][0], start[1][0])  # the middle layer, not listed, learned

    model = _net()
    layers = [layer for _, layer in converted_layers(model)]
    start = snap()
    # phase 0 freezes the output for 3 steps, phase 1 the first layer ('0' by name) for 2; then nothing
    _train(model, 3, phases=[{"steps": 3, "freeze": [-1]}, {"steps": 2, "freeze": ["0"]}])
    mid = snap()
    assert torch.equal(mid[2][0], start[2][0]) and not torch.equal(mid[0][0], start[0][0])


def test_phase_sequence_matches_a_manual_run_with_requires_grad_off():
    """Freezing by phase = training the same model by hand with the frozen layer's step skipped."""
    a, b = _net(seed=3), _net(seed=3)
    _train(a, 6, phases=[{"steps": 3, "freeze": [-1]}, {"steps": 3, "freeze": [0]}])
    la = [layer for _, layer in converted_layers(b)]
    data, g = _data(), torch.Generator().manual_seed(0)
    opt = torch.optim.SGD(b.parameters(), lr=0.05)
    rule = fa_bench.rule_of(b)
    order = torch.randperm(64, generator=g)
    for step, idx in enumerate(order.split(8)[:6]):
        opt.zero_grad(set_to_none=True)
        rule.compute_gradients(b, data.x_train[idx], data.y_train[idx], sse)
        frozen = la[-1] if step < 3 else la[0]
        for p in frozen.parameters():
            p.grad = None
        opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_phase_schedule_counts_steps_and_names_unknown_layers():
    model = _net()
    phases = [{"steps": 2, "freeze": [0]}, {"steps": 3, "freeze": []}]
    sched = PhaseSchedule(model, phases)
    assert [TrainConfig(phases=phases).phase_at(s) for s in range(7)] == [0, 0, 1, 1, 1, 2, 2]
    assert sched.frozen_in(2) == [] and len(sched.frozen_in(0)) == 2  # after the phases, nothing is frozen
    with pytest.raises(ValueError, match=r"converted layers: \['0', '2', '4'\]"):
        PhaseSchedule(model, [{"steps": 2, "freeze": [7]}])
    with pytest.raises(ValueError, match="steps: int >= 1"):
        TrainConfig(phases=[{"steps": 0, "freeze": [0]}])
    with pytest.raises(ValueError, match="steps: int >= 1"):
        TrainConfig(phases=[{"steps": 2, "frozen": [0]}])


def test_a_bad_phase_layer_fails_before_training(tmp_path):
    cfg = compose_config(["experiment=lillicrap_fig5", "hydra.mode=RUN", "trainer=lillicrap_fig5c",
                          "trainer.phases=[{steps: 2, freeze: [9]}]", "dataset.n_train=8"])
    with pytest.raises(ConfigError, match="no converted layer 9"):
        build(resolve_config(cfg), torch.device("cpu"))


def test_phases_are_logged_at_each_evaluation(tmp_path):
    cfg = compose_config(["experiment=lillicrap_fig5", "hydra.mode=RUN", "trainer=lillicrap_fig5c",
                          "trainer.phases=[{steps: 4, freeze: [-1]}, {steps: 4, freeze: [0]}]",
                          "dataset.n_train=12", "trainer.eval_every=2", "metrics.every=0",
                          "trainer.progress=false"])
    summary = run(cfg, tmp_path)
    assert summary["status"] == "completed"
    rows = read_table(tmp_path / "metrics.csv")
    phases = rows[rows["name"] == "phase"].set_index("step")["value"].to_dict()
    assert phases == {0: 0, 2: 0, 4: 0, 6: 1, 8: 1, 10: 2, 12: 2}


# --- per-unit neuron angles -------------------------------------------------------------------
def test_sampled_neuron_angles_match_the_columns_of_w_and_b():
    model = _net()
    probe = AlignmentProbe(model, sse, neuron_sample=5, seed=2)
    x, y = torch.randn(8, 6), torch.randn(8, 4)
    rows = {(name, layer): v for name, layer, v in probe.measure(x, y)}
    layer = dict(converted_layers(model))["4"]
    W, B = layer.weight.detach().double(), layer.feedback_weight.double()
    units = probe.units["4"]
    assert len(units) == 5 and len(set(units)) == 5
    for j in units:
        cos = float(W[:, j] @ B[:, j] / (W[:, j].norm() * B[:, j].norm()))
        assert rows[("neuron_angle", f"4:{j}")] == pytest.approx(math.degrees(math.acos(cos)), abs=1e-9)
    assert rows[("neuron_angle", "4")] == pytest.approx(float(M.neuron_angles(W, B).mean()))
    assert not any(layer_name.startswith("0:") for _, layer_name in rows)  # the input layer reads data
    # the same seed samples the same units; none are sampled by default
    assert AlignmentProbe(model, sse, neuron_sample=5, seed=2).units == probe.units
    assert all(not u for u in AlignmentProbe(model, sse).units.values())


# --- target networks ------------------------------------------------------------------------
def _teacher_output(x, teacher_seed):
    g = fa_bench.seeding.generator(teacher_seed, "teacher")
    W0 = (torch.rand(4, 5, generator=g) * 2 - 1) * 0.5
    b0 = (torch.rand(4, generator=g) * 2 - 1) * 0.5
    W1 = (torch.rand(3, 4, generator=g) * 2 - 1) * 0.5
    b1 = (torch.rand(3, generator=g) * 2 - 1) * 0.5
    return torch.tanh(x @ W0.t() + b0) @ W1.t() + b1  # tanh hidden, linear output


def test_teacher_net_is_the_tanh_network_it_says():
    kw = dict(sizes=[5, 4, 3], weight_scale=0.5, n_train=50, n_test=10)
    data = load_dataset("teacher_net", seed=1, **kw)
    assert torch.allclose(data.y_train, _teacher_output(data.x_train, 1), atol=1e-6)
    assert torch.allclose(data.y_test, _teacher_output(data.x_test, 1), atol=1e-6)
    assert data.task == "regression" and data.n_outputs == 3
    # teacher_seed fixes the target across run seeds; the inputs still follow the run seed
    a = load_dataset("teacher_net", seed=1, teacher_seed=7, **kw)
    b = load_dataset("teacher_net", seed=2, teacher_seed=7, **kw)
    assert not torch.equal(a.x_train, b.x_train)
    for d in (a, b):
        assert torch.allclose(d.y_train, _teacher_output(d.x_train, 7), atol=1e-6)


def test_quadratic_teacher_is_x_q_x():
    data = load_dataset("quadratic_teacher", n_in=3, n_out=2, n_train=40, n_test=5, seed=4)
    assert data.x_train.abs().max() <= 2.0
    # recover Q_k's symmetric part from the data: y_k is linear in the monomials x_i x_j
    x = data.x_train.double()
    feats = torch.stack([x[:, i] * x[:, j] for i in range(3) for j in range(i, 3)], 1)
    coef, *_ = torch.linalg.lstsq(feats, data.y_train.double()).solution, None
    assert torch.allclose(feats @ coef, data.y_train.double(), atol=1e-4)
    assert coef.abs().max() <= 1.0 + 1e-6  # |Q_ij + Q_ji| <= 2 × 0.5


# --- a phase that switches the rule (Nøkland Fig. 2 left) ------------------------------------------
def test_a_phase_can_switch_the_rule_and_dfa_direct_reaches_only_the_listed_layer():
    """BP with layer 0 frozen for 3 steps, then dfa with the error sent only into layer 0: the upper
    layers keep exact BP gradients and layer 0 gets (B_1 e) ∘ f' xᵀ (checked on the step after the switch)."""
    a = _net("bp", seed=5)
    _train(a, 3, phases=[{"steps": 3, "freeze": [0]}, {"steps": 1, "rule": {"name": "dfa", "direct": [0]}}])
    assert fa_bench.rule_of(a).name == "bp"  # the switch happens at the phase's first step, not before
    b = _net("bp", seed=5)
    _train(b, 4, phases=[{"steps": 3, "freeze": [0]}, {"steps": 1, "rule": {"name": "dfa", "direct": [0]}}])
    rule = fa_bench.rule_of(b)
    assert rule.name == "dfa" and rule.opts["direct"] == [0]
    # one more step's gradients by hand from a's state (= b's state before its 4th step)
    x, y = _data().x_train[:8], _data().y_train[:8]
    la = [layer for _, layer in converted_layers(a)]
    B1 = [layer for _, layer in converted_layers(b)][1].feedback_weight
    h0 = torch.tanh(la[0](x))
    h1 = torch.tanh(la[1](h0))
    out = la[2](h1)
    e = (out - y) / 8  # ∂ mean-SSE / ∂out
    d1 = (e @ la[2].weight) * (1 - h1 ** 2)  # exact BP into layer 1
    d0 = (e @ B1) * (1 - h0 ** 2)  # the direct error into layer 0 (through the layer above's B)
    c = _net("bp", seed=5)
    c.load_state_dict(a.state_dict())
    fa_bench.convert(c, "dfa", seed=0, direct=[0])
    c[2].feedback_weight.copy_(B1)
    fa_bench.rule_of(c).compute_gradients(c, x, y, sse)
    lc = [layer for _, layer in converted_layers(c)]
    assert torch.allclose(lc[2].weight.grad, e.t() @ h1, atol=1e-6)
    assert torch.allclose(lc[1].weight.grad, d1.t() @ h0, atol=1e-6)
    assert torch.allclose(lc[0].weight.grad, d0.t() @ x, atol=1e-6)


def test_a_bad_phase_rule_fails_before_training():
    with pytest.raises(ValueError, match="unknown rule"):
        PhaseSchedule(_net(), [{"steps": 2, "rule": {"name": "nope"}}])
    with pytest.raises(ValueError, match="not supported"):
        PhaseSchedule(_net(), [{"steps": 2, "rule": {"name": "matched"}}])
    with pytest.raises(ValueError, match="no converted layer 7"):
        fa_bench.convert(_net("bp"), "dfa", direct=[7])
    with pytest.raises(ValueError, match="output layer"):
        fa_bench.convert(_net("bp"), "dfa", direct=[-1])
