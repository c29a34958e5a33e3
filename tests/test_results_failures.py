"""A sweep with failed, missing and diverged runs still collects what completed: runs.csv keeps every run
with its status and error, tables mark the cells without a completed run, every figure draws from the
rest, and the sweep's callback says so in one line and exits non-zero. The scorecard scores any
results folder. Everything collect, tables, figures and the scorecard write is written atomically."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

from fa_bench import atomic
from fa_bench.callbacks import exit_code, status_line
from fa_bench.collect import collect, read_table
from fa_bench.figures import FIGURES, make_figure
from fa_bench.figures.nokland import paper_table
from fa_bench.papers.nokland2016 import TABLES
from fa_bench.scorecard import load_claims
from fa_bench.scorecard import main as scorecard_main
from fa_bench.tables import write_summary_table

REPO = Path(__file__).resolve().parents[1]
METRICS_HEADER = "step,epoch,examples,split,name,layer,value\n"
METRIC_ROW = {"epoch": 1, "examples": 64, "split": "test", "name": "error", "layer": ""}


# ---------------------------------------------------------------------------------------------------
# hand-made sweep folders (what fa-run writes; the CLI is not needed)
# ---------------------------------------------------------------------------------------------------
def _hydra(folder: Path, overrides: list[str], choices: dict | None = None, config: dict | None = None):
    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if choices is not None:
        (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    if config is not None:
        (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))


def _summary(folder: Path, status="completed", rule="fa", seed=0, cell="nokland_2x800_tanh", error=None,
             metrics=True):
    summary = {"status": status, "rule": rule, "seed": seed, "model": "mlp", "experiment": "nokland_table1",
               "git_commit": "0" * 40, "git_dirty": False, "device": "cpu", "torch_version": "x",
               "wall_time": 1.0, "examples": 64, "budget": {"epochs": 1, "batch_size": 64},
               "choices": {"cell": cell, "rule": rule},
               "final": {"test/error": 3.0 + seed, "train/error": 1.0} if status == "completed" else {}}
    if error:
        summary["error"] = error
    (folder / "summary.json").write_text(json.dumps(summary))
    if metrics:
        (folder / "metrics.csv").write_text(METRICS_HEADER + f"64,0,64,test,error,,{3.0 + seed}\n")


def _sweep(root: Path) -> Path:
    """bp: 2 seeds batched, completed; fa: batched, one seed failed and one missing (no summary.json);
    dfa: a batched job killed before its seed folders existed; a bad config's job: failed at once."""
    sweep = root / "sweep"
    cell = "nokland_2x800_tanh"
    cfg = {"experiment_name": "nokland_table1", "rule": {"name": "dfa"}, "model": {"name": "mlp"},
           "dataset": {"name": "mnist"}, "seed": 0}
    for i, (rule, fates) in enumerate([("bp", ["completed", "completed"]), ("fa", ["failed", None])]):
        job = sweep / f"{i}_{rule}_seeds0-1"
        _hydra(job, [f"rule={rule}", f"cell={cell}", "seed=0", "seeds=[0,1]"], {"rule": rule, "cell": cell})
        for seed, fate in enumerate(fates):
            run = job / f"seed{seed}"
            _hydra(run, [f"rule={rule}", f"cell={cell}", f"seed={seed}"])
            if fate is not None:
                _summary(run, fate, rule, seed, cell, error="RuntimeError: boom" if fate == "failed" else None,
                         metrics=fate == "completed")
    _hydra(sweep / "2_dfa_seeds0-1", ["rule=dfa", f"cell={cell}", "seed=0", "seeds=[0,1]"],
           {"rule": "dfa", "cell": cell}, cfg)
    bad = sweep / "3_bp_seed0"
    _hydra(bad, ["rule=bp", "cell=nokland_1x800_tanh", "seed=0"], {"rule": "bp", "cell": "nokland_1x800_tanh"})
    _summary(bad, "failed", "bp", 0, "nokland_1x800_tanh", error="ConfigError: dataset.n_train must be > 0, got 0",
             metrics=False)
    (sweep / "multirun.yaml").write_text("{}\n")
    return sweep


