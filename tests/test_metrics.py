"""Each metric on hand-made tensors (SPEC §4)."""
import math

import pytest
import torch

from fa_bench import metrics as M


def test_angle_known_values():
    e1, e2 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert M.angle(e1, e2) == pytest.approx(90.0)
    assert M.angle(e1, e1 * 3) == pytest.approx(0.0, abs=1e-6)
    assert M.angle(e1, -e1) == pytest.approx(180.0)  # the data does not fold into [0, 90]
    assert M.angle(e1, torch.tensor([1.0, 1.0])) == pytest.approx(45.0)
    assert math.isnan(M.angle(e1, torch.zeros(2)))


def test_angle_flattens_matrices():
    a = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    assert M.angle(a, b) == pytest.approx(90.0)


def test_batch_angle_is_per_example_mean():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.0, 2.0], [1.0, 0.0]])  # 90° and 0°: per-example mean 45°, pooled angle would differ
    assert M.batch_angle(a, b) == pytest.approx(45.0)
    assert M.angle(a, b) != pytest.approx(45.0)


def test_nse_of_mean_predictor_is_one_and_perfect_is_zero():
    t = torch.randn(50, 3) * 2 + 1
    assert M.nse(t.mean(0).expand_as(t), t) == pytest.approx(1.0)
    assert M.nse(t, t) == 0.0
    assert M.nse(t + 1.0, t) == pytest.approx(50 * 3 / float((t - t.mean(0)).pow(2).sum()))


def test_error_and_top5():
    out = torch.tensor([[0.1, 0.9, 0.0, 0, 0, 0], [0.8, 0.1, 0.05, 0, 0, 0.05]])
    target = torch.tensor([1, 2])
    assert M.error(out, target) == pytest.approx(50.0)
    assert M.top5_error(out, target) == pytest.approx(0.0)
    out6 = torch.arange(6.0).repeat(1, 1)
    assert M.top5_error(out6, torch.tensor([0])) == pytest.approx(100.0)  # class 0 is ranked last


def test_sign_congruence_rel_error_norm_ratio():
    W = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    B = torch.tensor([[2.0, 1.0], [3.0, -1.0]])
    assert M.sign_congruence(W, B) == pytest.approx(0.75)
    assert M.rel_error(W, W) == 0.0
    assert M.rel_error(W, B) == pytest.approx(float((W - B).norm() / W.norm()))
    assert M.norm_ratio(torch.ones(4) * 2, torch.ones(4)) == pytest.approx(2.0)


def test_neuron_angles_use_columns_of_w_and_b():
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    B = torch.tensor([[1.0, 1.0], [0.0, 1.0]])  # unit 0: same column (0°); unit 1: (0,1) vs (1,1): 45°
    assert M.neuron_angles(W, B).tolist() == pytest.approx([0.0, 45.0])


@pytest.mark.parametrize("shape", [(7, 5), (6, 3, 3, 3)], ids=["linear", "conv"])
@pytest.mark.parametrize("chunk", [4, 1 << 16], ids=["many_chunks", "one_chunk"])
def test_seed_axis_metrics_equal_the_per_seed_ones(shape, chunk, monkeypatch):
    """The probe's seed-axis metrics, chunked or not, give each seed what the one-tensor metrics give it."""
    monkeypatch.setattr(M, "CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    W, B = torch.randn(3, *shape, generator=g), torch.randn(3, *shape, generator=g)
    B[1] = W[1]  # a seed whose feedback is its own W: every angle 0, rel_error 0
    B[2, 0] = -W[2, 0]
    angle, congruence, rel, neuron = M.seed_weight_metrics(W, B)
    for s in range(3):
        assert angle[s].item() == pytest.approx(M.angle(W[s], B[s]), abs=1e-6)
        assert congruence[s].item() == pytest.approx(M.sign_congruence(W[s], B[s]))
        assert rel[s].item() == pytest.approx(M.rel_error(W[s], B[s]), abs=1e-12)
        assert neuron[s].tolist() == pytest.approx(M.neuron_angles(W[s], B[s]).tolist(), abs=1e-6)
        assert M.seed_angles(W, B)[s].item() == pytest.approx(M.angle(W[s], B[s]), abs=1e-6)
    assert rel[1].item() == 0.0 and congruence[1].item() == 1.0
    d_rule, d_bp = torch.randn(3, 8, *shape[1:], generator=g), torch.randn(3, 8, *shape[1:], generator=g)
    d_rule[2] = 0  # nothing reaches this seed's layer: no angle, and the mask says so
    angle, ratio, sent = M.seed_delta_metrics(d_rule, d_bp)
    assert sent.tolist() == [True, True, False]
    for s in range(2):
        assert angle[s].item() == pytest.approx(M.batch_angle(d_rule[s], d_bp[s]), abs=1e-6)
        assert ratio[s].item() == pytest.approx(M.norm_ratio(d_bp[s], d_rule[s]))
    assert math.isnan(angle[2].item()) and math.isnan(ratio[2].item())


@pytest.mark.parametrize("shape", [(3, 5, 4), (2, 3, 2, 4)], ids=["examples", "examples_x_positions"])
def test_outer_product_angles_are_the_angles_of_the_formed_gradients(shape):
    """⟨δaᵀx, δbᵀx⟩ from Gram matrices over the examples equals forming both gradients (in float64)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    da, db = torch.randn(*shape[:-1], 6, generator=g), torch.randn(*shape[:-1], 6, generator=g)
    flat = [t.flatten(1, -2).double() for t in (x, da, db)]
    formed_a, formed_b = (d.transpose(1, 2) @ flat[0] for d in flat[1:])
    got = M.seed_outer_product_angles(x, da, db)
    assert got.tolist() == pytest.approx(M.seed_angles(formed_a, formed_b).tolist(), abs=1e-9)
    assert M.seed_outer_product_angles(x, da, da).tolist() == pytest.approx([0.0] * shape[0], abs=1e-5)
    assert M.seed_outer_product_angles(x, da, -da).tolist() == pytest.approx([180.0] * shape[0], abs=1e-5)
    zero = M.seed_outer_product_angles(x, torch.zeros_like(da), db)
    assert torch.isnan(zero).all()  # no update: no angle, as seed_angles gives
