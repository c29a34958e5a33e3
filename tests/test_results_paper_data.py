"""Each paper's numbers live in one place (fa_bench/papers/): the figures' tables and the scorecard's
claims read them from there, so they agree on every paper value; and the scorecard names each row's
experiment, with the command that reproduces it."""
from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import fa_bench.figures.nokland as nokland_figures
from fa_bench.figures import lillicrap_fig4, make_all, make_figure
from fa_bench.papers import nokland2016
from fa_bench.scorecard import load_claims, write_scorecard

REPO = Path(__file__).resolve().parents[1]
RULES = ("bp", "fa", "dfa")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def _claims_by_id() -> dict[str, dict]:
    return {c["id"]: c for c in load_claims()}


def _drawn_tables(tmp_path: Path) -> dict[str, dict[str, list[str]]]:
    """Every Nøkland table as make_figure writes it (no runs of ours): {experiment: {row label: cells}}."""
    tables = {}
    for experiment in nokland2016.TABLES:
        folder = tmp_path / experiment
        folder.mkdir(parents=True, exist_ok=True)
        pd.DataFrame([{"rule": "bp", "seed": 0, "setting": "cell=none", "status": "failed"}]).to_csv(
            folder / "runs.csv", index=False)
        (folder / "meta.json").write_text(json.dumps(
            {"experiment": experiment, "git_commits": ["0" * 40], "seeds": [0], "devices": ["cpu"],
             "budget": {"batch_size": [64], "epochs": [1], "examples_per_run": [64]}}))
        text = make_figure(experiment, tmp_path)[0].read_text()
        lines = [line for line in text.splitlines() if line.startswith("| ")]
        header = [h.strip() for h in lines[0].strip("|").split("|")]
        tables[experiment] = {cells[0]: dict(zip(header, cells)) for cells in
                              ([c.strip() for c in line.strip("|").split(" | ")] for line in lines[1:])}
    return tables


def _disagreements(tmp_path: Path) -> list[str]:
    """Every paper field the drawn tables and the scorecard's claims state differently."""
    claims = _claims_by_id()
    tables = _drawn_tables(tmp_path)
    problems = []
    for claim_entry in yaml.safe_load((REPO / "fa_bench" / "claims.yaml").read_text()):
        if "table_claims" not in claim_entry:
            continue
        experiment = claim_entry["table_claims"].split("/")[1]
        for cell, (label, _fields) in nokland_figures.PAPER[experiment]["cells"].items():
            for rule in RULES:
                drawn = tables[experiment][label][f"{rule.upper()} paper"]
                claim = claims.get(f"{claim_entry['id_prefix']}{cell.removeprefix('nokland_')}_{rule}")
                if claim is None:
                    problems.append(f"{experiment} {label} {rule}: no claim")
                    continue
                stated = claim["paper"].split(": ", 1)[1]
                if drawn == "—":  # the paper's empty field: a no-convergence claim
                    if claim["check"]["kind"] != "above" or "no convergence" not in stated:
                        problems.append(f"{claim['id']}: table empty, claim {stated!r}")
                elif [float(x) for x in NUMBER.findall(drawn)] != [float(x) for x in NUMBER.findall(stated)] \
                        or claim["check"].get("paper_value") != float(NUMBER.findall(drawn)[0]):
                    problems.append(f"{claim['id']}: table {drawn!r}, claim {stated!r} "
                                    f"(paper_value {claim['check'].get('paper_value')})")
    return problems


def test_every_table_field_matches_its_claim(tmp_path):
    assert _disagreements(tmp_path) == []


def test_a_table_that_drifts_from_the_scorecard_is_caught(tmp_path, monkeypatch):
    drifted = copy.deepcopy(nokland2016.TABLES)
    label, fields = drifted["nokland_table2"]["cells"]["nokland_conv_tanh"]
    fields["fa"] = (28.1, 0.8, 0.9)  # the figure's copy only: the claims still read 27.1
    monkeypatch.setattr(nokland_figures, "PAPER", drifted)
    problems = _disagreements(tmp_path)
    assert len(problems) == 1 and problems[0].startswith("nokland_t2_conv_tanh_fa:"), problems


def test_changing_the_paper_data_changes_table_and_claim_together(tmp_path, monkeypatch):
    label, fields = nokland2016.TABLES["nokland_table1"]["cells"]["nokland_2x800_tanh"]
    monkeypatch.setitem(nokland2016.TABLES["nokland_table1"]["cells"], "nokland_2x800_tanh",
                        (label, {**fields, "bp": (1.23, 0.04, 0.5)}))
    claim = _claims_by_id()["nokland_t1_2x800_tanh_bp"]
    assert claim["check"]["paper_value"] == 1.23
    assert claim["paper"] == "BP on 2x800 Tanh (MNIST): 1.23 ± 0.04 % test error (0.50 % training error)"
    assert _drawn_tables(tmp_path)["nokland_table1"]["2x800 Tanh"]["BP paper"] == "1.23 ± 0.04 % (0.50 %)"
    assert _disagreements(tmp_path) == []


