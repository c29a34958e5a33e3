"""Run folders -> tidy, committed results (docs/contracts.md §3): runs.csv, curves.csv and meta.json per experiment.

runs.csv has one row per run: summary.json's plain fields (rule, seed, status, ..., `model` being the
registry name, e.g. `mlp`), `budget_<key>`, `final_<metric>`, `setting` (the overrides other than rule
and seed that differ across the runs, comma-joined) and, for runs that recorded them,
`choice_<group>`: the config-group option Hydra composed the run from (summary.json "choices"), e.g.
`choice_model=nokland_2x800_tanh`, `choice_cell`, `choice_dataset`, `choice_rule`, `choice_trainer`,
`choice_optimizer`, `choice_metrics`, `choice_experiment`. Runs without choices (the Python API, older
run folders) leave those columns empty; results collected before choices existed lack them.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import yaml

# identify each curve row's run; the rest of the run's record (budget, device, ...) is in runs.csv
CURVE_RUN_COLUMNS = ["rule", "seed", "setting", "status", "commit"]
# further per-run tables some runs write (the spiking network's raster and PSP traces): concatenated
# over runs into results/<experiment>/<name>, each row tagged with its run's rule and seed
EXTRA_TABLES = ("traces.csv",)
CHOICE_PREFIX = "choice_"  # runs.csv column of each Hydra config-group choice: choice_<group>


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a metrics/curves/runs CSV: layer names stay strings ('1' is not 1.0), '' stays ''."""
    table = pd.read_csv(path, dtype={"layer": str, "setting": str}, keep_default_na=False,
                        na_values={"value": ["nan", "NaN", ""]})
    if "value" in table:  # a column that held only text would otherwise stay text
        table["value"] = pd.to_numeric(table["value"], errors="coerce")
    for column in table.columns:  # option names, even one that looks like a number
        if column.startswith(CHOICE_PREFIX):
            table[column] = table[column].astype(str)
    return table


def select(curves: pd.DataFrame, metric: str, **match) -> pd.DataFrame:
    """Rows of one logged series, ``metric`` = 'split/name[/layer]', further filtered by column=value."""
    split, name, *layer = metric.split("/")
    rows = curves[(curves["split"] == split) & (curves["name"] == name)
                  & (curves["layer"] == (layer[0] if layer else ""))]
    for column, value in match.items():
        rows = rows[rows[column].astype(str) == str(value)]
    return rows


def budget_text(meta: dict) -> str:
    """One line for figures and tables: '10 seeds x 8000 examples/run (batch 1, 1 epoch), cpu, commit abc'."""
    b = meta["budget"]
    parts = [f"batch {'/'.join(map(str, b.get('batch_size', [])))}",
             f"{'/'.join(map(str, b.get('epochs', [])))} epoch(s)"]
    if b.get("max_steps"):
        parts.append(f"max_steps {'/'.join(map(str, b['max_steps']))}")
    examples = "/".join(map(str, b.get("examples_per_run", []))) or "?"
    commits = ",".join(c[:8] for c in meta["git_commits"]) + (" (dirty)" if meta.get("any_dirty") else "")
    return (f"{len(meta['seeds'])} seeds x {examples} examples/run ({', '.join(parts)}), "
            f"{'/'.join(meta['devices'])}, commit {commits}")


def find_runs(root: Path | str) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("summary.json"))


