"""Lansdell 2020's MNIST autoencoder (Fig. 3, Table 2a): training-only noise (fa_bench.noise), the
image-as-target data, the 784-200-2-200-784 net, the table's measure, and the experiments end to end."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from fa_bench import convert
from fa_bench.config import compose_config
from fa_bench.convert import converted_layers
from fa_bench.data import load_dataset
from fa_bench.engines.autograd import RuleEngine
from fa_bench.errors import ConfigError
from fa_bench.figures.lansdell_autoencoder import BATCH, table_measure, table_rows
from fa_bench.papers.lansdell2020 import TABLE2A
from fa_bench.tsne import knn_accuracy
from fa_bench.losses import sse
from fa_bench.models import build_model
from fa_bench.noise import TrainingNoise
from fa_bench.run import resolve_config, run
from fa_bench.scorecard import _per_seed
from fa_bench.seeding import generator
from fa_bench.stacking import seed_axis_loss, stack_models
from fa_bench.trainer import TrainConfig

TINY = ["hydra.mode=RUN", "dataset=linear_teacher", "model=linear_30_20_10", "dataset.n_train=64",
        "dataset.n_test=32", "trainer.batch_size=8", "trainer.eval_every=4", "trainer.progress=false",
        "model.hidden_activation=tanh"]


def _net(seed=0, sizes=(30, 40, 40, 10)):
    torch.manual_seed(seed)
    layers = [nn.Linear(sizes[0], sizes[1]), nn.Tanh(), nn.Linear(sizes[1], sizes[2]), nn.Tanh(),
              nn.Linear(sizes[2], sizes[3])]
    return convert(nn.Sequential(*layers), "fa", seed=seed)


def _layer_inputs(model, noise):
    """(before, after) the noise hook: each converted layer's input, captured by hooks registered
    before and after TrainingNoise.attach."""
    before, after = {}, {}
    layers = converted_layers(model)
    for name, layer in layers:
        layer.register_forward_pre_hook(lambda m, a, name=name: before.__setitem__(name, a[0].detach().clone()))
    noise.attach(model)
    for name, layer in layers:
        layer.register_forward_pre_hook(lambda m, a, name=name: after.__setitem__(name, a[0].detach().clone()))
    return before, after


# --- noise.activations ------------------------------------------------------------------------
def test_activation_noise_is_added_to_every_hidden_activity_with_its_std_in_training_only():
    sigma = 0.3
    model = _net()
    noise = TrainingNoise(activations=sigma, seeds=[4])
    before, after = _layer_inputs(model, noise)
    x = torch.randn(4000, 30)
    clean_out = model(x).detach()
    names = [n for n, _ in converted_layers(model)]
    assert all(torch.equal(before[n], after[n]) for n in names)  # outside training(): no noise at all
    with noise.training():
        noisy_out = model(x).detach()
    assert torch.equal(before[names[0]], after[names[0]]), "the network's input is not a hidden activity"
    for name in names[1:]:
        z = after[name] - before[name]
        assert abs(z.mean().item()) < 0.01
        assert z.std().item() == pytest.approx(sigma, rel=0.02)  # 160 000 draws: the s.d.'s s.e. is 0.2 %
    assert not torch.allclose(noisy_out, clean_out)
    assert torch.equal(model(x).detach(), clean_out), "the noise outlived the training block"


def test_activation_noise_on_the_output_layer_is_none():
    # noise after the last nonlinearity would change the output itself: the output of a net whose last
    # converted layer reads a clean input must equal W h̃ + b for the hidden input h̃ it received
    model = _net()
    noise = TrainingNoise(activations=0.5, seeds=[0])
    _, after = _layer_inputs(model, noise)
    last_name, last = converted_layers(model)[-1]
    x = torch.randn(16, 30)
    with noise.training():
        out = model(x).detach()
    assert torch.allclose(out, after[last_name] @ last.weight.detach().T + last.bias.detach(), atol=1e-6)


def test_noise_streams_are_per_seed_reproducible_and_stacked_seeds_draw_their_own_runs():
    x = torch.zeros(8, 5)
    a = TrainingNoise(activations=1.0, inputs=1.0, seeds=[3])._draw("activation_noise", x)
    b = TrainingNoise(activations=1.0, inputs=1.0, seeds=[3])._draw("activation_noise", x)
    c = TrainingNoise(activations=1.0, inputs=1.0, seeds=[4])._draw("activation_noise", x)
    d = TrainingNoise(activations=1.0, inputs=1.0, seeds=[3])._draw("input_noise", x)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)  # per seed, per purpose
    stacked = TrainingNoise(activations=1.0, seeds=[4, 3], stacked=True)._draw("activation_noise", x.expand(2, 8, 5))
    assert torch.equal(stacked[0], c) and torch.equal(stacked[1], a)


def _engine(model, noise, stacked=False, seeds=(0,)):
    data = load_dataset("linear_teacher", n_train=64, n_test=32, seed=0)
    loss = seed_axis_loss(sse) if stacked else sse
    return RuleEngine(model, data, loss, torch.optim.SGD(model.parameters(), lr=0.01),
                      TrainConfig(batch_size=8, metrics_every=1), seeds=list(seeds),
                      orders=[generator(s, "order") for s in seeds], noise=noise)


def _step(engine, idx, step=0):
    engine.begin_step(step, 0)
    return engine.train_step(idx)


def _linear_teacher_net(seed):
    return convert(build_model("mlp", sizes=[30, 20, 20, 10], hidden_activation="tanh", seed=seed), "fa", seed=seed)


def test_evaluation_and_the_probe_see_the_noiseless_net_and_training_sees_noise():
    clean = _engine(_linear_teacher_net(0), None)
    noisy_model = _linear_teacher_net(0)
    noisy = _engine(noisy_model, TrainingNoise(activations=0.5, seeds=[0]))
    assert clean.evaluate([0]) == noisy.evaluate([0])
    idx = next(iter(noisy.epoch_batches(0)))
    p_clean, p_noisy = clean.probe(idx), noisy.probe(idx)
    assert len(p_clean) == len(p_noisy) == 1 and p_clean[0]  # one seed's metrics, measured on the same net
    assert p_clean[0] == p_noisy[0]
    loss_clean = _step(clean, idx)["loss"]
    loss_noisy = _step(noisy, idx)["loss"]
    assert not torch.allclose(loss_clean, loss_noisy)  # the training step did see the noise


def test_the_probe_never_changes_a_noisy_trajectory(tmp_path):
    overrides = TINY + ["rule=fa", "noise.activations=0.1", "+dataset.input_noise=0.1", "trainer.max_steps=12"]
    curves = {}
    for every in (1, 0):
        run(compose_config(overrides + [f"metrics.every={every}"]), tmp_path / str(every))
        m = pd.read_csv(tmp_path / str(every) / "metrics.csv")
        curves[every] = m[m["name"].isin(["loss", "nse"])].set_index(["step", "split", "name"])["value"]
    assert len(curves[1]) == len(curves[0]) > 0 and curves[1].equals(curves[0])
    run(compose_config(TINY + ["rule=fa", "trainer.max_steps=12", "metrics.every=0"]), tmp_path / "clean")
    m = pd.read_csv(tmp_path / "clean" / "metrics.csv")
    assert not m[m["name"] == "loss"].set_index(["step", "split", "name"])["value"].equals(curves[0][
        curves[0].index.get_level_values("name") == "loss"])


def test_a_stacked_noisy_run_gives_each_seed_its_own_runs_numbers():
    nets = [_linear_teacher_net(s) for s in (0, 1)]
    stacked = _engine(stack_models(nets, [0, 1]), TrainingNoise(activations=0.3, inputs=0.2, seeds=[0, 1],
                                                                  stacked=True), stacked=True, seeds=(0, 1))
    single = _engine(_linear_teacher_net(1), TrainingNoise(activations=0.3, inputs=0.2, seeds=[1]), seeds=(1,))
    for a, b in zip(stacked.epoch_batches(0), single.epoch_batches(0)):
        la, lb = _step(stacked, a)["loss"], _step(single, b)["loss"]
        assert torch.allclose(la[1], lb[0], atol=1e-5)


# --- dataset.input_noise and dataset.target=image -----------------------------------------------
def test_input_noise_makes_noisy_inputs_with_clean_image_targets(fake_data):
    data = load_dataset("mnist", n_train=200, n_test=20, target="image")
    assert data.task == "regression" and data.n_outputs == 784
    assert torch.equal(data.y_train, data.x_train.flatten(1)) and torch.equal(data.y_test, data.x_test.flatten(1))
    written = fake_data["mnist"]["t10k-labels-idx1-ubyte"][:20]
    assert data.labels_test.tolist() == written.tolist()
    model = convert(build_model("autoencoder", width=20), "bp")
    sigma = 0.3
    engine = RuleEngine(model, data, sse, torch.optim.SGD(model.parameters(), lr=0.01),
                        TrainConfig(batch_size=200, metrics_every=0), seeds=[0], orders=[generator(0, "order")],
                        noise=TrainingNoise(inputs=sigma, seeds=[0]))
    seen = {}
    rule_step = engine.rule.compute_gradients

    def spy(model, x, target, loss_fn):
        seen["x"], seen["target"] = x.detach().clone(), target.detach().clone()
        return rule_step(model, x, target, loss_fn)

    engine.rule.compute_gradients = spy
    idx = next(iter(engine.epoch_batches(0)))
    clean_x = data.x_train[idx].clone()
    _step(engine, idx)
    z = seen["x"] - clean_x
    assert z.std().item() == pytest.approx(sigma, rel=0.02)  # 156 800 draws
    assert torch.equal(seen["target"], clean_x.flatten(1)), "the target must be the clean image"
    assert torch.equal(data.x_train[idx], clean_x), "the data set itself stays clean"


def test_bad_noise_values_fail_at_the_config_boundary_naming_key_and_valid_values():
    cases = [("noise.activations=-0.1", "noise.activations"), ("noise.activations=abc", "noise.activations"),
             ("dataset.input_noise=-1", "dataset.input_noise"), ("dataset.target=pixels", "dataset.target"),
             ("+noise.inputs=0.1", "noise.inputs")]
    for override, key in cases:
        with pytest.raises(ConfigError) as err:
            resolve_config(compose_config([override]))
        msg = str(err.value)
        assert key in msg, msg
    assert "class, image" in _message("dataset.target=pixels")
    assert ">= 0" in _message("noise.activations=-0.1")


def _message(override):
    with pytest.raises(ConfigError) as err:
        resolve_config(compose_config([override]))
    return str(err.value)


# --- the net ------------------------------------------------------------------------------------
def test_the_autoencoder_is_784_200_2_200_784_tanh_identity_tanh_relu():
    model = build_model("autoencoder", seed=0)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 200), (200, 2), (2, 200), (200, 784)]
    acts = [type(m) for m in model if not isinstance(m, (nn.Linear, nn.Flatten))]
    assert acts == [nn.Tanh, nn.Identity, nn.Tanh, nn.ReLU]
    out = model(torch.rand(5, 1, 28, 28))
    assert out.shape == (5, 784) and (out >= 0).all()
    narrow = build_model("autoencoder", width=50)
    assert [m.out_features for m in narrow if isinstance(m, nn.Linear)] == [50, 2, 50, 784]
    cfg = resolve_config(compose_config(["experiment=lansdell_table2a", "model=lansdell_ae50"]))
    assert cfg.model.width == 50


@pytest.mark.parametrize("rule", ["bp", "fa", "matched", "np_feedback", "sg"])
def test_every_table_rule_trains_the_autoencoder_seed_stacked(rule, fake_data):
    data = load_dataset("mnist", n_train=64, n_test=16, target="image")
    nets = [convert(build_model("autoencoder", width=16, seed=s), rule, seed=s) for s in (0, 1)]
    model = stack_models(nets, [0, 1])
    engine = RuleEngine(model, data, seed_axis_loss(sse), torch.optim.SGD(model.parameters(), lr=0.01),
                        TrainConfig(batch_size=32, metrics_every=0), seeds=[0, 1],
                        orders=[generator(s, "order") for s in (0, 1)],
                        noise=TrainingNoise(activations=0.02, seeds=[0, 1], stacked=True))
    before = [p.detach().clone() for p in model.parameters()]
    losses = [_step(engine, idx, i)["loss"] for i, idx in enumerate(engine.epoch_batches(0))]
    assert losses[0].shape == (2, 32) and all(torch.isfinite(v).all() for v in losses)
    # the per-example loss is the reconstruction's ½‖ŷ − x‖² (what np_feedback's estimate differences)
    assert losses[0].max() < 0.5 * 784 * 4
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --- the table's measure ------------------------------------------------------------------------
def test_the_table_measure_is_the_minimum_over_training_of_a_32_batch_summed_test_loss():
    # a batch of 32 images with per-image losses l_i sums to Σ l_i; the mean per-image test loss m
    # over the test set makes 32·m its expectation; the measure is the best (lowest) evaluation's
    assert BATCH == 32
    assert table_measure([40.0, 30.0, 35.0, float("nan")]) == 32 * 30.0
    x = torch.rand(32, 784)
    y = torch.rand(32, 784)
    summed = 0.5 * ((y - x) ** 2).sum().item()
    assert table_measure([sse(y, x).mean().item()]) == pytest.approx(summed, rel=1e-6)
    rows = []
    for seed, values in {0: [50.0, 20.0, 25.0], 1: [48.0, 22.0, 21.0], 2: [60.0, 30.0, 40.0]}.items():
        for step, v in enumerate(values):
            rows.append({"step": step, "examples": step, "split": "test", "name": "loss", "layer": "",
                         "value": v, "rule": "bp", "seed": seed, "setting": "cell=lansdell_t2a_bp_sgd",
                         "status": "completed"})
    curves = pd.DataFrame(rows)
    mins = np.array([20.0, 21.0, 30.0]) * 32
    table = table_rows(curves)
    assert table.loc[0, "ours_mean"] == pytest.approx(mins.mean())
    assert table.loc[0, "ours_se"] == pytest.approx(mins.std(ddof=1) / math.sqrt(3))
    assert table.loc[0, "paper_mean"] == TABLE2A["bp_sgd"]["no_noise"][0]
    scored = _per_seed(curves, {"setting": "cell=lansdell_t2a_bp_sgd"}, "test/loss", "min", 32)
    assert scored.tolist() == pytest.approx(mins.tolist())


def test_knn_accuracy_by_hand():
    # two tight clusters far apart: every point's neighbours are its own cluster's
    pts = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10]], dtype=float)
    assert knn_accuracy(pts, np.array([0, 0, 0, 1, 1, 1]), k=2) == 100.0
    # labels alternating: the 1-NN of points 0..5 are 1 (a tie with 2 at distance 1: the lower index),
    # 0, 0, 4 (tie with 5), 3, 3, so the guesses 1, 0, 0, 0, 1, 1 against 0, 1, 0, 1, 0, 1: 2 of 6 right
    assert knn_accuracy(pts, np.array([0, 1, 0, 1, 0, 1]), k=1) == pytest.approx(100 * 2 / 6)
    assert knn_accuracy(pts, np.zeros(6, dtype=int), k=3) == 100.0
    # a tied vote goes to the nearest of the tied labels, not the lowest: on a line 0, 1, 3 labelled
    # 0, 1, 1 with k = 2, point 0 sees (1, 1): wrong; point 1 sees 0 (label 0, nearest) and 3 (label 1):
    # a tie, so 0: wrong; point 3 sees 1 (label 1, nearest) and 0 (label 0): a tie, so 1: right
    line = np.array([[0.0], [1.0], [3.0]])
    assert knn_accuracy(line, np.array([0, 1, 1]), k=2) == pytest.approx(100 / 3)
    # the lowest-label rule would have said 0 for point 3 too; mirrored labels give the same count
    assert knn_accuracy(line, np.array([1, 0, 0]), k=2) == pytest.approx(100 / 3)


# --- the experiments end to end (fake MNIST) ----------------------------------------------------
def _fa_run(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fa_bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_lansdell_table2a_and_fig3_run_end_to_end_on_fake_mnist(tmp_path):
    tiny = ["dataset.n_train=64", "dataset.n_test=40", "trainer.max_steps=4", "trainer.eval_every=2",
            f"results_dir={tmp_path}/results", "model.width=8"]
    cells = "cell=lansdell_t2a_np,lansdell_t2a_bp_sgd_noise,lansdell_t2a_dae"  # 3 of 11: fast
    proc = _fa_run(["experiment=lansdell_table2a", *tiny, cells, "seed=range(2)", f"hydra.sweep.dir={tmp_path}/t2a"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "results" / "lansdell_table2a"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 6 and (runs["status"] == "completed").all() and set(runs["seed"]) == {0, 1}
    assert runs["seed_batch"].astype(str).str.contains(r"\[0, 1\]").all()  # each cell's seeds stacked
    curves = pd.read_csv(folder / "curves.csv")
    table = (folder / "table2a.md").read_text()
    np_loss = curves[(curves["setting"] == "cell=lansdell_t2a_np") & (curves["split"] == "test")
                     & (curves["name"] == "loss")]
    mins = np_loss.groupby("seed")["value"].min() * 32
    paper_np = "{:.1f} ± {:.1f}".format(*TABLE2A["np"]["noise"])  # the paper's beside ours
    assert f"| NP (ours) | 2 | {mins.mean():.1f} ± {mins.std(ddof=1) / math.sqrt(2):.1f} | {paper_np} |" in table
    assert (folder / "fig3a.png").stat().st_size > 10_000
    proc = _fa_run(["experiment=lansdell_fig3", *tiny, f"hydra.sweep.dir={tmp_path}/f3"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "results" / "lansdell_fig3"
    saved = sorted(p.name for p in (folder / "activations").glob("*.npz"))
    assert len(saved) == 3
    npz = np.load(folder / "activations" / "np_feedback_seed0_cell=lansdell_t2a_np.npz")
    assert npz["feature_2"].shape == (40, 2) and npz["sample_outputs"].shape == (16, 784)
    measures = pd.read_csv(folder / "measures.csv")
    assert set(measures["setting"]) == {f"cell=lansdell_t2a_{m}" for m in ("np", "bp_sgd", "fa")}
    assert measures["value"].between(0, 100).all()
    assert (folder / "fig3.png").stat().st_size > 10_000
    assert json.loads((folder / "meta.json").read_text())["n_runs"] == 3