def test_claims_type_no_paper_number_of_their_own():
    # a value claim names its number in fa_bench/papers/ or is generated from a paper table
    for entry in yaml.safe_load((REPO / "fa_bench" / "claims.yaml").read_text()):
        if "table_claims" in entry or "column_claims" in entry:  # generated from a paper module
            continue
        value = entry["check"].get("paper_value")
        assert value is None or isinstance(value, str), (entry["id"], value)
    for claim in load_claims():
        assert "{" not in claim["paper"], claim["id"]  # every quoted value filled in
        if claim["check"]["kind"] == "value":
            assert isinstance(claim["check"]["paper_value"], float), claim["id"]


def test_figures_draw_the_values_the_claims_check():
    claims = _claims_by_id()
    assert lillicrap_fig4.PAPER_ERROR == claims["fig4_spiking_error"]["check"]["paper_value"]
    assert nokland_figures.IFA_TEST_ERROR == claims["nokland_ifa_test_error"]["check"]["paper_value"]
    assert f"{nokland_figures.IFA_TEST_ERROR:g} %" in claims["nokland_ifa_test_error"]["paper"]


def test_an_unknown_paper_value_name_stops_with_its_name():
    from fa_bench import scorecard

    with pytest.raises(KeyError, match="lillicrap2016/nope"):
        scorecard._resolve({"id": "x", "paper": "{paper_value:g}", "check": {"paper_value": "lillicrap2016/nope"}})
    with pytest.raises(KeyError, match="lansdell2020/nope"):  # a number the text quotes by name
        scorecard._resolve({"id": "x", "paper": "NP {p[lansdell2020/nope]:g}", "check": {"kind": "less"}})


def test_a_claims_text_quotes_paper_numbers_by_name():
    # comparison claims quote the paper's numbers in their text: named ({p[...]}, {acc[...]}), not retyped
    from fa_bench.papers import blog2016, lansdell2020

    claims = _claims_by_id()
    v = lansdell2020.VALUES
    assert claims["lansdell_t2a_np_beats_fa"]["paper"].endswith(f"(FA {v['table2a_fa']:g} vs NP {v['table2a_np']:g})")
    accuracy = 100 - blog2016.VALUES["three_layer_fa_test_error"]
    assert f"{accuracy:g} % accuracy" in claims["blog_fa_accuracy"]["paper"] and "89.5 % accuracy" in \
        claims["blog_fa_accuracy"]["paper"]  # 100 - 10.5 printed as the blog's 89.5, not 89.50000000000001


def test_scorecard_rows_name_an_experiment_that_reproduces_them(tmp_path):
    card = write_scorecard(tmp_path).read_text()
    assert "reproduce a row: `fa-run experiment=<name>`" in card.lower()
    header = next(line for line in card.splitlines() if line.startswith("| claim |"))
    assert header.split(" | ")[1] == "experiment"
    claims = load_claims()
    for claim in claims:
        row = next(line for line in card.splitlines() if line.startswith(f"| {claim['id']} |"))
        assert row.split(" | ")[1] == claim["experiment"]
        assert (REPO / "conf" / "experiment" / f"{claim['experiment']}.yaml").is_file(), claim["id"]


def test_committed_results_redraw_byte_for_byte(tmp_path):
    # every figure, table and the scorecard from the committed data alone, identical to the committed files
    shutil.copytree(REPO / "results", tmp_path / "results")
    written = make_all(tmp_path / "results") + [write_scorecard(tmp_path / "results")]
    assert written
    for path in written:
        committed = REPO / "results" / path.relative_to(tmp_path / "results")
        assert committed.is_file(), f"{committed} is drawn but not committed"
        assert path.read_bytes() == committed.read_bytes(), f"{committed} differs from what make figures draws"


