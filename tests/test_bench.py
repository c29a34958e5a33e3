"""scripts/bench.py: its ratios come from timing fa_bench's own step and schedule (speeds untested)."""
import csv
import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fa_bench.engines.autograd import RuleEngine

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_round_robin_ratio_is_the_median_of_paired_block_ratios(bench):
    """A fake clock that each contestant advances by a known amount per step: the per-step times and the
    paired ratio come out exactly, whatever order the blocks ran in."""
    now = [0.0]
    cost = {"a": 2.0, "b": 3.0}

    def contestant(name):
        def step(batch):
            now[0] += cost[name] + 0.01 * batch
        return step

    times = bench.round_robin({k: contestant(k) for k in cost}, [0, 0, 0], warmup=1, steps=4, repeats=5,
                              clock=lambda: now[0])
    assert times["a"] == pytest.approx([2.0] * 5) and times["b"] == pytest.approx([3.0] * 5)
    assert bench.paired_ratio(times["b"], times["a"]) == pytest.approx(1.5)
    assert bench.paired_ratio([1, 2, 10], [1, 1, 1]) == 2  # the median, not the mean


def test_step_ratio_times_the_engines_own_train_step(bench, monkeypatch):
    """The step measure calls RuleEngine.train_step (warm-up + steps x rounds times), and a known delay
    added inside it shows up in the ratio to the plain step: the ratio is a timing of that step."""
    calls = []
    real = RuleEngine.train_step
    delay = 0.05  # large beside the step, so a loaded machine's noise cannot hide it (0.02 could)

    def slow(self, batch):
        calls.append(self.rule.name)
        time.sleep(delay)
        return real(self, batch)

    monkeypatch.setattr(RuleEngine, "train_step", slow)
    args = bench.parse(["--quick", "--rules", "fa", "--no-biotorch"])
    args.steps, args.repeats, args.warmup = 2, 5, 1
    torch.set_num_threads(1)
    b = bench.Bench(args)
    data = bench.R.build_data(bench.cfg_of("mlp_784_1000_10", "bp", args.batch_size), torch.device("cpu"))
    bench.run_steps(b, "mlp_784_1000_10", data, torch.device("cpu"))
    assert calls == ["fa"] * (1 + 2 * 5)
    plain = next(r for r in b.rows if r["rule"] == "plain")
    fa = next(r for r in b.rows if r["rule"] == "fa" and r["measure"] == "step")
    assert fa["value"] >= delay * 1e3  # ms per step: at least the delay
    assert fa["ratio"] >= (plain["value"] + delay * 1e3 * 0.9) / (plain["value"] * 1.5)
    assert fa["target"] == "<=1.03" and fa["passed"] in (True, False)


def test_metrics_overhead_is_the_probe_time_inside_train_loop(bench, monkeypatch):
    """The metrics measure runs train_loop and times engine.probe where the loop calls it: a probe
    made slower by a known delay gives that delay per probe in the ratio."""
    from fa_bench.engines import autograd

    delay = 0.05
    real = autograd.RuleEngine.probe

    def slow(self, batch):
        time.sleep(delay)
        return real(self, batch)

    monkeypatch.setattr(autograd.RuleEngine, "probe", slow)
    args = bench.parse(["--quick", "--metrics-rules", "fa", "--no-biotorch"])
    b = bench.Bench(args)
    data = bench.R.build_data(bench.cfg_of("mlp_784_1000_10", "bp", args.batch_size), torch.device("cpu"))
    data.x_test, data.y_test = data.x_test[:64], data.y_test[:64]
    bench.run_metrics(b, "mlp_784_1000_10", data, torch.device("cpu"))
    (row,) = b.rows
    probes = int(row["note"].split(" probes")[0].split()[-1])
    assert probes == 2  # 3 steps at metrics.every=100: at step 0 and once after training
    probe_time = row["value"] - row["reference"]
    assert probe_time >= probes * delay
    assert row["ratio"] == pytest.approx(probe_time / row["reference"])


def test_quick_bench_writes_every_section(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--models", "mlp_784_1000_10",
                           "--rules", "bp", "fa", "ifa", "--metrics-rules", "fa", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(r["torch_version"] and r["git_commit"] and r["load_average"] for r in rows)
    measures = {(r["section"], r["measure"]) for r in rows}
    assert {("step", "step"), ("metrics", "epoch"), ("small", "steps_per_s_plain"),
            ("small", "steps_per_s_fa_bench"), ("fig2", "end_to_end"), ("fig2", "startup"),
            ("fig2", "figure")} <= measures
    fig2 = next(r for r in rows if r["measure"] == "end_to_end")
    assert float(fig2["value"]) > 0 and fig2["target"] == "<=10.0"
    small = next(r for r in rows if r["measure"].startswith("seed_steps_per_s"))
    assert small["target"] == ">=5.0" and float(small["ratio"]) > 0
    md = (out / "bench.md").read_text()
    assert "Smoke run" in md and "Targets:" in md


def test_fig2_floor_times_fas_own_update_by_hand():
    """scripts/fig2_step_floor.py compares equal work: from the engine's own W, B and examples, its
    hand-written step lands where fa_bench's FA step does, and its autograd step where backprop's
    update (W in place of B), computed here by hand, does; over 5 examples, every seed of the stack."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench import engine_step
    from fig2_step_floor import fa_bench_engine, plain_steps

    engine, lr = fa_bench_engine(n_train=16)
    autograd, by_hand = plain_steps(engine, lr)
    fa_step = engine_step(engine)
    hidden, out = (m for m in engine.model if hasattr(m, "feedback_weight"))
    W0, W1 = hidden.weight.detach().clone(), out.weight.detach().clone()  # backprop's, by hand
    for i, batch in enumerate(list(engine.epoch_batches(0, 0))[:5]):
        fa_step(batch)
        by_hand(i)
        autograd(i)
        x, t = engine.x_train[i].expand(10, 1, -1), engine.y_train[i].expand(10, 1, -1)
        h = torch.bmm(x, W0.transpose(1, 2))
        e = torch.bmm(h, W1.transpose(1, 2)) - t
        W0, W1 = (W0 - lr * torch.bmm(torch.bmm(e, W1).transpose(1, 2), x),
                  W1 - lr * torch.bmm(e.transpose(1, 2), h))
    fa_weights = (hidden.weight.detach(), out.weight.detach())
    for mine, theirs, bp, bp_by_hand in zip(by_hand.weights, fa_weights, autograd.weights, (W0, W1)):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(bp.detach(), bp_by_hand, rtol=1e-5, atol=1e-7)
    assert (fa_weights[0] - W0).abs().max() > 1e-5  # FA's hidden update is not backprop's
