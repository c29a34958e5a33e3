"""Seed batching: seed s of a seed-stacked job is the ordinary run of seed s, for every registered rule.

The stacked job is ``fa_bench.run.run_seeds`` (what ``fa-run -m 'seed=range(N)'`` runs), the ordinary one
``fa_bench.run.run``: both write run folders, and their metrics.csv (alignment metrics included) and
summary.json must agree row for row, to the rounding of batched matrix products (bmm vs mm).
"""
import csv
import json
import logging
import re
import subprocess
import sys

import pytest
import torch

from fa_bench.config import compose_config
from fa_bench.rules import RULES
from fa_bench.run import resolve_config, run, run_seeds
from fa_bench.stacking import stack_models, stack_refusal

TEACHER = ["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=96", "dataset.n_test=50",
           "dataset.teacher_seed=null"]  # a teacher per seed: each seed trains on its own data set
MNIST = ["dataset.n_train=200", "dataset.n_test=100", "model.sizes=[784,32,16,10]", "model.hidden_activation=tanh"]
COMMON = ["device=cpu", "trainer.progress=false", "trainer.epochs=3", "trainer.batch_size=32",
          "trainer.eval_every=4", "metrics.every=3", "optimizer.momentum=0.9", "optimizer.weight_decay=1e-3"]
RULE_OPTIONS = {"node_perturbation": ["rule.sigma=0.1"]}  # a small sigma turns float rounding into noise
RTOL, ATOL = 2e-4, 1e-5


def rows(path):
    with open(path) as f:
        return list(csv.reader(f))


def assert_same_records(solo_dir, batched_dir):
    solo, batched = rows(solo_dir / "metrics.csv"), rows(batched_dir / "metrics.csv")
    assert [r[:6] for r in batched] == [r[:6] for r in solo]  # the same rows, in the same order
    for a, b in zip(batched[1:], solo[1:]):
        assert float(a[6]) == pytest.approx(float(b[6]), rel=RTOL, abs=ATOL, nan_ok=True), a[:6]
    s_solo, s_batched = (json.loads((d / "summary.json").read_text()) for d in (solo_dir, batched_dir))
    for key in ("status", "steps", "examples", "epochs_run", "stop_reason", "seed", "rule"):
        assert s_batched[key] == s_solo[key], key
    assert s_batched["seed_batch"] and "seed_batch" not in s_solo


def compare(overrides, seeds, tmp_path):
    cfg = compose_config([*overrides, f"seeds=[{','.join(map(str, seeds))}]"])
    summaries = run_seeds(cfg, tmp_path / "batched")
    assert [s["seed"] for s in summaries] == seeds
    for seed in seeds:
        run(compose_config([*overrides, f"seed={seed}"]), tmp_path / f"solo{seed}")
        assert_same_records(tmp_path / f"solo{seed}", tmp_path / "batched" / f"seed{seed}")


MLP_RULES = sorted(RULES)  # every registered rule trains an MLP


@pytest.mark.parametrize("rule", MLP_RULES)
def test_seed_of_a_batched_run_is_its_unbatched_run(rule, tmp_path):
    # one data set per seed (a seed-dependent teacher), momentum and weight decay, 3 epochs of 3 steps
    compare([*TEACHER, *COMMON, f"rule={rule}", *RULE_OPTIONS.get(rule, [])], [0, 3], tmp_path)


@pytest.mark.parametrize("rule", ["fa", "dfa", "brsf"])
def test_mnist_seeds_share_one_data_set(rule, tmp_path):
    compare([*MNIST, *COMMON, f"rule={rule}", "trainer.epochs=1", "metrics.batch_size=50"], [1, 2], tmp_path)


def test_every_rule_stacks_and_the_seeds_keep_their_own_tensors():
    for rule in MLP_RULES:
        cfgs = [resolve_config(compose_config([*TEACHER, f"rule={rule}", f"seed={s}"])) for s in (0, 1)]
        from fa_bench.run import build

        models = [build(c, torch.device("cpu"))[1] for c in cfgs]
        assert stack_refusal(models[0]) is None, rule
        stacked = stack_models(models, [0, 1])
        for i, model in enumerate(models):
            for name, value in model.state_dict().items():
                torch.testing.assert_close(stacked.state_dict()[name][i], value, msg=f"{rule} {name}")
        assert not torch.equal(stacked[1].weight[0], stacked[1].weight[1])  # different seeds differ