def test_a_cause_found_at_the_papers_budget_is_not_called_a_short_run(tmp_path, monkeypatch):
    # budget_note: the run is below the paper's budget; finding: it ran at it, and this is why ours differs
    from fa_bench import scorecard

    shutil.copytree(REPO / "results" / "nokland_ifa", tmp_path / "nokland_ifa")
    base = {"experiment": "nokland_ifa", "source": "s", "paper": "p", "reason": "r",
            "check": {"kind": "below", "select": {"rule": "ifa"}, "metric": "train/error", "threshold": 0.05}}
    monkeypatch.setattr(scorecard, "load_claims", lambda: [{**base, "id": "short", "budget_note": "one epoch"},
                                                           {**base, "id": "found", "finding": "no lr given"},
                                                           {**base, "id": "setup", "setup_note": "its stop rule"}])
    rows = {line.split(" | ")[0][2:]: line for line in write_scorecard(tmp_path).read_text().splitlines()
            if line.startswith(("| short |", "| found |", "| setup |"))}
    assert "**below the paper's budget**: one epoch" in rows["short"] and "why ours differs" not in rows["short"]
    assert "**at the paper's budget, why ours differs**: no lr given" in rows["found"]
    assert "below the paper's budget" not in rows["found"]
    # setup_note: at the paper's budget, how ours ran (Nøkland Table 1's stopping rule and learning rate)
    assert "**at the paper's budget**: its stop rule" in rows["setup"] and "below" not in rows["setup"]


def test_a_claim_with_a_results_folder_is_scored_on_its_runs_and_budget(tmp_path, monkeypatch):
    """``results: <sub>``: the claim reads results/<experiment>/<sub>/ (its curves and its budget line), the
    others the experiment's own folder."""
    from fa_bench import scorecard

    shutil.copytree(REPO / "results" / "lansdell_fig2", tmp_path / "lansdell_fig2")
    base = {"experiment": "lansdell_fig2", "source": "s", "paper": "p", "reason": "r",
            "check": {"kind": "value", "select": {"setting": "cell=lansdell_fig2_bp"}, "metric": "test/error",
                      "paper_value": 2.649, "abs_tol": 0.3}}
    monkeypatch.setattr(scorecard, "load_claims", lambda: [{**base, "id": "own"},
                                                           {**base, "id": "longer", "results": "steps200k"}])
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in write_scorecard(tmp_path).read_text().splitlines()
            if line.startswith(("| own |", "| longer |"))}
    own, longer = (scorecard._experiment_data(tmp_path / "lansdell_fig2" / sub) for sub in ("", "steps200k"))
    for name, (curves, meta, runs) in (("own", own), ("longer", longer)):
        expected = scorecard._per_seed(curves, base["check"]["select"], "test/error")
        assert rows[name][4] == scorecard._fmt(expected), name
        assert rows[name][7].startswith(scorecard.claim_budget(base, meta, runs)), name
    assert rows["own"][4] != rows["longer"][4] and "max_steps 200000" in rows["longer"][7]


def test_a_generated_table_field_carries_its_finding_and_a_misspelt_field_stops():
    from fa_bench.scorecard import table_claims, with_findings

    entry = {"table_claims": "nokland2016/nokland_table1", "id_prefix": "nokland_t1_", "source": "s", "min_tol": 0.3,
             "reason": "r", "findings": {"7x240_tanh_fa": "saturates"}}
    claims = {c["id"]: c for c in with_findings(entry, table_claims(entry))}
    assert claims["nokland_t1_7x240_tanh_fa"]["finding"] == "saturates"
    assert "finding" not in claims["nokland_t1_7x240_tanh_bp"]
    entry["findings"] = {"7x240_tanh_fb": "typo"}
    with pytest.raises(ValueError, match=r"7x240_tanh_fb.*its fields: .*7x240_tanh_fa"):
        with_findings(entry, table_claims(entry))


def test_a_generated_table_field_run_short_says_so_instead_of_the_tables_setup_note():
    from fa_bench.scorecard import table_claims, with_findings

    entry = {"table_claims": "nokland2016/nokland_table1", "id_prefix": "nokland_t1_", "source": "s", "min_tol": 0.3,
             "reason": "r", "setup_note": "the stop rule", "budget_notes": {"100x240_tanh_bp": "5 of 300 epochs"}}
    claims = {c["id"]: c for c in with_findings(entry, table_claims(entry))}
    short = claims["nokland_t1_100x240_tanh_bp"]
    assert short["budget_note"] == "5 of 300 epochs" and "setup_note" not in short
    assert claims["nokland_t1_100x240_tanh_fa"]["setup_note"] == "the stop rule"
    assert "budget_note" not in claims["nokland_t1_100x240_tanh_fa"]
    assert short["check"]["select"] == {"rule": "bp", "setting": "cell=nokland_100x240_tanh"}
    entry["budget_notes"] = {"100x240_tanh_bp": {"note": "3 epochs", "setting": "cell=nokland_100x240_tanh,trainer.epochs=3"}}
    claims = {c["id"]: c for c in with_findings(entry, table_claims(entry))}
    assert claims["nokland_t1_100x240_tanh_bp"]["check"]["select"]["setting"] == "cell=nokland_100x240_tanh,trainer.epochs=3"
    assert claims["nokland_t1_100x240_tanh_bp"]["budget_note"] == "3 epochs"
    assert claims["nokland_t1_100x240_tanh_fa"]["check"]["select"]["setting"] == "cell=nokland_100x240_tanh"
    entry["budget_notes"] = {"100x240_tanh_bq": "typo"}
    with pytest.raises(ValueError, match=r"budget_notes for fields the table does not have: \['100x240_tanh_bq'\]"):
        with_findings(entry, table_claims(entry))


