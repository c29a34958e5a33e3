"""runs.csv says what ran: each run's Hydra config-group choices are columns (choice_<group>), from a
tiny sweep through the CLI and from hand-made run folders; the Nøkland tables read their cell from them."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd

from fa_bench.collect import collect, read_table
from fa_bench.figures.nokland import _with_cells


def _fa_run(args, cwd):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "fa_bench.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_a_tiny_sweep_collects_its_choices_as_columns(tmp_path):
    proc = _fa_run(["experiment=nokland_table1", "rule=dfa", "cell=nokland_1x800_tanh,nokland_2x800_relu",
                    "seed=range(1)", "trainer.max_steps=3", "dataset.n_train=128", "dataset.n_test=64",
                    "trainer.eval_every=2", "metrics.every=2", "metrics.batch_size=32", "trainer.progress=false",
                    "hydra.launcher.n_jobs=1", f"results_dir={tmp_path}/results", f"hydra.sweep.dir={tmp_path}/sweep"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = read_table(tmp_path / "results" / "nokland_table1" / "runs.csv").sort_values("choice_cell")
    assert len(runs) == 2 and (runs["status"] == "completed").all()
    assert runs["choice_cell"].tolist() == ["nokland_1x800_tanh", "nokland_2x800_relu"]
    assert runs["choice_model"].tolist() == ["nokland_1x800_tanh", "nokland_2x800_relu"]  # not the registry's "mlp"
    assert set(runs["model"]) == {"mlp"}  # the existing column stays as it was
    for group, option in {"dataset": "mnist", "rule": "dfa", "trainer": "nokland", "optimizer": "rmsprop",
                          "experiment": "nokland_table1"}.items():
        assert (runs[f"choice_{group}"] == option).all(), group
    assert not any(c.startswith("choice_hydra") for c in runs.columns)
    table = (tmp_path / "results" / "nokland_table1" / "table1.md").read_text()
    assert next(line for line in table.splitlines() if line.startswith("| 1x800 Tanh |")).endswith("| 0/0/1 |")


def _run_folder(path, choices=None, **fields):
    path.mkdir(parents=True)
    summary = {"status": "completed", "rule": "dfa", "seed": 0, "model": "mlp", "git_commit": "0" * 40,
               "git_dirty": False, "device": "cpu", "torch_version": "x", "wall_time": 1.0, "examples": 64,
               "budget": {"epochs": 1}, "final": {"test/error": 2.0, "train/error": 0.0}, **fields}
    if choices is not None:
        summary["choices"] = choices
    (path / "summary.json").write_text(json.dumps(summary))


def test_runs_without_choices_leave_the_columns_empty(tmp_path):
    _run_folder(tmp_path / "runs" / "a", choices={"model": "nokland_2x800_tanh", "cell": "nokland_2x800_tanh",
                                                 "seed_group": "1"})
    _run_folder(tmp_path / "runs" / "b", choices={})  # the Python API
    _run_folder(tmp_path / "runs" / "c")              # a run folder from before choices were recorded
    collect(tmp_path / "runs", tmp_path / "out", experiment="x")
    runs = read_table(tmp_path / "out" / "runs.csv")
    assert runs["choice_model"].tolist() == ["nokland_2x800_tanh", "", ""]
    assert runs["choice_seed_group"].tolist() == ["1", "", ""]  # an option name stays text
    assert runs["model"].tolist() == ["mlp"] * 3


def test_collecting_runs_without_choices_adds_no_columns(tmp_path):
    _run_folder(tmp_path / "runs" / "a")
    collect(tmp_path / "runs", tmp_path / "out", experiment="x")
    assert not [c for c in pd.read_csv(tmp_path / "out" / "runs.csv").columns if c.startswith("choice_")]


def test_tables_take_the_cell_from_the_choice_and_fall_back_to_the_setting():
    runs = pd.DataFrame({"setting": ["cell=nokland_7x240_tanh", "", "cell=nokland_1x800_tanh"],
                         "choice_cell": ["nokland_7x240_tanh", "nokland_2x800_relu", ""]})
    assert _with_cells(runs)["cell"].tolist() == ["nokland_7x240_tanh", "nokland_2x800_relu", "nokland_1x800_tanh"]
    assert _with_cells(runs.drop(columns="choice_cell"))["cell"].tolist() == ["nokland_7x240_tanh", "",
                                                                                "nokland_1x800_tanh"]


def test_a_swept_key_names_the_cell_even_when_one_value_was_collected():
    """A table collected from one cell (or the only cell finished so far) still labels its runs
    cell=<name>: the table's claims select on it, and found nothing before."""
    from fa_bench.collect import _settings, swept_by

    assert {"rule", "cell", "seed"} <= swept_by("nokland_table1")
    assert swept_by("no_such_experiment") == set() and swept_by(None) == set()
    one_cell = [{"cell": "nokland_2x800_tanh", "rule": "bp", "seed": "0"},
                {"cell": "nokland_2x800_tanh", "rule": "bp", "seed": "1", "trainer.progress": "false"}]
    assert _settings(one_cell) == ["", ""]  # nothing varies and nothing is swept: no label
    assert _settings(one_cell, swept_by("nokland_table1")) == ["cell=nokland_2x800_tanh"] * 2
    two_cells = [{"cell": "a", "optimizer.lr": "0.1"}, {"cell": "b", "optimizer.lr": "0.1"}]
    assert _settings(two_cells) == ["cell=a", "cell=b"]  # a constant override stays out of the label
    # how often a run checkpoints does not change what it trains: a run given 5min is the same cell
    checkpointed = [{"cell": "a"}, {"cell": "a", "trainer.checkpoint_every": "5min"}, {"cell": "b"}]
    configs = [{"trainer": {"checkpoint_every": every}} for every in ("10min", "5min", "10min")]
    assert _settings(checkpointed, swept={"cell"}, configs=configs) == ["cell=a", "cell=a", "cell=b"]
    assert _settings([{"cell": "a", "optimizer.lr": "0.1"}, {"cell": "a", "optimizer.lr": "0.2"}], swept={"cell"}) == [
        "cell=a,optimizer.lr=0.1", "cell=a,optimizer.lr=0.2"]  # one that does still splits them


