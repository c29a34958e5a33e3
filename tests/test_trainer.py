"""Trainer pieces with known answers: the training-window statistics, evaluation mode, seeding."""
import pytest
import torch
from torch import nn

from fa_bench import metrics as M
from fa_bench.config import compose_config
from fa_bench.losses import sse
from fa_bench.run import build, resolve_config
from fa_bench.seeding import derive_seed
from fa_bench.trainer import Window, evaluate


def test_window_nse_is_lillicraps_over_the_whole_window():
    g = torch.Generator().manual_seed(0)
    outs = [torch.randn(4, 3, generator=g) for _ in range(5)]
    ys = [torch.randn(4, 3, generator=g) * 2 + 1 for _ in range(5)]
    window = Window("regression")
    for out, y in zip(outs, ys):
        window.add(sse(out, y), out, y)
    summary = window.summary()
    assert summary["nse"] == pytest.approx(M.nse(torch.cat(outs), torch.cat(ys)), rel=1e-5)
    assert summary["loss"] == pytest.approx(float(sse(torch.cat(outs), torch.cat(ys)).mean()), rel=1e-5)


def test_window_error_counts_misclassified_examples():
    window = Window("classification")
    out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
    window.add(torch.zeros(3), out, torch.tensor([0, 0, 0]))
    assert window.summary()["error"] == pytest.approx(100 / 3)


def test_evaluate_runs_in_eval_mode_and_restores_training_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 5), nn.Dropout(0.9), nn.Linear(5, 2)).train()
    x, y = torch.randn(64, 5), torch.randn(64, 2)
    first = evaluate(model, x, y, sse, "regression", 16)
    second = evaluate(model, x, y, sse, "regression", 7)  # no dropout: same numbers, any batching
    assert first["loss"] == pytest.approx(second["loss"], rel=1e-6)
    assert model.training


def test_each_purpose_draws_its_own_stream():
    assert len({derive_seed(0, p) for p in ("data", "model", "feedback", "order", "global")}) == 5
    # the teacher T and the learner's W0 come from one run seed but must not share draws
    cfg = resolve_config(compose_config(["experiment=lillicrap_fig2", "hydra.mode=RUN", "rule=fa"]))
    data, model, _, _ = build(cfg, torch.device("cpu"))
    T = torch.linalg.lstsq(data.x_train, data.y_train).solution.t()  # recover T from the data
    W0 = model[1].weight.detach()
    cos = torch.nn.functional.cosine_similarity(T[:10].flatten(), W0[:10].flatten(), dim=0)
    assert abs(cos.item()) < 0.5


def test_matched_from_the_command_line_decays():
    cfg = resolve_config(compose_config(["rule=matched"]))
    assert cfg.rule.decay > 0  # "B receives W's update, plus weight decay"
