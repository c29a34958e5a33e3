"""scripts/tune_lr.py --from-runs: a learning-rate search made of ordinary run folders is tabulated from
exactly the runs that share the experiment's config up to the rate and the seed."""
import sys
from pathlib import Path

import pandas as pd
import pytest

from fa_bench.config import compose_config
from fa_bench.run import run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import tune_lr  # noqa: E402

COMMON = ["cell=nokland_1x800_tanh", "debug=default"]


def one_run(folder, rule, lr, seed, *extra):
    overrides = [f"rule={rule}", f"optimizer.lr={lr}", f"seed={seed}", *COMMON, *extra]
    return run(compose_config(["experiment=nokland_table1", "hydra.mode=RUN", *overrides]), folder)


def test_from_runs_tabulates_only_the_matching_finished_runs(tmp_path):
    sweep = tmp_path / "runs"
    finals = {}
    for name, rule, lr, seed in [("a", "fa", 1e-3, 0), ("b", "fa", 3e-4, 0), ("c", "fa", 1e-3, 1), ("d", "bp", 1e-3, 0)]:
        finals[name] = one_run(sweep / name, rule, lr, seed)["final"]["test/error"]
    one_run(sweep / "other_cell", "fa", 1e-3, 0, "model.width=20")  # another net: not this search
    one_run(sweep / "other_lr", "fa", 1e-2, 0)  # a rate the search did not ask for
    (sweep / "empty").mkdir()  # a folder a killed job left without records
    out = tmp_path / "lr.csv"
    tune_lr.main(["nokland_table1", "--rules", "fa", "--lrs", "3e-4", "1e-3", "--seeds", "0", "1", "--metric",
                  "test/error", "--set", *COMMON, "--from-runs", str(sweep), "--out", str(out)])
    table = pd.read_csv(out)
    assert sorted(table["run_dir"]) == ["a", "b", "c"]  # fa's per_rule (zero init) resolved as the runs were
    assert dict(zip(table["run_dir"], table["final_error"])) == pytest.approx({k: finals[k] for k in "abc"})
    assert set(table["status"]) == {"completed"} and table["git_commit"].notna().all()


def test_from_runs_with_nothing_to_tabulate_says_so(tmp_path):
    (tmp_path / "runs").mkdir()
    with pytest.raises(SystemExit, match="no finished run"):
        tune_lr.main(["nokland_table1", "--rules", "bp", "--lrs", "1e-3", "--from-runs", str(tmp_path / "runs"),
                      "--out", str(tmp_path / "lr.csv")])
