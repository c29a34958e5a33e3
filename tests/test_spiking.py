"""Lillicrap 2016 Fig. 4's integrating, spiking network: eqs. 5-8 by hand on a tiny net, the streams
batching, frozen weights at test time, seeding, learning, and the metrics/trace/figure files."""
import copy
import csv
import json
import math

import pandas as pd
import pytest
import torch

from fa_bench.data import DataBundle
from fa_bench.figures import lillicrap_fig4
from fa_bench.records import MetricsWriter
from fa_bench.spiking import (
    TRACE_COLUMNS,
    SpikingNet,
    SpikingState,
    evaluate_spiking,
    present,
    train_spiking,
)

TAU, LR, WD = 0.9, 0.01, 0.1  # decay 1 - LR*WD = 0.999 applies at once (no deferral below 1e-6)


def _tiny_net(seed=0, sizes=(6, 5, 4)):
    return SpikingNet(sizes, n_classes=2, seed=seed, tau=TAU, lr=LR, weight_decay=WD)


def _random_state(net, streams, seed):
    g = torch.Generator().manual_seed(seed)
    state = net.init_state(streams)
    for t in state.v + state.u:
        t.copy_(torch.randn(t.shape, generator=g))
    return state


def _uniform_draws(net, streams, seed):
    """The uniforms the spikes are drawn with, per layer (input first)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.rand(streams, n, generator=g) for n in net.sizes]


def _replay(net, draws):
    """Make ``net`` spike from the given uniforms (u < p), one array per layer in call order."""
    queue = list(draws)
    net.spike = lambda p, gen: (queue.pop(0) < p).float()


def _sig(v):
    return 1 / (1 + math.exp(-v))


def test_one_step_is_eqs_5_to_8_by_hand():
    net = _tiny_net()
    state = _random_state(net, 1, seed=1)
    x = torch.tensor([[0.0, 0.3, 1.0, 0.97, 0.5, 0.1]])  # 1.0 and 0.97 saturate at 0.95
    y = torch.tensor([1])
    draws = _uniform_draws(net, 1, seed=2)
    draws[0][0, 2] = 0.951  # a saturated pixel must not spike at u = 0.951
    W = [w.tolist() for w in net.W]
    b = [v.tolist() for v in net.b]
    B = net.B[0].tolist()
    V = [v[0].tolist() for v in state.v]
    U = [u[0].tolist() for u in state.u]
    u_draw = [d[0].tolist() for d in draws]

    # forward, bottom-up, each layer from this step's spikes below (eq. 5)
    spikes = [[1.0 if u < min(p, 0.95) else 0.0 for u, p in zip(u_draw[0], x[0].tolist())]]
    assert spikes[0][2] == 0.0
    V_new = []
    for l in range(2):
        v_l = [(1 - TAU) * V[l][j] + TAU * (sum(W[l][j][i] * spikes[l][i] for i in range(len(spikes[l])))
                                            + b[l][j]) for j in range(len(V[l]))]
        V_new.append(v_l)
        spikes.append([1.0 if u < _sig(v) else 0.0 for u, v in zip(u_draw[l + 1], v_l)])
    # feedback, top-down: error neurons (eq. 7), then the hidden feedback neurons (eq. 6)
    target = [1.0 if j // 2 == 1 else 0.0 for j in range(4)]
    U_out = [(1 - TAU) * U[1][j] + TAU * (spikes[2][j] - target[j]) for j in range(4)]
    U_hid = [(1 - TAU) * U[0][j] + TAU * sum(B[j][k] * math.tanh(U_out[k]) for k in range(4)) for j in range(5)]
    mods = [[math.tanh(u) for u in U_hid], [math.tanh(u) for u in U_out]]
    # plasticity (eq. 8) with the minus sign, plus weight decay
    dW_expected, db_expected = [], []
    for l in range(2):
        post = [mods[l][j] * _sig(V_new[l][j]) * (1 - _sig(V_new[l][j])) for j in range(len(V_new[l]))]
        dW_expected.append([[-LR * post[j] * spikes[l][i] - LR * WD * W[l][j][i] for i in range(len(spikes[l]))]
                            for j in range(len(post))])
        db_expected.append([-LR * post[j] - LR * WD * b[l][j] for j in range(len(post))])

    W0, b0 = [w.clone() for w in net.W], [v.clone() for v in net.b]
    _replay(net, draws)
    out = net.step(state, x, net.target(y), plastic=True)

    assert [s[0].tolist() for s in out.spikes] == spikes
    for l in range(2):
        assert state.v[l][0].tolist() == pytest.approx(V_new[l], abs=1e-6)
        assert out.modulators[l][0].tolist() == pytest.approx(mods[l], abs=1e-6)
        assert (net.W[l] - W0[l]).flatten().tolist() == pytest.approx(sum(dW_expected[l], []), abs=1e-7)
        assert (net.b[l] - b0[l]).tolist() == pytest.approx(db_expected[l], abs=1e-7)
    assert state.u[1][0].tolist() == pytest.approx(U_out, abs=1e-6)
    assert state.u[0][0].tolist() == pytest.approx(U_hid, abs=1e-6)
    assert any(any(row) for row in dW_expected[0])  # the hidden layer did learn something


def test_output_update_moves_the_drive_against_the_error():
    """Learning must reduce error: after a step, the output drive of the same presynaptic spikes moves
    opposite to each error neuron's sign (spiking too much -> less drive)."""
    net = SpikingNet((6, 5, 8), n_classes=2, seed=3, lr=0.01, weight_decay=0.0)
    state = _random_state(net, 1, seed=4)
    W, b = net.W[1].clone(), net.b[1].clone()
    out = net.step(state, torch.full((1, 6), 0.5), net.target(torch.tensor([0])), plastic=True,
                   gen=torch.Generator().manual_seed(5))
    hidden = out.spikes[1][0]
    change = (net.W[1] - W) @ hidden + (net.b[1] - b)
    error = state.u[1][0]
    assert (torch.sign(change) == -torch.sign(error)).all()


