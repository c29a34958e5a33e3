"""Settings Nøkland 2016 needs, checked against known answers: the bce loss's output error, the
initialisations (zero; U(±1/√fan_in) weights and biases; B ~ U(±1/√fan_out)), the deep mlp spelling,
the CONV net and where DFA injects its error there, the stop-at-training-error criterion, and CIFAR
whitening (ZCA: identity covariance, a cached transform)."""
from __future__ import annotations

import csv
import math
import pickle

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import fa_bench
from fa_bench.config import compose_config
from fa_bench.data import DataBundle, load_dataset
from fa_bench.data import whitening as W
from fa_bench.engines.autograd import train
from fa_bench.losses import bce
from fa_bench.models import build_model
from fa_bench.records import MetricsWriter
from fa_bench.run import ConfigError, resolve_config
from fa_bench.trainer import TrainConfig


# ------------------------------------------------------------------------------------------------
# loss and initialisation
# ------------------------------------------------------------------------------------------------
def test_bce_output_error_is_y_hat_minus_y_over_n():
    # Nøkland eqs. 4-5: J = −(1/N) Σ_mn [y log ŷ + (1 − y) log(1 − ŷ)], ŷ = σ(a_y), ∂J/∂a_y = (ŷ − y)/N
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 4, (6,), generator=g)
    y = torch.nn.functional.one_hot(t, 4).double()
    J = bce(a, t).mean()
    y_hat = torch.sigmoid(a.detach())
    want_J = -(y * y_hat.log() + (1 - y) * (1 - y_hat).log()).sum() / 6
    torch.testing.assert_close(J.detach(), want_J, rtol=1e-12, atol=0)
    (e,) = torch.autograd.grad(J, a)
    torch.testing.assert_close(e, (y_hat - y) / 6, rtol=1e-12, atol=1e-15)


def _linears(model):
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def test_zero_init_zeroes_weights_and_biases():
    model = build_model("mlp", sizes=[784, 10], depth=2, width=800, init="zero")
    for m in _linears(model):
        assert m.weight.abs().sum() == 0 and m.bias.abs().sum() == 0


def test_fan_in_uniform_weights_and_biases():
    # Nøkland's BP/ReLU init: weights and biases U(±1/√fan_in), fan_in per layer (conv: in_channels·k·k)
    model = build_model("nokland_cifar_conv", init="fan_in_uniform", bias_init_scale="fan_in", seed=1)
    for m in _linears(model):
        bound = 1 / math.sqrt(m.weight[0].numel())
        for p in (m.weight, m.bias):
            assert p.abs().max().item() <= bound
            if p.numel() >= 1000:  # enough draws to reach the edge of the range
                assert p.abs().max().item() > 0.95 * bound
        assert m.bias.abs().max().item() > 0.5 * bound  # biases drawn, not zero


def test_bias_init_scale_rejects_nonsense():
    with pytest.raises(ValueError, match="bias_init_scale"):
        build_model("mlp", sizes=[3, 2], init="fan_in_uniform", bias_init_scale="fan_out")


@pytest.mark.parametrize("rule", ["fa", "dfa"])
def test_feedback_fan_out_uniform_is_one_over_root_of_the_error_source(rule):
    # B ~ U(±1/√fan_out), fan_out = the units the error comes from: the layer above (FA) or the output (DFA)
    torch.manual_seed(0)
    model = fa_bench.convert(nn.Sequential(nn.Linear(300, 200), nn.Tanh(), nn.Linear(200, 10)), rule,
                             init="fan_out_uniform")
    for name, layer in fa_bench.converted_layers(model):
        source = layer.weight.shape[0] if (rule == "fa" or name == "2") else 10
        bound = 1 / math.sqrt(source)
        assert layer.feedback_weight.shape[0] == source
        assert 0.99 * bound < layer.feedback_weight.abs().max().item() <= bound, name


# ------------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------------
def test_mlp_depth_and_width_spell_the_sizes():
    deep = build_model("mlp", sizes=[784, 10], depth=100, width=240)
    layers = [m for m in deep if isinstance(m, nn.Linear)]
    assert len(layers) == 101
    assert [(l.in_features, l.out_features) for l in (layers[0], layers[50], layers[-1])] == \
        [(784, 240), (240, 240), (240, 10)]
    explicit = build_model("mlp", sizes=[784, 240, 240, 10])
    assert str(build_model("mlp", sizes=[784, 10], depth=2, width=240)) == str(explicit)
    with pytest.raises(ValueError, match="depth and width"):
        build_model("mlp", sizes=[784, 10], depth=2)
    with pytest.raises(ValueError, match="sizes must be"):
        build_model("mlp", sizes=[784, 5, 10], depth=2, width=3)


