"""Per-experiment summary table from runs.csv: final metrics by rule (and setting), mean ± sd over seeds."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fa_bench.collect import budget_text, read_table


def summary_table(runs: pd.DataFrame) -> pd.DataFrame:
    done = runs[runs["status"] == "completed"]
    metrics = [c for c in runs.columns
               if c.startswith(("final_test/", "final_train/")) and c.count("/") == 1]  # whole-network only
    keys = ["rule"] + (["setting"] if runs["setting"].fillna("").astype(str).str.len().any() else [])
    rows = []
    for key, g in runs.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        ok = done.loc[g.index.intersection(done.index)]
        row = dict(zip(keys, key))
        row.update(n=len(ok), diverged=int((g["status"] == "diverged").sum()),
                   failed=int(g["status"].isin(["failed", "interrupted"]).sum()))
        for m in metrics:
            vals = pd.to_numeric(ok[m], errors="coerce").dropna()
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
    out = folder / "summary.md"
    out.write_text(header + to_markdown(table) + "\n")
    return out


def to_markdown(df: pd.DataFrame) -> str:
    def cell(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)
