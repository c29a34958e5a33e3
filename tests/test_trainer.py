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


class _Counter:
    """A minimal engine: one seed, a constant prediction; enough to drive the loop's schedule."""

    def __new__(cls, honours=frozenset()):
        from fa_bench.trainer import Engine

        class Counter(Engine):
            name = "counter"
            task = "classification"

            def __init__(self):
                self.honours = frozenset(honours)
                self.steps, self.evaluations = [], 0

            def steps_per_epoch(self):
                return 5

            def epoch_batches(self, epoch, start=0):
                return [torch.tensor([0, 1]) for _ in range(5)][start:]

            def batch_examples(self, batch):
                return 2

            def train_step(self, batch):
                self.steps.append(batch)
                return {"y": torch.tensor([[0, 1]]), "pred": torch.tensor([[0, 0]])}

            def evaluate(self, seeds):
                self.evaluations += 1
                return {s: {"error": 50.0} for s in seeds}

        return Counter()


def test_an_engine_refuses_the_trainer_options_it_does_not_honour():
    from fa_bench.records import MetricsWriter
    from fa_bench.trainer import TrainConfig, train_loop

    cfg = TrainConfig(epochs=1, eval_every=2, metrics_every=0, progress=False, phases=[{"steps": 2}])
    with pytest.raises(ValueError, match=r"engine 'counter' does not honour trainer option phases=\[\{'steps': 2\}\]"):
        train_loop(_Counter(), cfg, [MetricsWriter(None)])
    with pytest.raises(ValueError, match="metrics_every=100"):  # the probe asked of an engine without one
        train_loop(_Counter(), TrainConfig(progress=False), [MetricsWriter(None)])
    engine = _Counter(honours={"phases"})
    result = train_loop(engine, cfg, [MetricsWriter(None)])[0]
    # the loop's own schedule: 5 steps, evaluations at 0, 2, 4 and the end; the window's error is 50 %
    assert (result.steps, result.examples, result.epochs_run, engine.evaluations) == (5, 10, 1, 4)
    assert result.final["train/error"] == 50.0 and result.final["train/phase"] == 1


def test_the_spiking_engine_refuses_trainer_and_metrics_settings():
    from fa_bench.run import ConfigError

    base = ["experiment=lillicrap_fig4", "hydra.mode=RUN"]
    for override, key in (("trainer.phases=[{steps: 2}]", "trainer.phases"), ("trainer.epochs=3", "trainer.epochs"),
                          ("metrics.every=10", "metrics.every")):
        with pytest.raises(ConfigError, match=f"engine=spiking does not honour {key}="):
            resolve_config(compose_config([*base, override]))
    resolve_config(compose_config([*base, "trainer.progress=false"]))  # progress is the loop's, always honoured