def test_streams_change_the_weights_by_the_sum_of_each_streams_change():
    streams = 3
    net = _tiny_net(seed=7)
    state = _random_state(net, streams, seed=8)
    x = torch.rand(streams, 6, generator=torch.Generator().manual_seed(9))
    y = torch.tensor([0, 1, 1])
    draws = _uniform_draws(net, streams, seed=10)

    batched = copy.deepcopy(net)
    _replay(batched, draws)
    batched.step(state, x, batched.target(y), plastic=True)

    dW = [torch.zeros_like(w) for w in net.W]
    db = [torch.zeros_like(v) for v in net.b]
    for s in range(streams):
        single = copy.deepcopy(net)
        start = _random_state(net, streams, seed=8)  # the batched run's starting state
        single_state = SpikingState([v[s:s + 1] for v in start.v], [u[s:s + 1] for u in start.u])
        _replay(single, [d[s:s + 1] for d in draws])
        single.step(single_state, x[s:s + 1], single.target(y[s:s + 1]), plastic=True)
        for l in range(2):
            dW[l] += single.W[l] - net.W[l]
            db[l] += single.b[l] - net.b[l]
            # each stream's own state evolves as if it were alone
            assert torch.allclose(single_state.v[l][0], state.v[l][s], atol=1e-6)
            assert torch.allclose(single_state.u[l][0], state.u[l][s], atol=1e-6)
    for l in range(2):
        assert torch.allclose(batched.W[l] - net.W[l], dW[l], atol=1e-6)
        assert torch.allclose(batched.b[l] - net.b[l], db[l], atol=1e-6)
        assert (dW[l] != 0).any()


def test_testing_leaves_weights_and_feedback_alone():
    net = _tiny_net()
    state = _random_state(net, 4, seed=1)
    W, b, U, V = ([t.clone() for t in ts] for ts in (net.W, net.b, state.u, state.v))
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        out = net.step(state, torch.rand(4, 6, generator=g), plastic=False, gen=g)
    assert out.modulators is None
    assert all(torch.equal(a, c) for a, c in zip(net.W + net.b + state.u, W + b + U))
    assert not any(torch.equal(a, c) for a, c in zip(state.v, V))  # the forward path did run