def test_a_diverging_seed_stops_and_the_others_go_on(tmp_path, caplog):
    # seed 1's teacher is scaled up so far that its loss crosses divergence_loss; the others are unaffected
    overrides = [*TEACHER, *COMMON, "rule=fa", "trainer.divergence_loss=50", "dataset.weight_scale=0.5"]
    big = [*overrides, "dataset.weight_scale=40"]
    cfg = compose_config([*overrides, "seeds=[0,2]"])
    run_seeds(cfg, tmp_path / "ok")
    mixed = compose_config([*big, "seeds=[0,2]"])
    with caplog.at_level(logging.INFO, logger="fa_bench.trainer"):
        out = run_seeds(mixed, tmp_path / "mixed")
    stopped = sorted(int(m.group(1)) for r in caplog.records if (m := re.match(r"seed (\d+) stopped", r.getMessage())))
    # the log names a stopped seed by its number, not by its place in the stack (seed 2 is at index 1)
    assert stopped == [s["seed"] for s in out if s["status"] == "diverged"] and 2 in stopped
    solo = [run(compose_config([*big, f"seed={s}"]), tmp_path / f"solo{s}") for s in (0, 2)]
    assert [s["status"] for s in out] == [s["status"] for s in solo]
    assert "diverged" in {s["status"] for s in out}
    for s in (0, 2):
        assert_same_records(tmp_path / f"solo{s}", tmp_path / "mixed" / f"seed{s}")


def test_a_model_that_cannot_stack_runs_its_seeds_one_after_another(tmp_path, caplog):
    overrides = [*MNIST, *COMMON, "rule=fa", "+model.dropout=0.5", "trainer.epochs=1"]
    with caplog.at_level(logging.INFO, logger="fa_bench.run"):
        out = run_seeds(compose_config([*overrides, "seeds=[0,1]"]), tmp_path / "group")
    assert [r.getMessage() for r in caplog.records if "seed batching off" in r.getMessage()] == [
        "seed batching off (module 3 is a Dropout; seed stacking takes Linear layers and elementwise "
        "activations only): 2 seeds run one after another"]
    assert "seed_batch" not in out[0]
    solo = run(compose_config([*overrides, "seed=1"]), tmp_path / "solo1")
    assert rows(tmp_path / "group" / "seed1" / "metrics.csv") == rows(tmp_path / "solo1" / "metrics.csv")
    assert out[1]["final"] == solo["final"]


def test_a_seed_sweep_through_fa_run_is_one_job_with_a_folder_per_seed(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fa_bench.cli", "-m", "rule=fa,bp", "seed=range(3)", *TEACHER,
                           "device=cpu", "trainer.progress=false", "trainer.max_steps=4", "trainer.eval_every=2",
                           f"hydra.sweep.dir={tmp_path}/sweep"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [re.sub(r"_[0-9a-f]{10}$", "", j) for j in jobs] == ["bp_seeds0-2", "fa_seeds0-2"]  # <rule>_<seeds>_<key>
    for job in jobs:
        seeds = sorted(p.name for p in (tmp_path / "sweep" / job).iterdir() if p.name.startswith("seed"))
        assert seeds == ["seed0", "seed1", "seed2"]
        for s in seeds:
            summary = json.loads((tmp_path / "sweep" / job / s / "summary.json").read_text())
            assert summary["status"] == "completed" and summary["seed"] == int(s[4:])
            assert (tmp_path / "sweep" / job / s / ".hydra" / "overrides.yaml").read_text().endswith(f"seed={s[4:]}\n")


def test_a_stacked_job_resolves_one_config_and_reseeds_it(tmp_path, monkeypatch):
    import fa_bench.run as R

    calls = []
    real = R.resolve_config
    monkeypatch.setattr(R, "resolve_config", lambda cfg, *a, **k: calls.append(int(cfg.seed)) or real(cfg, *a, **k))
    cfg = compose_config([*TEACHER, *COMMON, "rule=fa", "trainer.epochs=1", "seeds=[0,1,2]"])
    summaries = run_seeds(cfg, tmp_path / "group")
    assert [s["status"] for s in summaries] == ["completed"] * 3 and summaries[0]["seed_batch"] == [0, 1, 2]
    assert calls == [0]  # the first seed's, once; the others are its reseeded copies


@pytest.mark.parametrize("rule", ["fa", "shallow", "node_perturbation"])
def test_a_reseeded_resolved_config_is_that_seed_resolved(rule):
    # run_seeds resolves seed 0 only and reseeds copies of it: per_rule settings (lillicrap_fig2 gives
    # each rule its own lr and options) and ${seed} interpolations (the teacher's seed) must come out
    # as resolving each seed's config would give them
    from omegaconf import OmegaConf

    from fa_bench.run import seed_configs

    cfg = compose_config(["experiment=lillicrap_fig2", f"rule={rule}", "hydra.mode=RUN"])
    configs = seed_configs(cfg, [0, 3, 7])
    each = [OmegaConf.to_container(resolve_config(c, command_line=[]), resolve=True) for c in configs]
    first = resolve_config(configs[0], command_line=[])
    reseeded = [OmegaConf.to_container(c, resolve=True) for c in [first, *seed_configs(first, [3, 7])]]
    assert reseeded == each
    assert [c["dataset"]["seed"] for c in reseeded] == [0, 3, 7]
    assert reseeded[1]["optimizer"]["lr"] == OmegaConf.to_container(cfg.per_rule)[rule]["optimizer"]["lr"]