def test_a_generated_table_field_at_the_papers_budget_can_score_runs_that_named_a_key():
    from fa_bench.scorecard import table_claims, with_findings

    setting = "cell=nokland_2x800_tanh_adv,trainer.adversarial.epsilon=0.1"
    entry = {"table_claims": "nokland2016/nokland_table1", "id_prefix": "nokland_t1_", "source": "s", "min_tol": 0.3,
             "reason": "r", "setup_note": "the stop rule", "settings": {"2x800_tanh_adv_bp": setting}}
    claims = {c["id"]: c for c in with_findings(entry, table_claims(entry))}
    assert claims["nokland_t1_2x800_tanh_adv_bp"]["check"]["select"] == {"rule": "bp", "setting": setting}
    assert claims["nokland_t1_2x800_tanh_adv_bp"]["setup_note"] == "the stop rule"  # still the paper's budget
    assert "budget_note" not in claims["nokland_t1_2x800_tanh_adv_bp"]
    assert claims["nokland_t1_2x800_tanh_adv_dfa"]["check"]["select"]["setting"] == "cell=nokland_2x800_tanh_adv"
    entry["settings"] = {"2x800_tanh_adv_bq": setting}
    with pytest.raises(ValueError, match=r"settings for fields the table does not have: \['2x800_tanh_adv_bq'\]"):
        with_findings(entry, table_claims(entry))


def test_a_list_of_settings_scores_the_runs_of_each():
    """A field whose first seed typed a key the config has since taken (Table 1's ADV ε) and whose later
    seeds took it from the config: the list picks both, and the value, n and budget line are theirs."""
    from fa_bench.scorecard import claim_budget, score

    typed, bare = "cell=nokland_2x800_tanh_adv,trainer.adversarial.epsilon=0.1", "cell=nokland_2x800_tanh_adv"
    curves = pd.DataFrame({"setting": [typed, bare, bare, "cell=other"], "rule": ["bp", "bp", "fa", "bp"],
                           "seed": [0, 1, 0, 0], "split": "test", "name": "error", "layer": "",
                           "step": 10, "examples": 100, "value": [1.0, 2.0, 7.0, 9.0]})
    claim = {"check": {"kind": "value", "select": {"rule": "bp", "setting": [typed, bare]}, "metric": "test/error",
                       "paper_value": 1.5, "abs_tol": 0.3}}
    ours, verdict = score(claim, curves)
    assert ours.startswith("1.5 ± ") and "(n=2)" in ours and verdict == "pass"
    only_typed = {"check": {**claim["check"], "select": {"rule": "bp", "setting": typed}}}
    assert "(n=1)" in score(only_typed, curves)[0] and score(only_typed, curves)[1] == "FAIL"
    runs = pd.DataFrame({"setting": [typed, bare, bare], "rule": ["bp", "bp", "fa"], "seed": [0, 1, 0],
                         "status": "completed", "device": "cpu", "git_commit": ["aaaaaaaa1", "bbbbbbbb2", "cccccccc3"],
                         "budget_batch_size": 64, "budget_epochs": 300, "budget_max_steps": float("nan"),
                         "examples": [600, 700, 800], "epochs_run": [10, 11, 12]})
    line = claim_budget(claim, {"experiment": "nokland_table1"}, runs)
    assert "2 seeds" in line and "aaaaaaaa" in line and "bbbbbbbb" in line and "cccccccc" not in line


def _thinned_series(curves: pd.DataFrame) -> list[str]:
    """The (setting, seed, metric) series of ``curves`` whose logged steps are not evenly spaced: collect
    thinned them (fa_bench.collect.thin), so a value between two kept steps is missing."""
    gaps = []
    for key, g in curves.groupby(["setting", "seed", "split", "name"], dropna=False):
        steps = g["step"].drop_duplicates().sort_values().diff().dropna()
        if steps.nunique() > 1:
            gaps.append(f"{key}: spacings {sorted(steps.unique())[:3]}")
    return gaps