def test_test_guess_counts_group_spikes_at_the_last_step_or_over_all():
    net = SpikingNet((2, 4), n_classes=2, seed=0)
    # a uniform of 0 always spikes, 1 never: class 0's group fires for four steps, class 1's at the last
    out_draws = [torch.tensor([[0.0, 0.0, 1.0, 1.0]])] * 4 + [torch.tensor([[1.0, 1.0, 0.0, 1.0]])]
    guesses = {}
    for readout in ("last", "sum"):
        _replay(net, [d for out in out_draws for d in (torch.rand(1, 2), out)])
        guesses[readout] = int(present(net, net.init_state(1), torch.rand(1, 2), None, 5, False, None, readout))
    assert guesses == {"last": 1, "sum": 0}


def test_output_size_must_split_into_class_groups():
    with pytest.raises(ValueError, match=r"1001 neurons.*10 equal class groups"):
        SpikingNet((784, 1001), n_classes=10)


def test_init_follows_the_paper_and_the_seed():
    a, b, c = SpikingNet((20, 30, 40), 10, seed=0), SpikingNet((20, 30, 40), 10, seed=0), SpikingNet(
        (20, 30, 40), 10, seed=1)
    for x, y, z in zip(a.W + a.b + a.B, b.W + b.b + b.B, c.W + c.b + c.B):
        assert torch.equal(x, y) and not torch.equal(x, z)
    assert [tuple(w.shape) for w in a.W] == [(30, 20), (40, 30)] and tuple(a.B[0].shape) == (30, 40)
    assert all(w.abs().max() <= 0.05 and w.abs().max() > 0.04 for w in a.W + a.b)
    assert a.B[0].abs().max() <= 0.1 and a.B[0].abs().max() > 0.09
    # the feedback is not a copy of the forward weights
    assert not torch.allclose(a.B[0].flatten()[:100] / 2, a.W[0].flatten()[:100])


