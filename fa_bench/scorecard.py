"""Score committed results against the papers' claims (fa_bench/claims.yaml) into results/SCORECARD.md.

The papers' numbers come from fa_bench/papers/: claims.yaml names them (`paper_value: <paper>/<name>`)
or has whole tables' claims generated from them (`table_claims: <paper>/<table>`)."""
from __future__ import annotations

import importlib
import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fa_bench import atomic
from fa_bench.collect import budget_text, matches, read_table, run_meta, select

RULE_NAMES = {"bp": "BP", "fa": "FA", "dfa": "DFA"}  # as the papers' tables head their columns
# what a row's budget column says beside the run's budget: setup_note, ours ran at the paper's budget
# (and how); budget_note, ours is below it (and how far); finding, ours ran at it and differs (and why)
BUDGET_NOTES = ("setup_note", "budget_note", "finding")


def paper_data(name: str):
    """The module fa_bench/papers/<name>.py (a paper's reported numbers)."""
    return importlib.import_module(f"fa_bench.papers.{name}")


def _paper_value(ref: str) -> float:
    paper, _, key = ref.partition("/")
    values = paper_data(paper).VALUES
    if key not in values:
        raise KeyError(f"claims.yaml refers to {ref!r}, but fa_bench/papers/{paper}.py VALUES has no {key!r}")
    return values[key]


class _Quoted:
    """Paper numbers by name inside a claim's ``paper:`` text, so the text never retypes one:
    ``{p[lansdell2020/table2a_np]:g}`` is the value, ``{acc[blog2016/three_layer_fa_test_error]:g}`` the
    accuracy (100 − the error) a paper quoted as such."""

    def __init__(self, of=lambda v: v):
        self.of = of

    def __getitem__(self, ref: str) -> float:
        return round(self.of(_paper_value(ref)), 10)  # 100 - 10.5 prints as 89.5, not 89.50000000000001


def _resolve(claim: dict) -> dict:
    """A hand-written claim's paper numbers are named, not typed: the check's ``paper_value``, and the
    numbers its ``paper:`` text quotes ({paper_value}, {p[...]}, {acc[...]})."""
    ref = claim.get("check", {}).get("paper_value")
    value = _paper_value(ref) if isinstance(ref, str) else None
    text = claim["paper"]
    if "{" in text:
        text = text.format(paper_value=value, p=_Quoted(), acc=_Quoted(lambda v: 100 - v))
    if value is None:
        return {**claim, "paper": text}
    return {**claim, "paper": text, "check": {**claim["check"], "paper_value": value}}


def table_claims(entry: dict, tables: dict | None = None) -> list[dict]:
    """One claim per field of a paper table (see the comment above `table_claims:` in claims.yaml).
    ``tables`` stands in for the paper module's TABLES (tests perturb a copy)."""
    paper, _, experiment = entry["table_claims"].partition("/")
    spec = (paper_data(paper).TABLES if tables is None else tables)[experiment]
    d = spec["decimals"]
    claims = []
    for cell, (label, fields) in spec["cells"].items():
        for rule, field in fields.items():
            where = f"{RULE_NAMES[rule]} on {label} ({spec['dataset']})"
            select_ = {"rule": rule, "setting": f"cell={cell}"}
            claim = {"id": f"{entry['id_prefix']}{cell.removeprefix('nokland_')}_{rule}", "experiment": experiment,
                     "source": entry["source"]}
            if field is None:
                claim.update(paper=f"{where}: empty field, no convergence",
                             check={"kind": "above", "select": select_, "metric": "train/error",
                                    "threshold": spec["not_converged"]},
                             reason=f"'no convergence' read as a final training error still above "
                                    f"{spec['not_converged']:g} % (chance: {spec['chance']:g} %)")
            else:
                mean, sd, train = field
                text = f"{where}: {mean:.{d}f} ± {sd:.{d}f} % test error"
                if train is not None:
                    text += f" ({train:.{d}f} % training error)"
                claim.update(paper=text,
                             check={"kind": "value", "select": select_, "metric": "test/error",
                                    "paper_value": mean, "abs_tol": round(max(entry["min_tol"], 2 * sd), 6)},
                             reason=entry["reason"])
            for note in BUDGET_NOTES:
                if entry.get(note):
                    claim[note] = entry[note]
            claims.append(claim)
    return claims