def test_a_minimum_over_training_is_read_from_every_evaluation():
    """``at: min`` (Lansdell's Table 2a) is a minimum over the curve in curves.csv, which collect thins to
    collect.max_points per series: a thinned curve can miss the minimum (the 1 M-iteration runs of
    results/lansdell_table2a/code_1m lost up to 1.3 of it at 400 points). Every committed folder of an
    experiment with such a claim must hold every evaluation."""
    experiments = {c["experiment"] for c in load_claims() if c.get("check", {}).get("at") == "min"}
    assert experiments, "no claim reads a minimum over training"
    folders = [f.parent for exp in sorted(experiments) for f in sorted((REPO / "results" / exp).rglob("curves.csv"))
               if "runs" not in f.relative_to(REPO / "results" / exp).parts]
    assert folders
    for folder in folders:
        assert not _thinned_series(pd.read_csv(folder / "curves.csv")), folder


def test_a_thinned_curve_is_caught():
    from fa_bench.collect import thin

    steps = range(0, 1_001_000, 1000)
    curves = pd.DataFrame({"step": list(steps), "setting": "cell=x", "seed": 0, "split": "test", "name": "loss",
                           "value": [1.0] * len(steps)})
    assert not _thinned_series(curves)
    assert not _thinned_series(thin(curves, max_points=1001))
    assert _thinned_series(thin(curves, max_points=400))


def test_a_table_field_s_budget_is_its_own_runs_not_the_whole_table_s(tmp_path, monkeypatch):
    """Nøkland Table 1 holds fields with 1 and with 3 seeds, some stopped early and some cut to 3 epochs:
    each row's budget line counts only the runs its selection picks (the same runs its value comes from)."""
    from fa_bench import scorecard
    from fa_bench.collect import matches, read_table

    shutil.copytree(REPO / "results" / "nokland_table1", tmp_path / "nokland_table1")
    runs = read_table(tmp_path / "nokland_table1" / "runs.csv")
    runs = runs[runs["status"] == "completed"]
    claims = {c["id"]: c for c in scorecard.load_claims() if c["experiment"] == "nokland_table1"}
    monkeypatch.setattr(scorecard, "load_claims", lambda: list(claims.values()))
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in write_scorecard(tmp_path).read_text().splitlines()
            if line.startswith("| nokland_t1_")}
    seen_counts = set()
    for cid, claim in claims.items():
        sel = claim["check"]["select"]
        mine = runs[(runs["rule"] == sel["rule"]) & matches(runs["setting"], sel["setting"])]
        if mine.empty:
            continue
        seeds = sorted(int(s) for s in mine["seed"].unique())
        budget = rows[cid][7]
        assert budget.startswith(f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} x "), (cid, budget)
        ran = sorted(int(e) for e in mine["epochs_run"].unique())
        if ran != sorted(int(e) for e in mine["budget_epochs"].unique()):  # stopped early: says how far
            assert f"{ran[-1]} epoch(s) run of at most" in budget, (cid, budget)
        assert f"{int(mine['examples'].max())} examples/run" in budget or \
            f"-{int(mine['examples'].max())} (" in budget, (cid, budget)
        assert f" {int(mine['examples'].min())}" in budget.split(" examples/run")[0], (cid, budget)
        seen_counts.add(len(seeds))
    assert seen_counts >= {1, 3}  # the table mixes both, so a whole-table budget would fail above



def test_a_gap_of_exactly_the_tolerance_passes_and_one_hundredth_more_fails():
    """|ours − paper| ≤ tol is inclusive: Table 1's DO DFA (1.72 and 1.78 % against 1.45) sits exactly 0.30
    from the paper in decimal, 0.30000000000000004 in binary floats; 0.01 further is outside."""
    from fa_bench.scorecard import score

    def verdict(values, paper):
        curves = pd.DataFrame({"setting": "cell=c", "rule": "dfa", "seed": range(len(values)), "split": "test",
                               "name": "error", "layer": "", "step": 10, "examples": 100, "value": values})
        claim = {"check": {"kind": "value", "select": {"rule": "dfa", "setting": "cell=c"}, "metric": "test/error",
                           "paper_value": paper, "abs_tol": 0.3}}
        return score(claim, curves)[1]

    assert abs((1.72 + 1.78) / 2 - 1.45) > 0.3  # the float gap this test is about
    assert verdict([1.72, 1.78], 1.45) == "pass"
    assert verdict([1.73, 1.79], 1.45) == "FAIL"
    assert verdict([1.15, 1.15], 1.45) == "pass"  # below the paper by exactly the tolerance
    assert verdict([1.14, 1.15], 1.45) == "FAIL"