def test_mlp_dropout_placement():
    model = build_model("mlp", sizes=[784, 10], depth=2, width=800, input_dropout=0.1, dropout=0.5)
    drops = [(i, m.p) for i, m in enumerate(model) if isinstance(m, nn.Dropout)]
    kinds = [type(m).__name__ for m in model]
    # Flatten, Dropout(0.1), Linear, Tanh, Dropout(0.5), Linear, Tanh, Dropout(0.5), Linear, Identity
    assert drops == [(1, 0.1), (4, 0.5), (7, 0.5)]
    assert kinds[-2:] == ["Linear", "Identity"]


NOKLAND_MODELS = {
    "nokland_7x240_tanh": (784, [240] * 7), "nokland_100x240_tanh": (784, [240] * 100),
    "nokland_1x800_tanh": (784, [800]), "nokland_2x800_tanh": (784, [800] * 2),
    "nokland_3x800_tanh": (784, [800] * 3), "nokland_4x800_tanh": (784, [800] * 4),
    "nokland_2x800_logistic": (784, [800] * 2), "nokland_2x800_relu": (784, [800] * 2),
    "nokland_3x50_tanh": (784, [50] * 3), "nokland_3x400_tanh": (784, [400] * 3),
    "nokland_4x100_tanh": (784, [100] * 4), "nokland_1x1000_tanh": (3072, [1000]),
    "nokland_3x1000_tanh": (3072, [1000] * 3),
}


@pytest.mark.parametrize("name", list(NOKLAND_MODELS))
def test_nokland_mlp_configs(name):
    cfg = resolve_config(compose_config([f"model={name}"]))
    kwargs = {k: v for k, v in cfg.model.items() if k != "name"}
    model = build_model(cfg.model.name, **kwargs)
    n_in, hidden = NOKLAND_MODELS[name]
    sizes = [n_in, *hidden, 10]
    layers = [m for m in model if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in layers] == list(zip(sizes[:-1], sizes[1:]))
    act = name.rsplit("_", 1)[1]
    want = {"tanh": nn.Tanh, "logistic": nn.Sigmoid, "relu": nn.ReLU}[act]
    assert sum(isinstance(m, want) for m in model) == len(hidden)