def test_a_key_typed_by_some_runs_at_the_configs_value_does_not_split_their_cell():
    # Table 1: the early runs were given optimizer.lr=1e-4 on the command line, later ones took the
    # config's 1e-4; a key whose resolved value differs (trainer.epochs=3 against the config's 300) still
    # names its runs' setting, and without resolved configs the overrides alone decide (as before)
    from fa_bench.collect import _settings

    overrides = [{"cell": "a", "optimizer.lr": "1e-4"}, {"cell": "a"},
                 {"cell": "b", "optimizer.lr": "1e-4", "trainer.epochs": "3"}]
    configs = [{"optimizer": {"lr": 1e-4}, "trainer": {"epochs": 300}},
               {"optimizer": {"lr": 1e-4}, "trainer": {"epochs": 300}},
               {"optimizer": {"lr": 1e-4}, "trainer": {"epochs": 3}}]
    assert _settings(overrides, swept={"cell"}, configs=configs) == ["cell=a", "cell=a", "cell=b,trainer.epochs=3"]
    assert _settings(overrides, swept={"cell"}) == ["cell=a,optimizer.lr=1e-4", "cell=a",
                                                   "cell=b,optimizer.lr=1e-4,trainer.epochs=3"]
    configs[1]["optimizer"]["lr"] = 1e-3  # a real difference in what trained still splits them
    assert _settings(overrides, swept={"cell"}, configs=configs)[:2] == ["cell=a,optimizer.lr=1e-4", "cell=a"]
    configs[1] = None  # a run without its resolved config: the overrides decide for every run
    assert _settings(overrides, swept={"cell"}, configs=configs)[0] == "cell=a,optimizer.lr=1e-4"
