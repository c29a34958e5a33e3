"""Trainer options from Moskovitz et al. 2018 that any experiment can use: a step learning-rate schedule,
the Const. norm (eq. 10) and the E/I sign freeze; by value, seed-stacked too, and across a resume."""
import signal

import pytest
import torch

import fa_bench.trainer as trainer_module
from fa_bench.config import compose_config
from fa_bench.constraints import LRSchedule
from fa_bench.convert import converted_layers
from fa_bench.engines.autograd import RuleEngine
from fa_bench.interrupts import RunInterrupted
from fa_bench.records import MetricsWriter
from fa_bench.run import build, resolve_config, run
from fa_bench.seeding import generator
from fa_bench.trainer import TrainConfig, train_loop

BASE = ["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=128", "dataset.n_test=32", "rule=fa",
        "device=cpu", "trainer.progress=false", "optimizer.lr=0.5", "threads=1"]


def engine_for(overrides, **train):
    cfg = resolve_config(compose_config([*BASE, *overrides]))
    data, model, loss_fn, optimizer = build(cfg, torch.device("cpu"))
    tcfg = TrainConfig(batch_size=32, eval_every=4, metrics_every=0, progress=False, **train)
    return RuleEngine(model, data, loss_fn, optimizer, tcfg, seeds=[0], orders=[generator(0, "order")]), tcfg, model


def test_the_step_schedule_is_a_function_of_the_epoch():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-4)
    schedule = LRSchedule(opt, {"milestones": [20], "gamma": 0.1}, steps_per_epoch=10)
    rates = {}
    for step in (0, 199, 200, 450):
        schedule.at_step(step)
        rates[step] = opt.param_groups[0]["lr"]
    assert rates == pytest.approx({0: 1e-4, 199: 1e-4, 200: 1e-5, 450: 1e-5})  # 1e-4 -> 1e-5 at epoch 20
    opt.param_groups[0]["lr"] = 1e-4
    every = LRSchedule(opt, {"every": 30, "gamma": 0.8}, steps_per_epoch=1)
    every.at_step(95)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4 * 0.8 ** 3)
    with pytest.raises(ValueError, match="milestones"):
        LRSchedule(opt, {"milestones": [0.5], "gamma": 0.1}, 1)


def test_a_schedule_to_almost_zero_stops_learning_after_its_milestone():
    engine, tcfg, model = engine_for([], epochs=3, lr_schedule={"milestones": [2], "gamma": 1e-12})
    seen = {}
    original = engine.begin_step

    def spy(step, phase):
        original(step, phase)
        if step == 8:  # the first step of epoch 2 (4 steps an epoch)
            seen["weights"] = [p.detach().clone() for p in model.parameters()]
    engine.begin_step = spy
    train_loop(engine, tcfg, [MetricsWriter(None)])
    for before, after in zip(seen["weights"], model.parameters()):
        torch.testing.assert_close(after.detach(), before, rtol=0, atol=1e-9)
    assert any(not torch.equal(a, b) for a, b in zip(seen["weights"], engine_for([], epochs=1)[2].parameters()))


def test_const_norm_keeps_every_weights_initial_norm():
    engine, tcfg, model = engine_for([], epochs=2, const_norm=True)
    initial = [l.weight.detach().norm().item() for _, l in converted_layers(model)]
    train_loop(engine, tcfg, [MetricsWriter(None)])
    final = [l.weight.detach().norm().item() for _, l in converted_layers(model)]
    assert final == pytest.approx(initial, rel=1e-5)
    free, tcfg, free_model = engine_for([], epochs=2)
    train_loop(free, tcfg, [MetricsWriter(None)])
    assert [l.weight.norm().item() for _, l in converted_layers(free_model)] != pytest.approx(initial, rel=1e-3)


def test_const_norm_holds_each_seeds_norm_on_a_stacked_model():
    from fa_bench.stacking import seed_axis_loss, stack_models

    cfgs = [resolve_config(compose_config([*BASE, f"seed={s}"])) for s in (0, 1)]
    built = [build(c, torch.device("cpu")) for c in cfgs]
    model = stack_models([b[1] for b in built], [0, 1])
    norms = [l.weight.detach().flatten(1).norm(dim=1).clone() for _, l in converted_layers(model)]
    tcfg = TrainConfig(epochs=2, batch_size=32, eval_every=4, metrics_every=0, progress=False, const_norm=True)
    engine = RuleEngine(model, [b[0] for b in built], seed_axis_loss(built[0][2]),
                        torch.optim.SGD(model.parameters(), lr=0.5), tcfg, seeds=[0, 1],
                        orders=[generator(s, "order") for s in (0, 1)])
    train_loop(engine, tcfg, [MetricsWriter(None), MetricsWriter(None)])
    for (_, layer), norm in zip(converted_layers(model), norms):
        torch.testing.assert_close(layer.weight.detach().flatten(1).norm(dim=1), norm, rtol=1e-5, atol=0)


def test_frozen_signs_are_kept_from_the_freeze_on():
    engine, tcfg, model = engine_for(["optimizer.lr=1.0"], epochs=4, freeze_signs_at=0.5)
    train_loop(engine, tcfg, [MetricsWriter(None)])
    frozen = engine.sign_freeze.signs
    assert frozen is not None and engine.sign_freeze.at == 8
    for (_, layer), sign in zip(converted_layers(model), frozen):
        kept = torch.sign(layer.weight.detach())
        assert torch.equal(kept[sign != 0], sign[sign != 0])
    # the control: without the freeze, some signs do change after the same point
    free, tcfg, free_model = engine_for(["optimizer.lr=1.0"], epochs=4)
    seen = {}
    original = free.begin_step

    def spy(step, phase):
        original(step, phase)
        if step == 8:
            seen["signs"] = [torch.sign(l.weight.detach()).clone() for _, l in converted_layers(free_model)]
    free.begin_step = spy
    train_loop(free, tcfg, [MetricsWriter(None)])
    assert any(not torch.equal(torch.sign(l.weight.detach()), s)
               for (_, l), s in zip(converted_layers(free_model), seen["signs"]))


def test_the_options_resume_exactly(tmp_path, monkeypatch):
    overrides = [*BASE, "trainer.epochs=4", "trainer.batch_size=32", "trainer.eval_every=3", "metrics.every=2",
                 "trainer.freeze_signs_at=0.25", "trainer.const_norm=true",
                 "trainer.lr_schedule={milestones: [2], gamma: 0.1}"]
    run(compose_config(overrides), tmp_path / "straight")
    calls = {"n": 0}

    def requested():
        calls["n"] += 1
        return signal.SIGTERM if calls["n"] >= 10 else None  # after the freeze (step 4) and the milestone (8)

    with monkeypatch.context() as m:
        m.setattr(trainer_module, "requested", requested)
        with pytest.raises(RunInterrupted):
            run(compose_config(overrides), tmp_path / "resumed")
    run(compose_config(overrides), tmp_path / "resumed")
    assert (tmp_path / "resumed" / "metrics.csv").read_text() == (tmp_path / "straight" / "metrics.csv").read_text()