def test_nokland_conv_net_shapes_and_dfa_injection_after_pooling():
    model = build_model("nokland_cifar_conv")
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    dense = [m for m in model if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [96, 128, 256] and all(c.kernel_size == (5, 5) for c in convs)
    assert [(l.in_features, l.out_features) for l in dense] == [(256 * 4 * 4, 2048), (2048, 2048), (2048, 10)]
    pools = [m for m in model if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 3 and all(p.kernel_size == 3 and p.stride == 2 for p in pools)
    x = torch.zeros(2, 3, 32, 32)
    # each converted layer's input is a DFA feedback point: after pool 1, pool 2, pool 3 (flattened), fc, fc
    dfa = fa_bench.convert(model, "dfa", example_input=x)
    shapes = [tuple(l.feedback_weight.shape) for _, l in fa_bench.converted_layers(dfa)]
    assert shapes == [(10, 3 * 32 * 32), (10, 96 * 16 * 16), (10, 128 * 8 * 8), (10, 256 * 4 * 4),
                      (10, 2048), (10, 2048)]
    sides = []
    h = x
    for m in model:
        h = m(h)
        if isinstance(m, nn.MaxPool2d):
            sides.append(h.shape[-1])
    assert sides == [16, 8, 4]


def test_nokland_conv_config_and_ifa_refusal():
    cfg = resolve_config(compose_config(["model=nokland_conv_tanh", "dataset=cifar10"]))
    assert cfg.model.name == "nokland_cifar_conv"
    with pytest.raises(ValueError, match="fully connected"):
        fa_bench.convert(build_model("nokland_cifar_conv", channels=[4, 4, 4], hidden=8), "ifa")


# ------------------------------------------------------------------------------------------------
# the stopping criterion
# ------------------------------------------------------------------------------------------------
def _separable(n=64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = (x[:, 0] > 0).long()
    return DataBundle(x, y, x, y, "classification", 2)


def _run(tmp_path, **cfg):
    torch.manual_seed(0)
    model = fa_bench.convert(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), "dfa", seed=0)
    opt = torch.optim.RMSprop(model.parameters(), lr=0.01)
    tc = TrainConfig(epochs=200, batch_size=16, eval_every=4, eval_batch_size=64, metrics_every=0,
                     progress=False, **cfg)
    writer = MetricsWriter(tmp_path / "metrics.csv")
    ce = lambda o, t: torch.nn.functional.cross_entropy(o, t, reduction="none")  # noqa: E731
    result = train(model, fa_bench.rule_of(model), _separable(), ce, opt, tc, writer, torch.Generator().manual_seed(0))
    writer.close()
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train" and r["name"] == "error"]
    return result, [(int(r["step"]), float(r["value"])) for r in rows]


def test_stop_train_error_stops_at_the_first_window_at_or_below_it(tmp_path, caplog):
    caplog.set_level("INFO", logger="fa_bench.trainer")
    result, errors = _run(tmp_path, stop_train_error=0.01)
    assert result.status == "completed"
    assert errors[-1][1] <= 0.01 and all(e > 0.01 for _, e in errors[:-1])
    assert result.steps == errors[-1][0] < 200 * 4  # stopped early, right at that window
    assert "stop_train_error" in result.stop_reason
    assert any("stop_train_error" in r.getMessage() for r in caplog.records)  # the log says why


def test_without_stop_train_error_the_budget_ends_the_run(tmp_path):
    result, errors = _run(tmp_path, max_steps=40)
    assert result.steps == 40 and "budget" in result.stop_reason
    assert errors[-1][1] <= 0.01  # it would have stopped: the default did not


def test_stop_train_error_is_validated():
    with pytest.raises(ValueError, match="stop_train_error"):
        TrainConfig(stop_train_error=-1)
    with pytest.raises(ConfigError, match="stop_train_error"):
        resolve_config(compose_config(["trainer.stop_train_error=abc"]))
    assert resolve_config(compose_config(["trainer=nokland"])).trainer.stop_train_error == 0.01


# ------------------------------------------------------------------------------------------------
# whitening
# ------------------------------------------------------------------------------------------------
def _fake_cifar10(root, n_per_batch, seed=0):
    """CIFAR-10 pickles in torchvision's layout (5 training batches and a test batch)."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        batch = {"data": rng.integers(0, 256, (n_per_batch, 3 * 32 * 32), dtype=np.uint8),
                 "labels": rng.integers(0, 10, n_per_batch).tolist()}
        with open(base / name, "wb") as f:
            pickle.dump(batch, f)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_zca_on_cifar_gives_identity_covariance_and_reuses_its_cache(tmp_path, monkeypatch):
    # 3500 training images of 3072 values: a full-rank covariance, so ε = 0 must give exactly I
    _fake_cifar10(tmp_path, 700)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)
    raw = load_dataset("cifar10", root=str(tmp_path), download=False)
    data = load_dataset("cifar10", root=str(tmp_path), download=False, whiten="zca", zca_epsilon=0.0)
    x = data.x_train.flatten(1)
    assert x.mean(0).abs().max() < 1e-4
    centred = x - x.mean(0)
    cov = centred.t() @ centred / x.shape[0]
    torch.testing.assert_close(cov, torch.eye(3072), rtol=0, atol=2e-3)
    assert not torch.allclose(raw.x_train.flatten(1).var(0), torch.ones(3072), atol=0.5)  # it was not white
    # ZCA, not any whitening: W is symmetric, so W = C^(-1/2)
    cached = list((tmp_path / "whitening").glob("cifar10_zca_eps0_*.pt"))
    assert len(cached) == 1
    saved = torch.load(cached[0])
    torch.testing.assert_close(saved["matrix"], saved["matrix"].t(), rtol=1e-8, atol=1e-12)
    # the test split goes through the training set's transform
    want_test = W.apply_zca(raw.x_test, saved["mean"], saved["matrix"])
    torch.testing.assert_close(data.x_test, want_test, rtol=0, atol=0)
    # a second load reads the cache: fitting again would fail
    monkeypatch.setattr(W, "fit_zca", lambda *a, **k: pytest.fail("the cached transform was recomputed"))
    again = load_dataset("cifar10", root=str(tmp_path), download=False, whiten="zca", zca_epsilon=0.0, n_train=10)
    torch.testing.assert_close(again.x_train, data.x_train[:10], rtol=0, atol=0)


def test_whitening_cache_is_keyed_by_settings_and_data(tmp_path):
    g = torch.Generator().manual_seed(0)
    mix = torch.randn(12, 12, generator=g)
    x = (torch.randn(500, 12, generator=g) @ mix).view(500, 3, 2, 2)  # correlated pixels, full rank
    raw = (x.numpy() * 10).astype(np.int8)
    # ε = 0: identity covariance on a small full-rank problem, in float64 arithmetic
    xw, _ = W.whiten(x.double(), x[:5].double(), "zca", 0.0, tmp_path, "toy", raw)
    flat = xw.flatten(1)
    cov = (flat - flat.mean(0)).t() @ (flat - flat.mean(0)) / 500
    torch.testing.assert_close(cov, torch.eye(12, dtype=torch.float64), rtol=0, atol=1e-10)
    # ε > 0 damps the weak directions: eigenvalues λ / (λ + ε·mean λ) < 1
    W.whiten(x.double(), x[:5].double(), "zca", 0.1, tmp_path, "toy", raw)
    W.whiten(x.double(), x[:5].double(), "gcn_zca", 0.1, tmp_path, "toy", raw)
    W.whiten(x.double(), x[:5].double(), "zca", 0.1, tmp_path, "toy", raw[::-1].copy())  # other data
    assert len(list(tmp_path.glob("toy_*.pt"))) == 4


def test_global_contrast_normalisation_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(7, 3, 4, 4, generator=g, dtype=torch.float64) * 5 + 2
    y = W.global_contrast_normalize(x).flatten(1)
    torch.testing.assert_close(y.mean(1), torch.zeros(7, dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(y.pow(2).mean(1), torch.ones(7, dtype=torch.float64), rtol=1e-12, atol=0)


def test_bad_whitening_settings_are_named(tmp_path):
    with pytest.raises(ValueError, match="whitening 'pca'"):
        load_dataset("cifar10", root=str(tmp_path), download=False, whiten="pca")
    with pytest.raises(ConfigError, match="whiten"):
        resolve_config(compose_config(["dataset=cifar10", "+dataset.whitening=zca"]))


def test_fig3_separation_measures_are_the_panels_knn_accuracy(tmp_path):
    """measures.csv (what the Fig. 3 claims read): per rule and feature, the 5-NN accuracy of that
    panel's embedded points: 100 % for classes in far-apart clumps, near chance for shuffled labels."""
    import pandas as pd

    from fa_bench.figures.nokland import separation

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 25)
    clumps = rng.normal(size=(100, 2)) * 0.1 + labels[:, None] * 10.0
    rows = []
    for feature, (xy, lab) in enumerate([(clumps, labels), (clumps, rng.permutation(labels))]):
        rows.append(pd.DataFrame({"rule": "dfa", "source": "k", "feature": feature, "point": np.arange(100),
                                  "x": xy[:, 0], "y": xy[:, 1], "label": lab}))
    (tmp_path / "activations").mkdir()
    (tmp_path / "activations" / "dfa_seed3.npz").write_bytes(b"")
    measures = pd.read_csv(separation(tmp_path, pd.concat(rows, ignore_index=True)), dtype={"layer": str})
    got = measures.set_index("layer")["value"]
    assert got["0"] == 100.0
    assert got["1"] < 50.0
    assert set(measures["seed"]) == {3} and set(measures["name"]) == {"tsne_knn_accuracy"}


def test_bias_init_value_sets_every_bias_and_leaves_weights_drawn():
    # Lansdell's autoencoder code: every bias the constant 0.1, weights drawn as configured
    a = build_model("autoencoder", init="fan_in_uniform", init_scale=6 ** 0.5, bias_init_value=0.1, seed=3)
    b = build_model("autoencoder", init="fan_in_uniform", init_scale=6 ** 0.5, seed=3)  # zero biases
    for la, lb in zip(_linears(a), _linears(b)):
        assert torch.equal(la.bias, torch.full_like(la.bias, 0.1))
        assert torch.equal(la.weight, lb.weight)  # a constant draws nothing: the weights' draws are zero biases'


@pytest.mark.parametrize("kwargs, match", [
    ({"bias_init_value": "0.1"}, "bias_init_value must be null or a number"),
    ({"bias_init_value": True}, "bias_init_value must be null or a number"),
    ({"bias_init_value": 0.1, "bias_init_scale": "fan_in"}, "both set the biases"),
])
def test_bias_init_value_rejects_nonsense(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("mlp", sizes=[3, 2], init="fan_in_uniform", **kwargs)


def test_bias_init_value_refused_under_torchs_default_init():
    # init='default' keeps torch's own weights and biases: a constant there would be dropped silently
    with pytest.raises(ValueError, match="init other than 'default'"):
        build_model("mlp", sizes=[3, 2], bias_init_value=0.1)