def test_collect_keeps_failed_and_missing_runs_with_their_errors(tmp_path):
    meta = collect(_sweep(tmp_path), tmp_path / "results" / "nokland_table1", experiment="nokland_table1")
    runs = read_table(tmp_path / "results" / "nokland_table1" / "runs.csv")
    by = {(r.rule, r.seed, r.choice_cell): r for r in runs.itertuples()}
    assert len(runs) == 7, runs[["rule", "seed", "status"]]
    assert meta["status_counts"] == {"completed": 2, "failed": 2, "missing": 3}
    assert by[("fa", 0, "nokland_2x800_tanh")].status == "failed"
    assert by[("fa", 0, "nokland_2x800_tanh")].error == "RuntimeError: boom"
    assert by[("fa", 1, "nokland_2x800_tanh")].status == "missing"
    assert "no summary.json" in by[("fa", 1, "nokland_2x800_tanh")].error
    # a batched job killed before its seed folders: one missing row per seed, rule and cell from .hydra/
    assert by[("dfa", 0, "nokland_2x800_tanh")].status == by[("dfa", 1, "nokland_2x800_tanh")].status == "missing"
    assert by[("bp", 0, "nokland_1x800_tanh")].error.startswith("ConfigError: dataset.n_train")
    curves = read_table(tmp_path / "results" / "nokland_table1" / "curves.csv")
    assert set(zip(curves["rule"], curves["seed"])) == {("bp", 0), ("bp", 1)}  # only runs with metrics
    assert meta["seeds"] == [0, 1] and meta["git_commits"] == ["0" * 40]


def test_a_metrics_file_cut_off_mid_row_is_named_and_its_run_marked(tmp_path, caplog):
    # a job killed while writing leaves a metrics.csv that does not parse: its run keeps its row, marked
    # curves=unreadable, and collect says which file it could not read (no silent skip)
    sweep = _sweep(tmp_path)
    bad = sweep / "0_bp_seeds0-1" / "seed1" / "metrics.csv"
    bad.write_bytes(b"\xff\xfe\x00 not utf-8 \x80\x81")
    with caplog.at_level("WARNING", logger="fa_bench.collect"):
        collect(sweep, tmp_path / "results" / "nokland_table1", experiment="nokland_table1")
    runs = read_table(tmp_path / "results" / "nokland_table1" / "runs.csv")
    row = runs[(runs.rule == "bp") & (runs.seed == 1) & (runs.choice_cell == "nokland_2x800_tanh")].iloc[0]
    assert row.status == "completed" and row.curves == "unreadable"
    assert str(bad) in caplog.text
    curves = read_table(tmp_path / "results" / "nokland_table1" / "curves.csv")
    assert set(zip(curves["rule"], curves["seed"])) == {("bp", 0)}


def test_tables_mark_the_cells_without_a_completed_run(tmp_path):
    dest = tmp_path / "results" / "nokland_table1"
    collect(_sweep(tmp_path), dest, experiment="nokland_table1")
    summary = write_summary_table(dest).read_text()
    assert "Runs: 2 completed, 2 failed, 3 missing." in summary
    assert "(batch 64, 1 epoch(s))" in summary  # whole numbers stay whole beside the failed runs' gaps
    rows = {line.split(" | ")[0].strip("| "): line for line in summary.splitlines() if line.startswith("| ")}
    assert "1 failed, 1 missing | —" in rows["fa"]
    assert "2 missing | —" in rows["dfa"]
    assert rows["rule"].startswith("| rule | setting | n | diverged | failed | missing |")
    table = paper_table(read_table(dest / "runs.csv"), TABLES["nokland_table1"])
    row = table[table["network"] == TABLES["nokland_table1"]["cells"]["nokland_2x800_tanh"][0]].iloc[0]
    assert row["BP ours"].startswith("3.50 ± 0.71 %")
    assert row["FA ours"] == "— (1 failed, 1 missing)"
    assert row["DFA ours"] == "— (2 missing)"
    assert row["seeds (BP/FA/DFA)"] == "2/0/0"
    bad = table[table["network"] == TABLES["nokland_table1"]["cells"]["nokland_1x800_tanh"][0]].iloc[0]
    assert bad["BP ours"] == "— (1 failed)" and bad["FA ours"] == "not run"
    written = make_figure("nokland_table1", tmp_path / "results")
    assert "— (1 failed, 1 missing)" in written[0].read_text()