def column_claims(entry: dict, tables: dict | None = None) -> list[dict]:
    """One claim per field of a table whose columns are experiments and whose rows are cells (Moskovitz
    Table 1: `<paper module>.<TABLE>` maps experiment -> {"dataset", "cells": {cell: (label, value)}});
    each field's tolerance is its column's (`abs_tol`, by experiment)."""
    paper, _, name = entry["column_claims"].partition("/")
    columns = getattr(paper_data(paper), name) if tables is None else tables
    claims = []
    for experiment, spec in columns.items():
        tol = entry["abs_tol"][experiment]
        for cell, (label, value) in spec["cells"].items():
            name = f"{experiment.removeprefix(entry['strip_experiment'])}_{cell.removeprefix(entry['strip_cell'])}"
            claim = {"id": entry["id_prefix"] + name,
                     "experiment": experiment, "source": entry["source"],
                     "paper": f"{label} on {spec['dataset']}: {value:g} % {entry['measure']}",
                     "check": {"kind": "value", "select": {"setting": f"cell={cell}"}, "metric": entry["metric"],
                               "paper_value": value, "abs_tol": tol},
                     "reason": entry["reason"].format(tol=tol)}
            for note in BUDGET_NOTES:
                if entry.get(note):
                    claim[note] = entry[note]
            claims.append(claim)
    return claims


def with_findings(entry: dict, claims: list[dict]) -> list[dict]:
    """A generated table's per-field notes (the field: its claim id less ``id_prefix``):
    ``findings: {<field>: <cause>}`` sets that claim's ``finding``, and ``budget_notes: {<field>: <how far>}``
    its ``budget_note`` and drops the table's ``setup_note``, which says the fields ran at the paper's
    budget and so would be false for that one. A field run short with a budget key on the command line
    (``trainer.epochs=3``) has that key in its runs' setting: ``{<field>: {note: <how far>, setting:
    <the runs' setting>}}`` scores those runs, and only those. ``settings: {<field>: <the runs' setting>}``
    does the same for a field at the paper's budget whose runs named a key on the command line that the
    config has since taken as its value (the runs that chose it: Table 1's ADV ε; a test holds each such
    setting to the config it names); a list of settings scores the runs of each (the runs that typed the
    key and later seeds that took it from the config). A field the table does not have is an error, not
    a note that never shows."""
    by_field = {c["id"].removeprefix(entry["id_prefix"]): c for c in claims}
    for key in ("findings", "budget_notes", "settings"):
        unknown = sorted(set(entry.get(key) or {}) - set(by_field))
        if unknown:
            raise ValueError(f"claims.yaml, {entry.get('table_claims') or entry.get('column_claims')}: {key} for "
                             f"fields the table does not have: {unknown}; its fields: {', '.join(by_field)}")
    for field, cause in (entry.get("findings") or {}).items():
        by_field[field]["finding"] = cause
    for field, setting in (entry.get("settings") or {}).items():
        claim = by_field[field]
        claim["check"] = {**claim["check"], "select": {**claim["check"]["select"], "setting": setting}}
    for field, how_far in (entry.get("budget_notes") or {}).items():
        claim = by_field[field]
        if isinstance(how_far, dict):
            claim["check"] = {**claim["check"], "select": {**claim["check"]["select"], "setting": how_far["setting"]}}
            how_far = how_far["note"]
        claim["budget_note"] = how_far
        claim.pop("setup_note", None)
    return claims


def load_claims() -> list[dict]:
    """claims.yaml's claims in its order, with each `table_claims:` / `column_claims:` entry expanded in
    place."""
    entries = yaml.safe_load(resources.files("fa_bench").joinpath("claims.yaml").read_text())
    claims = []
    for entry in entries:
        if "table_claims" in entry:
            claims += with_findings(entry, table_claims(entry))
        elif "column_claims" in entry:
            claims += with_findings(entry, column_claims(entry))
        else:
            claims.append(_resolve(entry))
    return claims


