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