def test_the_status_line_and_exit_code():
    assert status_line({"completed": 28, "failed": 2}, "multirun/x") == "28 completed, 2 failed: see multirun/x"
    assert status_line({"completed": 3, "diverged": 1, "missing": 2}, "d") == \
        "3 completed, 0 failed, 1 diverged, 2 missing: see d"
    assert exit_code({"completed": 3, "diverged": 1}) == 0  # a diverged run is a result, not a failure
    assert exit_code({"completed": 3, "failed": 1}) == exit_code({"missing": 1}) == exit_code({"interrupted": 1}) == 1


# ---------------------------------------------------------------------------------------------------
# every registered figure, with one rule's runs all failed (and with every run failed)
# ---------------------------------------------------------------------------------------------------
def _fail(folder: Path, rules) -> None:
    """Mark ``rules``' runs failed in a collected folder, as collect writes them: status failed, no
    final values, their partial curves tagged failed, no activations."""
    runs = read_table(folder / "runs.csv")
    hit = runs["rule"].isin(rules)
    runs.loc[hit, "status"] = "failed"
    runs.loc[hit, "error"] = "RuntimeError: boom"
    runs.loc[hit, [c for c in runs.columns if c.startswith("final_")]] = float("nan")
    runs.to_csv(folder / "runs.csv", index=False, na_rep="nan")
    if (folder / "curves.csv").is_file():
        curves = read_table(folder / "curves.csv")
        curves.loc[curves["rule"].isin(rules), "status"] = "failed"
        curves.to_csv(folder / "curves.csv", index=False, na_rep="nan")
    for path in (folder / "activations").glob("*.npz") if (folder / "activations").is_dir() else []:
        if any(path.name.startswith(f"{r}_seed") for r in rules):
            path.unlink()


def _results_for(experiment: str, tmp_path: Path) -> Path:
    """A results folder holding ``experiment``: the committed one, else a small collected sweep."""
    results = tmp_path / "results"
    src = REPO / "results" / experiment
    if src.is_dir():
        shutil.copytree(src, results / experiment)
        if experiment == "lillicrap_sparse":  # drawn beside the dense Fig. 3a curves
            shutil.copytree(REPO / "results" / "lillicrap_fig3a", results / "lillicrap_fig3a")
    else:
        collect(_sweep(tmp_path), results / experiment, experiment=experiment)
    return results


@pytest.mark.parametrize("experiment", sorted(FIGURES))
@pytest.mark.parametrize("how", ["one_rule", "all"])
def test_every_figure_draws_from_what_completed(experiment, how, tmp_path):
    results = _results_for(experiment, tmp_path)
    folder = results / experiment
    rules = sorted(read_table(folder / "runs.csv")["rule"].astype(str).unique())
    _fail(folder, rules[:1] if how == "one_rule" else rules)
    assert "failed" in write_summary_table(folder).read_text()
    written = make_figure(experiment, results)
    plt.close("all")
    for path in written:
        assert path.is_file() and path.stat().st_size
    if how == "one_rule" and experiment != "nokland_fig3":
        assert written, f"{experiment}: nothing drawn from the rules that completed"
    leftovers = [p for p in folder.rglob(".*tmp-*")]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------------------