def _per_seed(curves: pd.DataFrame, sel: dict, metric: str, at="end", scale: float = 1.0) -> pd.Series:
    """Each seed's value at the start, the end, its minimum over training ('min': Lansdell's Table 2a),
    or (a number) the last point logged at or before that many examples; times ``scale`` (a per-example
    loss read as a batch's sum)."""
    rows = select(curves, metric, **(sel or {})).sort_values("step")
    if not isinstance(at, str):
        rows = rows[rows["examples"] <= at]
    grouped = rows.groupby("seed")["value"]
    values = grouped.first() if at == "start" else grouped.min() if at == "min" else grouped.last()
    return values * scale


def _examples_to_reach(curves, sel, metric, threshold) -> pd.Series:
    out = {}
    for seed, g in select(curves, metric, **(sel or {})).sort_values("examples").groupby("seed"):
        hit = g[g["value"] < threshold]
        out[seed] = float(hit["examples"].iloc[0]) if len(hit) else math.inf
    return pd.Series(out, dtype=float)


def _fmt(series: pd.Series) -> str:
    if series.empty:
        return "no data"
    finite = series[np.isfinite(series)]
    if len(finite) < len(series):
        return f"{finite.mean():.4g} ± {finite.std(ddof=1) if len(finite) > 1 else 0:.2g} (n={len(finite)}; " \
               f"{len(series) - len(finite)} never)"
    sd = series.std(ddof=1) if len(series) > 1 else 0.0
    return f"{series.mean():.4g} ± {sd:.2g} (n={len(series)})"


def _matching(frame: pd.DataFrame, sel: dict | None) -> pd.Series | None:
    """Which rows of ``frame`` (curves or runs) a claim's run selection picks (collect.matches); None when
    the selection names a column the frame lacks."""
    if any(column not in frame for column in (sel or {})):
        return None
    match = pd.Series(True, index=frame.index)
    for column, value in (sel or {}).items():
        match &= matches(frame[column], value)
    return match


def _selection_ran(claim: dict, curves: pd.DataFrame) -> bool:
    """Whether every run selection the claim reads (select, a, b) matches some run's curves, whatever
    the metric: a False here is a row not run yet, where "no data" would mean a claim reading nothing."""
    c = claim["check"]
    for sel in (c.get("select"), c.get("a"), c.get("b")):
        match = _matching(curves, sel)
        if match is None or not match.any():
            return False
    return True


