"""The runner end to end: configs compose, bad input fails early, runs write SPEC §3 outputs,
the probe never changes the trajectory, and an experiment collects into results/ with its figure."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fa_bench import RULES
from fa_bench.config import compose_config
from fa_bench.run import ConfigError, resolve_config, run

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
TINY = ["dataset=linear_teacher", "model=linear_30_20_10", "dataset.n_train=64", "dataset.n_test=32",
        "trainer.batch_size=8", "trainer.eval_every=4", "trainer.progress=false", "metrics.every=2"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_validates(experiment):
    cfg = compose_config([f"experiment={experiment}"], return_hydra_config=True)
    assert cfg.experiment_name == experiment
    assert set(cfg.per_rule) <= set(RULES), f"per_rule names unknown rules: {set(cfg.per_rule) - set(RULES)}"
    swept = str(cfg.hydra.sweeper.params.get("rule", cfg.rule.name)).split(",")
    for rule in swept:  # each swept rule, with its per_rule settings, must validate before any training
        resolve_config(compose_config([f"experiment={experiment}", f"rule={rule.strip()}"]))


@pytest.mark.parametrize("group", ["dataset", "model", "rule", "optimizer", "trainer", "metrics"])
def test_every_group_option_composes(group):
    for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
        cfg = compose_config([f"{group}={option}"])
        resolve_config(cfg)


def test_bad_rule_name_in_config_lists_valid_rules():
    cfg = compose_config(["rule.name=nope"])
    with pytest.raises(ConfigError) as err:
        resolve_config(cfg)
    for name in RULES:
        assert name in str(err.value)


def test_bad_rule_option_fails_before_training():
    cfg = compose_config(["+rule.bogus=1", "rule=fa"])
    with pytest.raises(ConfigError, match="valid options"):
        resolve_config(cfg)


def test_per_rule_overrides_apply_to_their_rule_only():
    cfg = compose_config(["experiment=lillicrap_fig2", "rule=fa"])
    fa = resolve_config(cfg)
    bp = resolve_config(compose_config(["experiment=lillicrap_fig2", "rule=bp"]))
    assert fa.rule.scale == 0.5 and fa.rule.init == "uniform"
    assert "scale" not in bp.rule
    assert fa.optimizer.lr == cfg.per_rule.fa.optimizer.lr


def _run(tmp_path, overrides, name="run"):
    cfg = compose_config(TINY + overrides)
    summary = run(cfg, tmp_path / name)
    metrics = pd.read_csv(tmp_path / name / "metrics.csv", dtype={"layer": str}, keep_default_na=False,
                          na_values={"value": ["nan"]})
    return summary, metrics


def test_run_writes_spec_outputs(tmp_path):
    summary, metrics = _run(tmp_path, ["rule=fa", "seed=3"])
    assert list(metrics.columns) == ["step", "epoch", "examples", "split", "name", "layer", "value"]
    names = set(metrics["name"])
    assert {"loss", "nse", "delta_angle", "update_angle", "weight_angle", "sign_congruence", "rel_error",
            "norm_ratio", "sign_flips", "neuron_angle"} <= names
    assert set(metrics.loc[metrics["name"] == "nse", "layer"]) == {""}
    assert set(metrics.loc[metrics["name"] == "delta_angle", "layer"]) == {"1", "3"}
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    for key in ["status", "final", "experiment", "rule", "model", "dataset", "seed", "wall_time", "device",
                "torch_version", "git_commit", "git_dirty"]:
        assert key in on_disk, key
    assert on_disk["status"] == "completed" and on_disk["seed"] == 3 and on_disk["rule"] == "fa"
    assert summary["steps"] == 8 and summary["examples"] == 64


@pytest.mark.parametrize("rule", sorted(RULES))
def test_probe_never_changes_the_trajectory(tmp_path, rule):
    # dropout makes the check bite: a probe that consumed the global RNG would shift every mask
    overrides = [f"rule={rule}", "model.sizes=[30,20,20,10]", "model.hidden_activation=tanh", "+model.dropout=0.2",
                 "optimizer.lr=0.01"]
    _, with_probe = _run(tmp_path, overrides + ["metrics.every=1"], "probe")
    _, without = _run(tmp_path, overrides + ["metrics.every=0"], "plain")
    key = ["step", "split", "name", "layer"]
    a = with_probe[with_probe["name"].isin(["loss", "nse"])].set_index(key)["value"]
    b = without[without["name"].isin(["loss", "nse"])].set_index(key)["value"]
    assert len(a) == len(b) > 0
    assert a.equals(b), "alignment metrics changed the training trajectory"


def test_same_seed_same_numbers_and_other_seed_differs(tmp_path):
    _, a = _run(tmp_path, ["rule=fa", "seed=1"], "a")
    _, b = _run(tmp_path, ["rule=fa", "seed=1"], "b")
    _, c = _run(tmp_path, ["rule=fa", "seed=2"], "c")
    assert a["value"].tolist() == b["value"].tolist()
    assert a["value"].tolist() != c["value"].tolist()


def test_diverged_run_is_marked(tmp_path):
    summary, _ = _run(tmp_path, ["rule=bp", "optimizer.lr=100", "dataset.n_train=256"])
    assert summary["status"] == "diverged"
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "diverged"


def _fa_run(args, cwd, timeout=600):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fa_bench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_bad_rule_fails_before_training_listing_valid_rules(tmp_path):
    proc = _fa_run(["rule=nope"], tmp_path)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    for name in ["bp", "fa", "dfa", "shallow"]:
        assert name in out
    assert not list(tmp_path.rglob("metrics.csv"))


def test_cli_single_run_end_to_end(tmp_path):
    proc = _fa_run(TINY + ["rule=dfa", f"hydra.run.dir={tmp_path}/one"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["rule"] == "dfa"
    assert (tmp_path / "one" / ".hydra" / "config.yaml").is_file()


def test_cli_experiment_sweeps_collects_and_draws(tmp_path):
    proc = _fa_run(["experiment=lillicrap_fig2", "trainer.max_steps=40", "trainer.eval_every=10",
                    "metrics.every=10", "seed=range(2)", f"results_dir={tmp_path}/results",
                    f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "results" / "lillicrap_fig2"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 8 and set(runs["rule"]) == {"shallow", "node_perturbation", "bp", "fa"}
    assert set(runs["seed"]) == {0, 1} and (runs["status"] == "completed").all()
    assert (runs["steps"] == 40).all()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["n_runs"] == 8 and meta["git_commits"]
    assert (folder / "fig2.png").stat().st_size > 10_000
    table = (folder / "summary.md").read_text()
    for rule in ["shallow", "node_perturbation", "bp", "fa"]:
        assert f"| {rule} | 2 | 0 | 0 |" in table  # n completed, diverged, failed


def test_make_figures_runs_on_committed_results(tmp_path, repo):
    import shutil

    shutil.copytree(repo / "results", tmp_path / "results")
    proc = subprocess.run(["make", "-C", str(repo), "figures", f"RESULTS={tmp_path / 'results'}",
                           f"PYTHON={sys.executable}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = (tmp_path / "results" / "SCORECARD.md").read_text()
    from fa_bench.scorecard import load_claims

    for claim in load_claims():  # a claim whose experiment has results must be scored, not "no data"
        row = next(line for line in card.splitlines() if line.startswith(f"| {claim['id']} |"))
        if (tmp_path / "results" / claim["experiment"] / "curves.csv").is_file():
            # scored, or "not run" when its own row's cell is not among the committed runs yet
            assert "| no data |" not in row and ("| pass |" in row or "| FAIL |" in row or "| not run |" in row), row
    assert (tmp_path / "results" / "lillicrap_fig2" / "fig2.png").is_file()
    assert (tmp_path / "results" / "lillicrap_fig2" / "summary.md").is_file()


def test_mnist_and_convnet_paths_run(tmp_path):
    summary = run(compose_config(["dataset=mnist", "model=moskovitz_mnist", "rule=dfa", "trainer.max_steps=2",
                                  "trainer.batch_size=16", "trainer.eval_batch_size=5000", "trainer.progress=false",
                                  "metrics.every=1", "+dataset.n_train=64", "+dataset.n_test=64"]), tmp_path / "m")
    assert summary["status"] == "completed"


def test_missing_data_names_the_folder_and_marks_the_run_failed(tmp_path):
    cfg = compose_config(["dataset=mnist", "dataset.download=false", f"data.root={tmp_path}/empty",
                          "trainer.progress=false"])
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty")):
        run(cfg, tmp_path / "run")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "failed" and "FileNotFoundError" in summary["error"]


def test_git_info_ignores_results_but_not_code(tmp_path):
    from fa_bench.records import git_info

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "results" / "runs.csv").write_text("x\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_info(tmp_path)["git_dirty"] is False
    (tmp_path / "results" / "runs.csv").write_text("y\n")  # what runs write does not make the code dirty
    assert git_info(tmp_path)["git_dirty"] is False
    (tmp_path / "code.py").write_text("a = 2\n")
    info = git_info(tmp_path)
    assert info["git_dirty"] is True and len(info["git_commit"]) == 40


def test_collect_survives_nan_values_and_diverged_runs(tmp_path):
    # a diverged run logs NaN; a zero-initialised layer gives a NaN weight angle: both must round-trip
    from fa_bench.collect import collect, read_table
    from fa_bench.figures import make_figure
    from fa_bench.scorecard import write_scorecard
    from fa_bench.tables import write_summary_table

    base = ["experiment=lillicrap_fig2", "hydra.mode=RUN", "dataset.n_train=64", "trainer.eval_every=8",
            "metrics.every=4", "trainer.progress=false"]
    run(compose_config(base + ["rule=fa", "model.init=zero"]), tmp_path / "sweep" / "fa")
    run(compose_config(base + ["rule=bp", "per_rule.bp.optimizer.lr=1000"]), tmp_path / "sweep" / "bp")
    meta = collect(tmp_path / "sweep", tmp_path / "results" / "lillicrap_fig2", metrics=["nse", "weight_angle"])
    assert meta["status_counts"] == {"completed": 1, "diverged": 1}
    curves = read_table(tmp_path / "results" / "lillicrap_fig2" / "curves.csv")
    assert curves["value"].dtype.kind == "f" and curves["value"].isna().any()
    assert make_figure("lillicrap_fig2", tmp_path / "results")
    table = write_summary_table(tmp_path / "results" / "lillicrap_fig2").read_text()
    assert "| bp | 0 | 1 | 0 |" in table and "| fa | 1 | 0 | 0 |" in table
    assert "| fig2_fa_converges |" in write_scorecard(tmp_path / "results").read_text()


def test_read_table_gives_budget_columns_back_as_numbers_with_gaps_as_nan(tmp_path):
    # runs.csv writes a run without an epoch budget as 'nan': read back, the column must still be numbers
    # (the scorecard's per-row budget sums and ranges them), while a text column stays text
    from fa_bench.collect import read_table

    (tmp_path / "runs.csv").write_text("rule,layer,budget_epochs,budget_note_x,examples,value\n"
                                       "bp,1,300,,64,nan\nfa,2,nan,,128,0.5\ndfa,3,12,word,192,\n")
    runs = read_table(tmp_path / "runs.csv")
    assert runs["budget_epochs"].dtype.kind == "f" and runs["budget_epochs"].isna().tolist() == [False, True, False]
    assert runs["budget_epochs"].sum() == 312 and runs["examples"].tolist() == [64, 128, 192]
    assert runs["budget_note_x"].tolist() == ["", "", "word"] and runs["layer"].tolist() == ["1", "2", "3"]
    assert runs["value"].isna().tolist() == [True, False, True]


def test_cli_spiking_engine_sweeps_collects_traces_and_draws(tmp_path):
    proc = _fa_run(["experiment=lillicrap_fig4", "spiking.sizes=[784,30,20]", "spiking.streams=4",
                    "spiking.eval_every=32", "spiking.trace_steps=10", "dataset.n_train=64",
                    "dataset.n_test=40", "seed=range(2)", f"results_dir={tmp_path}/results",
                    f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = tmp_path / "results" / "lillicrap_fig4"
    runs = pd.read_csv(folder / "runs.csv")
    assert len(runs) == 2 and (runs["status"] == "completed").all() and (runs["examples"] == 64).all()
    assert (runs["budget_batch_size"] == 4).all()  # the streams are the budget's batch
    traces = pd.read_csv(folder / "traces.csv")
    assert set(traces["seed"]) == {0, 1} and set(traces["rule"]) == {"fa"}
    assert {"spike", "psp", "modulator"} <= set(traces["kind"])
    assert (folder / "fig4.png").stat().st_size > 10_000


def test_spiking_engine_rejects_other_rules_and_unknown_settings():
    with pytest.raises(ConfigError, match="rule=fa"):
        resolve_config(compose_config(["experiment=lillicrap_fig4", "hydra.mode=RUN", "rule=bp"]))
    with pytest.raises(ConfigError, match="unknown setting"):
        resolve_config(compose_config(["experiment=lillicrap_fig4", "hydra.mode=RUN", "+spiking.nope=1"]))
    with pytest.raises(ConfigError, match="valid choices: autograd, spiking"):
        resolve_config(compose_config(["engine=nope"]))


def test_saved_activations_are_written_and_collected(tmp_path):
    from fa_bench.collect import collect

    cfg = compose_config(["hydra.mode=RUN", *TINY, "rule=fa", "save_activations=10"])
    run(cfg, tmp_path / "runs" / "a")
    saved = np.load(tmp_path / "runs" / "a" / "activations.npz")
    assert saved["labels"].shape[0] == 10
    assert list(saved["names"]) == ["1", "3"]  # the input of every converted layer
    assert saved["feature_1"].shape[0] == 10
    collect(tmp_path / "runs", tmp_path / "results" / "x")
    assert (tmp_path / "results" / "x" / "activations" / "fa_seed0.npz").is_file()
    with pytest.raises(ConfigError, match="save_activations"):
        resolve_config(compose_config(["save_activations=0"]))


def test_the_sweep_end_lets_loky_workers_go_and_creates_no_pool(monkeypatch):
    # on_multirun_end releases the joblib launcher's idle workers before collect (not in loky's exit
    # handler after it); with no pool it must not make one
    import sys

    from fa_bench.callbacks import _release_workers

    monkeypatch.delitem(sys.modules, "joblib.externals.loky.reusable_executor", raising=False)
    _release_workers()
    assert "joblib.externals.loky.reusable_executor" not in sys.modules
    monkeypatch.undo()

    from joblib import Parallel, delayed

    assert Parallel(n_jobs=2)(delayed(abs)(-i) for i in range(4)) == [0, 1, 2, 3]
    executor = sys.modules["joblib.externals.loky.reusable_executor"]._executor
    assert not executor._flags.shutdown
    _release_workers()
    assert executor._flags.shutdown