# the scorecard of any results folder
# ---------------------------------------------------------------------------------------------------
def test_the_scorecard_of_a_folder_with_one_experiment_marks_the_rest_not_run(tmp_path, capsys):
    shutil.copytree(REPO / "results" / "lillicrap_fig2", tmp_path / "mine" / "lillicrap_fig2")
    out = scorecard_main(["--results", str(tmp_path / "mine"), "--out", str(tmp_path / "card.md")])
    assert out == tmp_path / "card.md" and str(out) in capsys.readouterr().out
    card = out.read_text()
    assert f"--results {tmp_path / 'mine'}" in card  # says which folder it scored
    rows = {line.split(" | ")[0].strip("| "): line for line in card.splitlines() if line.startswith("| ")}
    for claim in load_claims():
        row = rows[claim["id"]]
        if claim["experiment"] == "lillicrap_fig2":
            assert "not run" not in row and ("| pass |" in row or "| FAIL |" in row), row
        else:
            assert row.count("not run") == 2, row
    committed = (REPO / "results" / "SCORECARD.md").read_text()
    fig2_rows = [line for line in committed.splitlines() if " | lillicrap_fig2 | " in line]
    assert fig2_rows and all(line in card.splitlines() for line in fig2_rows)  # the same scores as committed


def test_the_scorecard_command_runs_as_a_module(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fa_bench.scorecard", "--results", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "SCORECARD.md").is_file()
    assert "**0 of" in (tmp_path / "SCORECARD.md").read_text()


# ---------------------------------------------------------------------------------------------------
# atomic writes
# ---------------------------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "runs.csv"
    atomic.write_text(target, "old\n")

    class Boom(pd.DataFrame):
        def to_csv(self, *args, **kwargs):
            Path(args[0]).write_text("half")
            raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.to_csv(Boom({"a": [1]}), target)
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.csv"]
    atomic.write_json(tmp_path / "meta.json", {"a": 1}, indent=2)
    assert json.loads((tmp_path / "meta.json").read_text()) == {"a": 1}


def test_savefig_keeps_the_format_of_the_destination(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    atomic.savefig(fig, tmp_path / "f.png", dpi=50)
    atomic.savefig(fig, tmp_path / "f.pdf")
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "f.pdf").read_bytes()[:4] == b"%PDF"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.pdf", "f.png"]


# ---------------------------------------------------------------------------------------------------
# the sweep's exit status, through Hydra itself (a tiny app whose one job records a failure)
# ---------------------------------------------------------------------------------------------------
APP = '''
import json, hydra
from pathlib import Path
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    ok = cfg.x != 0
    summary = {"status": "completed" if ok else "failed", "rule": "fa", "seed": 0, "git_commit": "0" * 40,
               "device": "cpu", "wall_time": 1.0, "final": {"test/nse": 0.5} if ok else {}}
    if not ok:
        summary["error"] = "ValueError: x must not be 0"
    else:
        (out / "metrics.csv").write_text("step,epoch,examples,split,name,layer,value\\n1,0,1,test,nse,,0.5\\n")
    (out / "summary.json").write_text(json.dumps(summary))

if __name__ == "__main__":
    main()
'''
CONFIG = '''
x: 1
experiment_name: tiny
results_dir: ${hydra:sweep.dir}/results
collect: {max_points: 400, metrics: null}
hydra:
  sweep: {dir: sweep}
  callbacks:
    collect_results: {_target_: fa_bench.callbacks.CollectResults}
'''


@pytest.mark.parametrize("xs, code, line", [("1,0,2", 1, "2 completed, 1 failed: see sweep"),
                                            ("1,2", 0, "2 completed, 0 failed: see sweep")])
def test_a_sweep_with_a_failed_job_exits_non_zero_with_one_line(tmp_path, xs, code, line):
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "config.yaml").write_text(CONFIG)
    proc = subprocess.run([sys.executable, "app.py", "-m", f"x={xs}"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert line in (proc.stderr if code else proc.stdout).splitlines(), proc.stdout + proc.stderr
    runs = read_table(tmp_path / "sweep" / "results" / "tiny" / "runs.csv")  # under the sweep's own folder
    assert sorted(runs["status"]) == sorted(["completed"] * (len(xs.split(",")) - code) + ["failed"] * code)


def test_runs_of_two_sweeps_share_a_cell_whatever_their_results_dir(tmp_path):
    """Cells are the overrides that alter the run: two sweeps collected together that differ in where
    their results went, or in the progress bar, are not split into cells by it (the run key ignores them
    too); an override that does alter the run still names the cell."""
    sweep = tmp_path / "sweep"
    for i, (cell, extra) in enumerate([("nokland_1x800_tanh", ["results_dir=/a", "trainer.progress=False"]),
                                       ("nokland_2x800_relu", ["results_dir=/b"]),
                                       ("nokland_2x800_relu", ["results_dir=/b", "optimizer.lr=0.1"])]):
        run = sweep / f"fa_seed0_{i}"
        _hydra(run, ["rule=fa", f"cell={cell}", "seed=0", *extra])
        _summary(run, rule="fa", cell=cell)
    collect(sweep, tmp_path / "out", experiment="nokland_table1")
    runs = read_table(tmp_path / "out" / "runs.csv")
    assert sorted(runs["setting"]) == ["cell=nokland_1x800_tanh", "cell=nokland_2x800_relu",
                                       "cell=nokland_2x800_relu,optimizer.lr=0.1"]


def test_a_newer_collection_of_some_cells_replaces_only_those_cells(tmp_path):
    # results/<exp> keeps records, not run folders: a cell rerun at a larger budget is folded in with
    # merge_collected, the other cells keep their rows, and meta.json lists both budgets and commits
    from fa_bench.collect import merge_collected

    base, newer = tmp_path / "base", tmp_path / "newer"
    for folder, cells, steps, commit in ((base, ["a", "b"], 100, "1" * 40), (newer, ["b"], 1000, "2" * 40)):
        folder.mkdir()
        rows = [{"rule": "fa", "seed": s, "setting": f"cell={c}", "status": "completed", "git_commit": commit,
                 "git_dirty": False, "examples": steps * 32, "device": "cpu", "torch_version": "x",
                 "wall_time": 1.0, "budget_max_steps": steps, "final_test/error": 9.0 if c == "a" else steps}
                for c in cells for s in (0, 1)]
        pd.DataFrame(rows).to_csv(folder / "runs.csv", index=False)
        pd.DataFrame([{**METRIC_ROW, "rule": "fa", "seed": s, "setting": f"cell={c}", "status": "completed",
                       "step": steps, "value": float(steps)} for c in cells for s in (0, 1)]
                     ).to_csv(folder / "curves.csv", index=False)
    meta = merge_collected(base, newer, "exp")
    runs = read_table(base / "runs.csv")
    assert sorted(zip(runs["setting"], runs["budget_max_steps"].astype(int))) == [
        ("cell=a", 100), ("cell=a", 100), ("cell=b", 1000), ("cell=b", 1000)]
    curves = read_table(base / "curves.csv")
    assert sorted(set(zip(curves["setting"], curves["step"]))) == [("cell=a", 100), ("cell=b", 1000)]
    assert meta["budget"]["max_steps"] == [100, 1000] and meta["git_commits"] == ["1" * 40, "2" * 40]
    assert json.loads((base / "meta.json").read_text())["n_runs"] == 4
    # a newer collection that names no cell would replace everything: refused
    pd.DataFrame([{"rule": "fa", "seed": 0, "setting": "", "status": "completed"}]).to_csv(newer / "runs.csv",
                                                                                         index=False)
    with pytest.raises(ValueError, match="names no setting"):
        merge_collected(base, newer, "exp")