def score(claim: dict, curves: pd.DataFrame) -> tuple[str, str]:
    """(ours, verdict) for one claim. Verdict is pass, FAIL or 'no data'."""
    c = claim["check"]
    kind = c["kind"]
    if kind in ("below", "above", "value"):
        vals = _per_seed(curves, c.get("select"), c["metric"], c.get("at", "end"), c.get("scale", 1.0))
        if vals.empty:
            return "no data", "no data"
        m = vals.mean()
        threshold = c.get("threshold", c.get("paper_value"))  # a paper's number can be the bound itself
        if kind == "below":
            ok = m <= threshold if "threshold" not in c else m < threshold
        elif kind == "above":
            ok = m > threshold
        else:
            se = vals.std(ddof=1) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0
            gap, bound = abs(m - c["paper_value"]), max(c.get("abs_tol", 0.0), 2 * se)
            # the bound is inclusive, and binary floats put a decimal gap of exactly the bound just outside
            # it (1.75 − 1.45 = 0.30000000000000004); no metric is recorded to 1e-9 of its size
            ok = gap <= bound or math.isclose(gap, bound, rel_tol=1e-9)
        return _fmt(vals), "pass" if ok else "FAIL"
    if kind == "less":
        a = _per_seed(curves, c["a"], c["metric"], c.get("at", "end"), c.get("scale", 1.0))
        b = _per_seed(curves, c["b"], c.get("metric_b", c["metric"]), c.get("at", "end"), c.get("scale", 1.0))
        if a.empty or b.empty:
            return "no data", "no data"
        ok = a.mean() < b.mean() + c.get("margin", 0.0)
        return f"{_fmt(a)} vs {_fmt(b)}", "pass" if ok else "FAIL"
    if kind == "ratio":
        start = _per_seed(curves, c.get("select"), c["metric"], c["from"])
        end = _per_seed(curves, c.get("select"), c["metric"], c["to"])
        if start.empty or end.empty:
            return "no data", "no data"
        ratio = (end / start).dropna()
        ok = ratio.mean() < c["below"] if "below" in c else ratio.mean() > c["above"]
        return f"{c['to']}/{c['from']} examples: {_fmt(ratio)}", "pass" if ok else "FAIL"
    if kind == "reach_first":
        a = _examples_to_reach(curves, c["a"], c["metric"], c["threshold"])
        b = _examples_to_reach(curves, c["b"], c["metric"], c["threshold"])
        if a.empty or b.empty:
            return "no data", "no data"
        ok = np.median(a) < np.median(b)
        return f"examples to {c['threshold']}: {_fmt(a)} vs {_fmt(b)}", "pass" if ok else "FAIL"
    if kind == "spread":  # how far a per-layer metric drifts across depth: max/min over the layers, per seed
        rows = curves[(curves["split"] == "train") & (curves["name"] == c["metric"])
                      & ~curves["layer"].astype(str).str.contains(":") & (curves["layer"].astype(str) != "")]
        for column, value in (c.get("select") or {}).items():
            rows = rows[matches(rows[column], value)]
        if rows.empty:
            return "no data", "no data"
        ends = rows.sort_values("step").groupby(["seed", "layer"])["value"]
        ends = ends.first() if c.get("at") == "start" else ends.last()
        spreads = ends.groupby(level="seed").agg(lambda v: float(v.max() / v.min()))
        ok = spreads.mean() < c["below"] if "below" in c else spreads.mean() > c["above"]
        return f"max/min over layers: {_fmt(spreads)}", "pass" if ok else "FAIL"
    raise ValueError(f"unknown check kind {kind!r} in claim {claim['id']}")


COMMITTED_SOURCE = ("Written by `make figures` from the committed `results/` data and `fa_bench/claims.yaml`; "
                    "nothing here is typed by hand.")


def _experiment_data(folder: Path):
    """(completed curves, meta, completed runs) of one collected experiment, or (None, None, None) when it
    was not run; runs is None for a collection without runs.csv."""
    if not (folder / "curves.csv").is_file() or not (folder / "meta.json").is_file():
        return None, None, None
    curves = read_table(folder / "curves.csv")
    if (folder / "measures.csv").is_file():  # per-seed values a figure module derived from the data (curves' columns)
        curves = pd.concat([curves, read_table(folder / "measures.csv")], ignore_index=True)
    if "status" in curves:
        curves = curves[curves["status"] == "completed"]
    runs = read_table(folder / "runs.csv") if (folder / "runs.csv").is_file() else None
    if runs is not None and "status" in runs:
        runs = runs[runs["status"] == "completed"]
    return curves, json.loads((folder / "meta.json").read_text()), runs


def claim_budget(claim: dict, meta: dict, runs: pd.DataFrame | None) -> str:
    """The budget of the runs a claim is scored on: those its selections (select, a, b) pick out of
    runs.csv, so a Table 1 field says its own seeds and lengths rather than the whole table's. A claim
    that selects nothing reads every completed run; where runs.csv cannot answer (no such file, a
    selection on a column it lacks, or no run matching), the experiment's whole budget (meta.json)."""
    if runs is None or runs.empty:
        return budget_text(meta)
    c = claim["check"]
    selections = [sel for sel in (c.get("select"), c.get("a"), c.get("b")) if sel] or [{}]
    picked = pd.Series(False, index=runs.index)
    for sel in selections:
        match = _matching(runs, sel)
        if match is None:
            return budget_text(meta)
        picked |= match
    if not picked.any():
        return budget_text(meta)
    return budget_text(run_meta(runs[picked], meta.get("experiment")))