def _overrides(run_dir: Path) -> dict[str, str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    overrides = (yaml.safe_load(path.read_text()) if path.is_file() else None) or []
    return dict(o.lstrip("+~").split("=", 1) for o in overrides if "=" in o)


def _settings(run_dirs) -> list[str]:
    """Each run's cell: the overrides (other than rule and seed) whose values differ across the runs."""
    overrides = [_overrides(d) for d in run_dirs]
    keys = {k for o in overrides for k in o} - {"rule", "seed"}
    varying = sorted(k for k in keys if len({o.get(k) for o in overrides}) > 1)
    return [",".join(f"{k}={o[k]}" for k in varying if k in o) for o in overrides]


def load_runs(run_dirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    runs, curves = [], []
    run_dirs = list(run_dirs)
    for run_dir, setting in zip(run_dirs, _settings(run_dirs)):
        summary = json.loads((run_dir / "summary.json").read_text())
        row = {k: v for k, v in summary.items() if not isinstance(v, dict)}
        row.update({f"budget_{k}": v for k, v in (summary.get("budget") or {}).items()})
        row.update({f"final_{k}": v for k, v in (summary.get("final") or {}).items()})
        row["setting"] = setting
        row.update({f"{CHOICE_PREFIX}{k}": str(v) for k, v in (summary.get("choices") or {}).items()})
        row["run_dir"] = str(run_dir)
        runs.append(row)
        metrics_path = run_dir / "metrics.csv"
        if metrics_path.is_file() and metrics_path.stat().st_size:
            m = read_table(metrics_path)
            row["commit"] = str(row.get("git_commit", ""))[:10]
            for k in CURVE_RUN_COLUMNS:
                m[k] = row.get(k)
            curves.append(m)
    runs_df = pd.DataFrame(runs)
    choices = [c for c in runs_df.columns if c.startswith(CHOICE_PREFIX)]
    runs_df[choices] = runs_df[choices].fillna("")  # a run that recorded no choice for that group
    curves_df = pd.concat(curves, ignore_index=True) if curves else pd.DataFrame()
    return runs_df, curves_df


def thin(curves: pd.DataFrame, max_points: int = 400) -> pd.DataFrame:
    """Keep at most ``max_points`` logged steps per series (evenly spaced, always the last one)."""
    if curves.empty:
        return curves
    steps = sorted(curves["step"].unique())
    if len(steps) <= max_points:
        return curves
    stride = len(steps) / max_points
    keep = {steps[int(i * stride)] for i in range(max_points)} | {steps[-1]}
    return curves[curves["step"].isin(keep)].reset_index(drop=True)


def collect(source: Path | str, dest: Path | str, experiment: str | None = None, max_points: int = 400,
            metrics: list[str] | None = None) -> dict:
    """Aggregate every run under ``source`` into ``dest``; returns the meta record it wrote.

    ``metrics`` keeps only those metric names in curves.csv (the figure's needs); runs.csv keeps
    every final value regardless.
    """
    run_dirs = find_runs(source)
    if not run_dirs:
        raise FileNotFoundError(f"no run folders (summary.json) under {source}")
    runs, curves = load_runs(run_dirs)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    runs.drop(columns=["run_dir", "commit"], errors="ignore").to_csv(dest / "runs.csv", index=False, na_rep="nan")
    if metrics and not curves.empty:
        curves = curves[curves["name"].isin(list(metrics))]
    thin(curves, max_points).to_csv(dest / "curves.csv", index=False, float_format="%.7g", na_rep="nan")
    for run_dir, (_, row) in zip(run_dirs, runs.iterrows()):  # saved activations (Nøkland Fig. 3's t-SNE)
        if (run_dir / "activations.npz").is_file():
            tag = re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(row.get("setting") or ""))
            name = f"{row['rule']}_seed{row['seed']}" + (f"_{tag}" if tag else "") + ".npz"
            (dest / "activations").mkdir(exist_ok=True)
            shutil.copyfile(run_dir / "activations.npz", dest / "activations" / name)
    for name in EXTRA_TABLES:
        parts = []
        for run_dir, (_, row) in zip(run_dirs, runs.iterrows()):
            if (run_dir / name).is_file():
                part = pd.read_csv(run_dir / name)
                part["rule"], part["seed"] = row["rule"], row["seed"]
                parts.append(part)
        if parts:
            pd.concat(parts, ignore_index=True).to_csv(dest / name, index=False, float_format="%.7g")
    meta = {
        "experiment": experiment or (runs["experiment"].dropna().unique().tolist() or [None])[0],
        "git_commits": sorted(runs["git_commit"].astype(str).unique().tolist()),
        "any_dirty": bool(runs["git_dirty"].fillna(False).astype(bool).any()),
        "n_runs": len(runs),
        "status_counts": runs["status"].value_counts().to_dict(),
        "seeds": sorted(int(s) for s in runs["seed"].unique()),
        "rules": sorted(runs["rule"].unique().tolist()),
        "budget": {**{c[len("budget_"):]: sorted(runs[c].dropna().unique().tolist())
                      for c in runs.columns if c.startswith("budget_")},
                   "examples_per_run": sorted(int(e) for e in runs["examples"].dropna().unique())
                   if "examples" in runs else []},
        "devices": sorted(runs["device"].astype(str).unique().tolist()),
        "torch_versions": sorted(runs["torch_version"].astype(str).unique().tolist()),
        "total_wall_time_s": float(runs["wall_time"].sum()),
    }
    (dest / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return meta
