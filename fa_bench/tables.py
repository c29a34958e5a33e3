"""Per-experiment summary table from runs.csv: final metrics by rule (and setting), mean ± sd over seeds."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fa_bench import atomic
from fa_bench.collect import budget_text, read_table

NO_VALUE = "—"
STATUS_ORDER = ("completed", "failed", "missing", "interrupted", "diverged")


def _statuses(g: pd.DataFrame) -> str:
    """'2 failed, 1 missing': what became of a group's runs when none completed."""
    counts = g["status"].value_counts()
    order = [s for s in STATUS_ORDER if s in counts] + sorted(set(counts.index) - set(STATUS_ORDER))
    return ", ".join(f"{counts[s]} {s}" for s in order) or "not run"


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per rule (and setting): n completed, diverged, failed (failed or interrupted), missing
    (a column only when some run is: no summary.json), and each whole-network final metric's mean and
    sd over the completed runs. A row with no completed run reads its runs' statuses ('2 failed') in
    the mean cells and — in the sd cells."""
    runs = runs.copy()
    runs["rule"] = runs["rule"].fillna("unknown").astype(str) if "rule" in runs else "unknown"
    runs["setting"] = runs["setting"].fillna("").astype(str) if "setting" in runs else ""
    done = runs[runs["status"] == "completed"]
    metrics = [c for c in runs.columns
               if c.startswith(("final_test/", "final_train/")) and c.count("/") == 1]  # whole-network only
    keys = ["rule"] + (["setting"] if runs["setting"].str.len().any() else [])
    any_missing = bool((runs["status"] == "missing").any())
    rows = []
    for key, g in runs.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = done.loc[g.index.intersection(done.index)]
        row = dict(zip(keys, key))
        row.update(n=len(ok), diverged=int((g["status"] == "diverged").sum()),
                   failed=int(g["status"].isin(["failed", "interrupted"]).sum()))
        if any_missing:
            row["missing"] = int((g["status"] == "missing").sum())
        for m in metrics:
            vals = pd.to_numeric(ok[m], errors="coerce").dropna()
            if ok.empty:
                row[m[len("final_"):] + " mean"], row[m[len("final_"):] + " sd"] = _statuses(g), NO_VALUE
                continue
            row[m[len("final_"):] + " mean"] = vals.mean() if len(vals) else float("nan")
            row[m[len("final_"):] + " sd"] = vals.std(ddof=1) if len(vals) > 1 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def write_summary_table(folder: Path | str) -> Path:
    folder = Path(folder)
    runs = read_table(folder / "runs.csv")
    table = summary_table(runs)
    meta = json.loads((folder / "meta.json").read_text())
    header = (f"# {meta['experiment']}: final metrics (mean, sd over completed seeds)\n\n"
              f"Written by `make figures` from runs.csv. Budget: {budget_text(meta)}.\n\n")
    if not (runs["status"] == "completed").all():
        header += (f"Runs: {_statuses(runs)}. A rule without a completed run shows its runs' statuses; "
                   f"each failed run's error is in runs.csv (`error`) and its run folder's summary.json.\n\n")
    return atomic.write_text(folder / "summary.md", header + to_markdown(table) + "\n")


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