def write_scorecard(results_dir: Path | str, out: Path | str | None = None, committed: bool = True) -> Path:
    """Score every claim against the experiments collected under ``results_dir`` (any results folder:
    the committed one, or a user's run's); a claim whose experiment folder is absent reads "not run".
    Writes ``out`` (default ``<results_dir>/SCORECARD.md``) atomically and returns its path.
    ``committed``: the header says the file comes from the committed results (make figures) rather
    than naming ``results_dir``."""
    results_dir = Path(results_dir)
    rows = []
    cache: dict[Path, tuple] = {}
    for claim in load_claims():
        exp = claim["experiment"]
        # ``results``: a sub-folder of the experiment's results holding the runs this claim is scored on (the
        # paper's length for the conditions it needs, where the experiment's own runs are shorter)
        folder = results_dir / exp / claim.get("results", "")
        if folder not in cache:
            cache[folder] = _experiment_data(folder)
        curves, meta, runs = cache[folder]
        if curves is None:
            ours, verdict, budget = "not run", "not run", ""
        else:
            ours, verdict = score(claim, curves)
            if verdict == "no data" and not _selection_ran(claim, curves):
                ours = verdict = "not run"  # its row's cell is not among the experiment's runs yet
            budget = claim_budget(claim, meta, runs)
        if claim.get("setup_note") and budget:  # at the paper's budget, and how ours ran there
            budget += f"; **at the paper's budget**: {claim['setup_note']}"
        if claim.get("budget_note") and budget:
            budget += f"; **below the paper's budget**: {claim['budget_note']}"
        if claim.get("finding") and budget:  # measured at the paper's budget: the cause is not the budget
            budget += f"; **at the paper's budget, why ours differs**: {claim['finding']}"
        rows.append(f"| {claim['id']} | {exp} | {claim['source']} | {claim['paper']} | {ours} | {verdict} | "
                    f"{claim['reason']} | {budget} |")
    passed = sum("| pass |" in r for r in rows)
    source = COMMITTED_SOURCE if committed else (
        f"Written by `python -m fa_bench.scorecard --results {results_dir}` from the results collected in "
        f"`{results_dir}` and `fa_bench/claims.yaml`; nothing here is typed by hand. Rows whose experiment "
        "is not in that folder read \"not run\".")
    text = "\n".join([
        "# Scorecard",
        "",
        source + " Ours: mean ± sd over seeds (n).",
        "",
        "Reproduce a row: `fa-run experiment=<name>`, with the row's experiment as <name>; it writes "
        "`results/<name>/`, then `make figures` rescores." if committed else
        "Reproduce a row: `fa-run experiment=<name>`, with the row's experiment as <name>; it collects into "
        "the sweep's own folder (`results_dir=...` to choose), then `make scorecard RESULTS=<that folder>` "
        "rescores.",
        "",
        f"**{passed} of {len(rows)} claims pass.**",
        "",
        "| claim | experiment | source | paper | ours | verdict | tolerance / why | budget |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    return atomic.write_text(Path(out) if out is not None else results_dir / "SCORECARD.md", text)


def is_committed(results_dir: Path | str) -> bool:
    """Whether ``results_dir`` is this checkout's committed results/ folder."""
    repo_results = Path(__file__).resolve().parents[1] / "results"
    return Path(results_dir).resolve() == repo_results


def main(argv=None) -> Path:
    import argparse

    p = argparse.ArgumentParser(prog="python -m fa_bench.scorecard",
                                description="Score any results folder (results/<experiment>/ subfolders, as "
                                            "collected by an experiment sweep) against the papers' claims.")
    p.add_argument("--results", default="results", help="the results folder to score (default: results)")
    p.add_argument("--out", default=None, help="where to write the scorecard (default: <results>/SCORECARD.md)")
    args = p.parse_args(argv)
    if not Path(args.results).is_dir():
        p.error(f"no results folder {args.results}")
    out = write_scorecard(Path(args.results), args.out, committed=is_committed(args.results))
    print(out)
    return out


if __name__ == "__main__":
    main()