def _prototypes(n_train, n_test, n_classes=4, side=4, seed=0):
    """Noisy binary prototypes, one per class: separable, but not by any single pixel."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(n_classes, side * side, generator=g) < 0.3).float()

    def draw(n):
        y = torch.randint(0, n_classes, (n,), generator=g)
        flip = torch.rand(n, side * side, generator=g) < 0.1
        return (torch.where(flip, 1 - protos[y], protos[y]) * 0.9).view(n, 1, side, side), y

    return DataBundle(*draw(n_train), *draw(n_test), "classification", n_classes)


TINY = dict(sizes=(16, 40, 20), n_classes=4, streams=4, lr=0.1, progress=False)


def _test_errors(path):
    with open(path) as f:
        return [float(r["value"]) for r in csv.DictReader(f) if r["split"] == "test" and r["name"] == "error"]


def test_it_learns_and_seeds_repeat(tmp_path):
    data = _prototypes(2000, 200)
    runs = {}
    for name, seed, every in [("a", 0, 500), ("b", 0, 1000), ("c", 1, 500)]:
        writer = MetricsWriter(tmp_path / f"{name}.csv")
        result = train_spiking(data, writer, seed=seed, eval_every=every, **TINY)
        writer.close()
        assert result.status == "completed" and result.examples == 2000
        runs[name] = _test_errors(tmp_path / f"{name}.csv")
    start, end = runs["a"][0], runs["a"][-1]
    assert start > 50 and end < 25  # chance is 75%
    # evaluations draw from their own stream: how often one evaluates does not change training
    assert runs["b"][-1] == end
    assert runs["c"] != runs["a"]


def test_sign_flipped_learning_does_not_learn():
    """The minus in eq. 8 matters: ascending the error must not reduce it."""
    data = _prototypes(2000, 200)
    result = train_spiking(data, MetricsWriter(None), eval_every=2000, **{**TINY, "lr": -0.1})
    assert result.final["test/error"] > 50


def test_evaluation_does_not_learn():
    data = _prototypes(10, 300)
    net = SpikingNet((16, 40, 20), 4, seed=0)
    W = [w.clone() for w in net.W]
    first = evaluate_spiking(net, data.x_test.flatten(1), data.y_test, steps=5, readout="last", seed=0)
    again = evaluate_spiking(net, data.x_test.flatten(1), data.y_test, steps=5, readout="last", seed=0)
    assert first == again and all(torch.equal(a, c) for a, c in zip(net.W, W))


def test_metrics_traces_and_figure(tmp_path):
    data = _prototypes(400, 100)
    folder = tmp_path / "results" / "lillicrap_fig4"
    folder.mkdir(parents=True)
    curves, traces = [], []
    for seed in (0, 1):
        writer = MetricsWriter(tmp_path / f"metrics{seed}.csv")
        train_spiking(data, writer, seed=seed, eval_every=100, trace_steps=20, trace_neurons=8,
                      trace_path=tmp_path / f"traces{seed}.csv", **TINY)
        writer.close()
        m = pd.read_csv(tmp_path / f"metrics{seed}.csv", keep_default_na=False)
        assert set(m["split"]) == {"train", "test"} and set(m["name"]) == {"error"}
        assert m.loc[m["split"] == "test", "examples"].tolist() == [0, 100, 200, 300, 400]
        curves.append(m.assign(rule="fa", seed=seed, setting="", status="completed", commit="abc"))
        t = pd.read_csv(tmp_path / f"traces{seed}.csv", keep_default_na=False)
        assert list(t.columns) == TRACE_COLUMNS
        assert sorted(t["phase"].unique()) == [0.0, 0.5, 1.0]
        assert t.groupby("phase")["t"].max().tolist() == [19, 19, 19]
        spikes = t[t["kind"] == "spike"]
        assert set(spikes["layer"].astype(str)) == {"1", "out"} and set(spikes["value"]) <= {0, 1}
        assert (t[t["kind"] == "label"].groupby("phase").size() == 4).all()  # 20 steps = 4 images
        assert len(t[t["kind"] == "psp"]) == len(t[t["kind"] == "modulator"]) == 60
        assert t.groupby("phase")["examples"].first().tolist() == [0, 192, 384]  # window opens
        traces.append(t.assign(rule="fa", seed=seed))
    pd.concat(curves).to_csv(folder / "curves.csv", index=False)
    pd.concat(traces).to_csv(folder / "traces.csv", index=False)
    meta = {"seeds": [0, 1], "git_commits": ["abc"], "any_dirty": False, "devices": ["cpu"],
            "budget": {"batch_size": [1], "epochs": [1], "max_steps": [], "examples_per_run": [400]}}
    (folder / "meta.json").write_text(json.dumps(meta))
    written = lillicrap_fig4.fig4(folder)
    assert written == [folder / "fig4.png"] and written[0].stat().st_size > 20_000


def test_bad_settings_are_named():
    data = _prototypes(10, 10)
    with pytest.raises(ValueError, match="sizes\\[0\\]=784 but the images have 16 pixels"):
        train_spiking(data, MetricsWriter(None), sizes=(784, 20), n_classes=4, progress=False)
    with pytest.raises(ValueError, match="readout"):
        train_spiking(data, MetricsWriter(None), readout="max", **TINY)


def test_readout_script_retests_a_checkpoint_as_the_run_did(tmp_path):
    """scripts/spiking_readout.py tests the weights a run saved: its draw 0 of the run's own reading
    ('last', M = 5) must give exactly the test error the run logged with those weights, and the other
    readings must come from the same weights (frozen: testing twice changes nothing)."""
    import sys
    from pathlib import Path

    from fa_bench.checkpoint import Checkpointer
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from spiking_readout import READINGS, load_net, readings

    data = _prototypes(400, 120)
    writer = MetricsWriter(tmp_path / "metrics.csv")
    batches = 400 // TINY["streams"]  # the loop's steps: the last one is checkpointed
    train_spiking(data, writer, seed=0, eval_every=400, checkpoint=Checkpointer(tmp_path, batches), **TINY)
    writer.close()
    logged = _test_errors(tmp_path / "metrics.csv")[-1]

    net, where = load_net(tmp_path / "checkpoint.pt", n_classes=TINY["n_classes"])
    assert net.sizes == TINY["sizes"] and where == {"checkpoint_step": batches * 5, "checkpoint_examples": 400}
    x, y = data.x_test.flatten(1), data.y_test
    rows = readings(net, x, y, draws=2, report=lambda s: None)
    assert [(r["readout"], r["test_steps"]) for r in rows[::2]] == READINGS
    assert rows[0]["error"] == logged and rows[0]["draw"] == 0
    assert rows[1]["error"] != logged or rows[2]["error"] != logged  # other draws and readings differ
    assert readings(net, x, y, draws=2, report=lambda s: None) == rows
