"""Seed batching: seed s of a batched run is the unbatched fa-run of seed s, number for number."""
import csv

import pytest
import torch
from omegaconf import OmegaConf

import fa_bench
from fa_bench.batched import SUPPORTED, train_seeds
from fa_bench.config import compose_config
from fa_bench.records import MetricsWriter
from fa_bench.run import build, resolve_config
from fa_bench.seeding import derive_seed, generator
from fa_bench.trainer import TrainConfig, train

# float32 through different kernels (bmm vs mm): only rounding may differ
CLOSE = {"rtol": 1e-5, "atol": 1e-6}
TEACHER = ["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=96", "dataset.n_test=50", "device=cpu"]
MNIST = ["dataset.n_train=200", "dataset.n_test=100", "model.sizes=[784,32,16,10]", "device=cpu"]


def solo(overrides, seed, steps, batch_size, eval_every, writer=None):
    """One seed exactly as fa-run trains it (fa_bench.run.build + the trainer), metrics off."""
    cfg = resolve_config(compose_config([*overrides, f"seed={seed}"]))
    data, model, loss_fn, optimizer = build(cfg, torch.device("cpu"))
    torch.manual_seed(derive_seed(seed, "global"))
    tcfg = TrainConfig(epochs=10, max_steps=steps, batch_size=batch_size, eval_every=eval_every, metrics_every=0,
                       progress=False)
    result = train(model, fa_bench.rule_of(model), data, loss_fn, optimizer, tcfg, writer or MetricsWriter(None),
                   generator(seed, "order"), seed=seed)
    return cfg, data, model, result


def batched(cfg, seeds, data, steps, batch_size, eval_every, **kwargs):
    """train_seeds with the model, rule, loss and optimizer settings of a composed config."""
    model = OmegaConf.to_container(cfg.model)
    rule = {k: v for k, v in OmegaConf.to_container(cfg.rule).items() if k != "name"}
    return train_seeds(model["sizes"], model["hidden_activation"], cfg.rule.name, seeds, data, loss=cfg.loss,
                       lr=cfg.optimizer.lr, momentum=cfg.optimizer.momentum, weight_decay=cfg.optimizer.weight_decay,
                       epochs=10, max_steps=steps, batch_size=batch_size, eval_every=eval_every,
                       output_activation=model["output_activation"], bias=model["bias"],
                       init=model.get("init", "default"), init_scale=model.get("init_scale"),
                       bias_init_scale=model.get("bias_init_scale"), rule_options=rule, **kwargs)


def assert_same_run(solo_model, solo_result, seed_result):
    state = solo_model.state_dict()
    assert set(state) == set(seed_result.state)
    for name, value in state.items():
        torch.testing.assert_close(seed_result.state[name], value, **CLOSE, msg=name)
    assert (seed_result.status, seed_result.steps, seed_result.examples, seed_result.epochs_run) == (
        solo_result.status, solo_result.steps, solo_result.examples, solo_result.epochs_run)
    assert set(seed_result.final) == set(solo_result.final)
    for key, value in solo_result.final.items():
        assert seed_result.final[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key


@pytest.mark.parametrize("rule", SUPPORTED)
def test_seed_of_a_batched_run_is_its_unbatched_run(rule):
    # a seed-dependent teacher (one data set per seed), momentum and weight decay, 3 epochs of 4 steps
    overrides = [*TEACHER, f"rule={rule}", "optimizer.momentum=0.9", "optimizer.weight_decay=1e-3"]
    seeds = [0, 3]
    runs = [solo(overrides, seed, steps=11, batch_size=32, eval_every=4) for seed in seeds]
    results = batched(runs[0][0], seeds, [data for _, data, _, _ in runs], 11, 32, 4)
    for (_, _, model, result), seed_result in zip(runs, results):
        assert_same_run(model, result, seed_result)


@pytest.mark.parametrize("rule", ["bp", "fa", "dfa"])
def test_mnist_seeds_share_one_data_set_and_log_the_same_rows(rule, tmp_path):
    overrides = [*MNIST, f"rule={rule}", "model.hidden_activation=tanh"]
    seeds = [1, 2]
    paths = {s: (tmp_path / f"solo{s}.csv", tmp_path / f"batched{s}.csv") for s in seeds}
    runs = []
    for s in seeds:
        writer = MetricsWriter(paths[s][0])
        runs.append(solo(overrides, s, steps=9, batch_size=64, eval_every=3, writer=writer))
        writer.close()
    writers = [MetricsWriter(paths[s][1]) for s in seeds]
    results = batched(runs[0][0], seeds, runs[0][1], 9, 64, 3, writers=writers)
    for w in writers:
        w.close()
    for s, (_, _, model, result), seed_result in zip(seeds, runs, results):
        assert_same_run(model, result, seed_result)
        solo_rows, batched_rows = (list(csv.reader(open(p))) for p in paths[s])
        assert [r[:6] for r in batched_rows] == [r[:6] for r in solo_rows]
        for a, b in zip(batched_rows[1:], solo_rows[1:]):
            assert float(a[6]) == pytest.approx(float(b[6]), rel=1e-4, abs=1e-5)


def test_a_diverging_seed_stops_and_the_others_go_on():
    overrides = [*TEACHER, "rule=fa"]
    seeds = [0, 1, 2]
    runs = [solo(overrides, seed, steps=10, batch_size=16, eval_every=3) for seed in seeds]
    datas = [data for _, data, _, _ in runs]
    bad = datas[1]
    bad.y_train, bad.y_test = bad.y_train * 1e5, bad.y_test * 1e5  # window loss far above divergence_loss
    results = batched(runs[0][0], seeds, datas, 10, 16, 3)
    assert [r.status for r in results] == ["completed", "diverged", "completed"]
    assert results[1].steps == 3
    assert max(row[0] for row in results[1].rows) == 3  # nothing logged after it stopped
    for i in (0, 2):
        assert_same_run(runs[i][2], runs[i][3], results[i])
    # the stopped seed keeps the parameters it had when it was stopped
    frozen = batched(runs[0][0], [1], [bad], 3, 16, 3)[0]
    for name, value in frozen.state.items():
        torch.testing.assert_close(results[1].state[name], value, **CLOSE)


def test_different_seeds_differ():
    cfg = resolve_config(compose_config([*TEACHER, "rule=fa"]))
    data = build(cfg, torch.device("cpu"))[0]
    a, b = batched(cfg, [0, 1], data, 6, 16, 3)  # same data: only the seeds' own draws differ
    for name in a.state:
        assert not torch.equal(a.state[name], b.state[name]), name
    assert a.rows[-1][-1] != b.rows[-1][-1]


def test_unsupported_rule_names_the_supported_ones():
    cfg = resolve_config(compose_config([*TEACHER, "rule=fa"]))
    data = build(cfg, torch.device("cpu"))[0]
    with pytest.raises(ValueError, match="supports the rules bp, fa"):
        train_seeds([30, 20, 10, 10], "tanh", "node_perturbation", [0], data, loss="sse")
