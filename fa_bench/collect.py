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
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from fa_bench import atomic
from fa_bench.config import NOT_IN_RUN_KEY, load_yaml

# identify each curve row's run; the rest of the run's record (budget, device, ...) is in runs.csv
CURVE_RUN_COLUMNS = ["rule", "seed", "setting", "status", "commit"]
# further per-run tables some runs write (the spiking network's raster and PSP traces): concatenated
# over runs into results/<experiment>/<name>, each row tagged with its run's rule and seed
EXTRA_TABLES = ("traces.csv",)
CHOICE_PREFIX = "choice_"  # runs.csv column of each Hydra config-group choice: choice_<group>
METRICS_COLUMNS = ["step", "epoch", "examples", "split", "name", "layer", "value"]  # metrics.csv's (§3)

log = logging.getLogger(__name__)


def read_table(path: Path | str) -> pd.DataFrame:
    """Read a metrics/curves/runs CSV: layer names stay strings ('1' is not 1.0), '' stays ''."""
    table = pd.read_csv(path, dtype={"layer": str, "setting": str}, keep_default_na=False,
                        na_values={"value": ["nan", "NaN", ""]})
    if "value" in table:  # a column that held only text would otherwise stay text
        table["value"] = pd.to_numeric(table["value"], errors="coerce")
    for column in [c for c in table.columns if c.startswith("budget_")] + ["examples"]:
        if column in table:  # keep_default_na leaves a gap written as 'nan' as text, and the column with it
            gaps = table[column].replace({"nan": np.nan, "": np.nan})
            numbers = pd.to_numeric(gaps, errors="coerce")
            if numbers.notna().sum() == gaps.notna().sum():  # a column of real text (none today) stays text
                table[column] = numbers
    for column in table.columns:  # option names, even one that looks like a number
        if column.startswith(CHOICE_PREFIX):
            table[column] = table[column].astype(str)
    return table


def matches(column: pd.Series, value) -> pd.Series:
    """Which entries of ``column`` a selection's ``value`` picks, compared as text; a list picks any of
    its values (one field's runs under two settings that trained the same thing: claims.yaml's
    ``settings``)."""
    if isinstance(value, (list, tuple)):
        return column.astype(str).isin([str(v) for v in value])
    return column.astype(str) == str(value)


def select(curves: pd.DataFrame, metric: str, **match) -> pd.DataFrame:
    """Rows of one logged series, ``metric`` = 'split/name[/layer]', further filtered by column=value
    (``matches``)."""
    split, name, *layer = metric.split("/")
    rows = curves[(curves["split"] == split) & (curves["name"] == name)
                  & (curves["layer"] == (layer[0] if layer else ""))]
    for column, value in match.items():
        rows = rows[matches(rows[column], value)]
    return rows


def _listed(values: list) -> str:
    """'64' or '3/300'; more than three values (runs stopped early, each at its own epoch) as their range,
    so a caption says how far the runs went rather than listing every one."""
    if len(values) > 3:
        return f"{values[0]}-{values[-1]} ({len(values)} values)"
    return "/".join(map(str, values))


def budget_text(meta: dict) -> str:
    """One line for figures and tables: '10 seeds x 8000 examples/run (batch 1, 1 epoch), cpu, commit abc'."""
    b = meta["budget"]
    epochs = f"{_listed(b.get('epochs', []))} epoch(s)"
    if b.get("epochs_run") and b["epochs_run"] != b.get("epochs"):  # stopped early (Table 1's stopping rule)
        epochs = f"{_listed(b['epochs_run'])} epoch(s) run of at most {_listed(b.get('epochs', []))}"
    parts = [f"batch {_listed(b.get('batch_size', []))}", epochs]
    if b.get("max_steps"):
        parts.append(f"max_steps {_listed(b['max_steps'])}")
    examples = _listed(b.get("examples_per_run", [])) or "?"
    commits = ",".join(c[:8] for c in meta["git_commits"]) + (" (dirty)" if meta.get("any_dirty") else "")
    seeds = len(meta["seeds"])
    return (f"{seeds} seed{'s' if seeds != 1 else ''} x {examples} examples/run ({', '.join(parts)}), "
            f"{'/'.join(meta['devices'])}, commit {commits}")


MISSING = "missing"  # status of a run folder Hydra started but that wrote no summary.json (killed hard)
NOT_COMPLETED = ("failed", MISSING, "interrupted")  # what makes an experiment sweep exit non-zero
NO_SUMMARY_ERROR = "no summary.json: the job was killed, or stopped before it could write one"


def find_runs(root: Path | str) -> list[Path]:
    """Every run folder under ``root`` that wrote its summary.json."""
    return sorted(p.parent for p in Path(root).rglob("summary.json") if not _hidden(p, root))


def _hidden(path: Path, root) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _started(folder: Path) -> bool:
    """A folder Hydra (or fa_bench.run) set up for a job or run: it holds .hydra/ or config.yaml."""
    return (folder / ".hydra").is_dir() or (folder / "config.yaml").is_file()


def _yaml(path: Path):
    try:
        return load_yaml(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        return None


def _seed_list(value: str) -> list[int]:
    try:
        seeds = yaml.safe_load(value)
        return [int(s) for s in seeds] if isinstance(seeds, list) else []
    except (yaml.YAMLError, TypeError, ValueError):
        return []


def find_missing(root: Path | str) -> list[tuple[Path, dict, dict]]:
    """Runs Hydra started under ``root`` that wrote no summary.json: a job folder (a subfolder of the
    sweep dir, holding .hydra/ or config.yaml) with no summary.json in it or below it, or a seed-batched
    job's ``seed<s>/`` folder without one. Returns (folder, overrides, stub summary) per missing run;
    a seed-batched job with no seed folders yet gives one per seed of its ``seeds=[...]`` override."""
    root = Path(root)
    found = []
    with_summary = set(find_runs(root))
    started = sorted(d for d in root.rglob("*") if d.is_dir() and not _hidden(d, root) and _started(d))
    for folder in started:
        if folder in with_summary or any(p in with_summary for p in folder.parents):
            continue  # recorded (a job that wrote its summary above its seed folders counts as recorded)
        if any(p == folder or folder in p.parents for p in with_summary):
            continue  # a job folder whose runs (seed<s>/) recorded themselves
        if any(folder in d.parents for d in started):
            continue  # a job folder whose seed folders are listed on their own
        overrides = _overrides(folder)
        job = folder if (folder / ".hydra" / "hydra.yaml").is_file() or folder.parent == root else folder.parent
        seeds = _seed_list(overrides.pop("seeds")) if "seeds" in overrides else []
        for seed in seeds or [None]:
            ov = dict(overrides, **({"seed": str(seed)} if seed is not None else {}))
            found.append((folder, ov, _missing_summary(folder, job, ov)))
    return found


def _missing_summary(folder: Path, job: Path, overrides: dict) -> dict:
    """What a missing run's folder still says about it: its config (resolved config.yaml, else Hydra's
    .hydra/config.yaml) and Hydra's config-group choices."""
    cfg = _yaml(folder / "config.yaml") or _yaml(job / "config.yaml") or _yaml(job / ".hydra" / "config.yaml") or {}
    cfg = cfg if isinstance(cfg, dict) else {}

    def name(group):
        value = cfg.get(group)
        return value.get("name") if isinstance(value, dict) else None

    seed = overrides.get("seed", cfg.get("seed"))
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        seed = None
    hydra_cfg = (_yaml(job / ".hydra" / "hydra.yaml") or {}).get("hydra") or {}
    choices = ((hydra_cfg.get("runtime") or {}).get("choices") or {}) if isinstance(hydra_cfg, dict) else {}
    rule = name("rule") or overrides.get("rule") or "unknown"
    summary = {"status": MISSING, "error": NO_SUMMARY_ERROR, "experiment": cfg.get("experiment_name"),
               "rule": str(rule) if "${" not in str(rule) else overrides.get("rule", "unknown"),
               "model": name("model"), "dataset": name("dataset"), "seed": seed,
               "choices": {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}}
    return {k: v for k, v in summary.items() if v is not None}


def _overrides(run_dir: Path) -> dict[str, str]:
    overrides = _yaml(run_dir / ".hydra" / "overrides.yaml") or []
    return dict(o.lstrip("+~").split("=", 1) for o in overrides if isinstance(o, str) and "=" in o)


def _alters_the_run(key: str) -> bool:
    """Whether an override changes what trains (the run key's view, fa_bench.config.run_key): where the
    results go or whether a progress bar shows does not, so runs of two sweeps that differ only there
    still share a cell. Nor does how often a run checkpoints, since a resumed run writes the records of
    one never stopped (tests/test_reliability.py); the run key still holds it, so that no earlier run's
    folder, and so its checkpoint, moves."""
    return key.split(".")[0] not in NOT_IN_RUN_KEY and key not in ("trainer.progress", "trainer.checkpoint_every")


_UNSET = object()


def _run_config(run_dir: Path) -> dict | None:
    """A run's resolved config.yaml (a seed-batched run's own, else its job's), or None."""
    for path in (run_dir / "config.yaml", run_dir.parent / "config.yaml"):
        cfg = _yaml(path)
        if isinstance(cfg, dict):
            return cfg
    return None


def _config_value(cfg: dict, key: str):
    for part in key.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return _UNSET
        cfg = cfg[part]
    return cfg


def _settings(overrides: list[dict], swept=(), configs=None) -> list[str]:
    """Each run's cell: the overrides (other than rule and seed, and those that do not alter the run)
    whose values differ across the runs, and those the experiment file sweeps (``swept``) whatever
    the runs at hand hold: one cell of a table, or the only one finished so far, is still named.
    Where every run's resolved config (``configs``) holds the key, its values there decide: a key one
    run was given on the command line and another took from the config, at the same value, trained
    the same thing and does not split them (Table 1's runs with optimizer.lr=1e-4 typed, and later
    ones at the config's 1e-4)."""
    keys = {k for o in overrides for k in o if _alters_the_run(k)} - {"rule", "seed", "seeds"}

    def values(key):
        if configs is not None and all(c is not None for c in configs):
            resolved = [_config_value(c, key) for c in configs]
            if all(v is not _UNSET for v in resolved):
                return {yaml.safe_dump(v) for v in resolved}
        return {o.get(key) for o in overrides}

    varying = sorted(k for k in keys if k in swept or len(values(k)) > 1)
    return [",".join(f"{k}={o[k]}" for k in varying if k in o) for o in overrides]


def _read_summary(run_dir: Path) -> dict:
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as err:  # a truncated file from before writes were atomic
        return {"status": "failed", "error": f"unreadable summary.json: {type(err).__name__}: {err}"}
    return summary if isinstance(summary, dict) else {"status": "failed", "error": "summary.json is not a record"}


def swept_by(experiment: str | None) -> set[str]:
    """The keys an experiment file sweeps (its hydra.sweeper.params), read from the file itself: collect
    also runs inside a Hydra app (the sweep's callback), where composing a config is not possible."""
    from fa_bench.config import conf_dir

    path = Path(conf_dir()) / "experiment" / f"{experiment}.yaml"
    if experiment is None or not path.is_file():
        return set()
    params = (((yaml.safe_load(path.read_text()) or {}).get("hydra") or {}).get("sweeper") or {}).get("params")
    return set(params or {})


def load_runs(run_dirs, missing=(), swept=()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs.csv's rows and the curves of every run with metrics. ``missing``: find_missing's records,
    kept as rows with status 'missing'. ``swept``: keys that always name a run's cell (_settings)."""
    runs, curves = [], []
    records = [(d, _overrides(d), _read_summary(d)) for d in run_dirs] + list(missing)
    configs = [_run_config(Path(d)) for d, _, _ in records]
    for (run_dir, _, summary), setting in zip(records, _settings([o for _, o, _ in records], swept, configs)):
        row = {k: v for k, v in summary.items() if not isinstance(v, dict)}
        row.setdefault("status", "failed")
        row.update({f"budget_{k}": v for k, v in (summary.get("budget") or {}).items()})
        row.update({f"final_{k}": v for k, v in (summary.get("final") or {}).items()})
        row["setting"] = setting
        row.update({f"{CHOICE_PREFIX}{k}": str(v) for k, v in (summary.get("choices") or {}).items()})
        row["run_dir"] = str(run_dir)
        runs.append(row)
        metrics_path = run_dir / "metrics.csv"
        if metrics_path.is_file() and metrics_path.stat().st_size:  # a killed job may have logged some
            try:
                m = read_table(metrics_path)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
                # a metrics file cut off mid-row by a killed job: its run keeps its runs.csv row, marked
                log.warning("%s cannot be read (%s): the run has no curves in curves.csv", metrics_path, err)
                row["curves"] = "unreadable"
                continue
            row["commit"] = str(row.get("git_commit", ""))[:10]
            for k in CURVE_RUN_COLUMNS:
                m[k] = row.get(k)
            curves.append(m)
    runs_df = pd.DataFrame(runs)
    choices = [c for c in runs_df.columns if c.startswith(CHOICE_PREFIX)]
    runs_df[choices] = runs_df[choices].fillna("")  # a run that recorded no choice for that group
    curves_df = (pd.concat(curves, ignore_index=True) if curves
                 else pd.DataFrame(columns=[*METRICS_COLUMNS, *CURVE_RUN_COLUMNS]))
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


def _column(runs: pd.DataFrame, name: str) -> pd.Series:
    """A runs.csv column without its gaps (a failed or missing run may not have recorded it)."""
    return runs[name].dropna() if name in runs else pd.Series([], dtype=object)


def _plain(values: list) -> list:
    """Whole numbers as ints (a column with gaps, from a failed run, reads 64 as 64.0)."""
    return [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]


def run_meta(runs: pd.DataFrame, experiment: str | None = None) -> dict:
    """meta.json's record of the runs: commits, seeds, budget, devices, status counts."""
    return {
        "experiment": experiment or (_column(runs, "experiment").unique().tolist() or [None])[0],
        "git_commits": sorted(_column(runs, "git_commit").astype(str).unique().tolist()),
        "any_dirty": bool(_column(runs, "git_dirty").astype(bool).any()),
        "n_runs": len(runs),
        "status_counts": runs["status"].value_counts().to_dict(),
        "seeds": sorted({int(s) for s in _column(runs, "seed")}),
        "rules": sorted(_column(runs, "rule").astype(str).unique().tolist()),
        "budget": {**{c[len("budget_"):]: sorted(_plain(runs[c].dropna().unique().tolist()))
                      for c in runs.columns if c.startswith("budget_")},
                   "examples_per_run": sorted(int(e) for e in _column(runs, "examples").unique()),
                   # how far each run went, where the budget above is only its cap (a stopping rule)
                   "epochs_run": sorted(int(e) for e in pd.to_numeric(_column(runs, "epochs_run"),
                                                                      errors="coerce").dropna().unique())},
        "devices": sorted(_column(runs, "device").astype(str).unique().tolist()),
        "torch_versions": sorted(_column(runs, "torch_version").astype(str).unique().tolist()),
        "total_wall_time_s": float(pd.to_numeric(_column(runs, "wall_time"), errors="coerce").sum()),
    }


def sweep_jobs(sweep_dir: Path | str) -> list[Path] | None:
    """The job folders of the newest sweep into ``sweep_dir`` (its ``sweep.json``, written by the
    seed_batching sweeper), or None when there is no such list (collect then takes every run there).
    Run folders are keyed by config and the sweep dir is the experiment's, so it can also hold the runs
    of earlier, different sweeps: the list keeps those out."""
    path = Path(sweep_dir) / "sweep.json"
    if not path.is_file():
        return None
    return [Path(j) for j in json.loads(path.read_text())["jobs"] if j]


def _within(folder: Path, jobs: list[Path]) -> bool:
    return any(folder == j or j in folder.parents for j in jobs)


def collect(source: Path | str, dest: Path | str, experiment: str | None = None, max_points: int = 400,
            metrics: list[str] | None = None, jobs: list[Path] | None = None) -> dict:
    """Aggregate every run under ``source`` (or, with ``jobs``, only those job folders') into ``dest``;
    returns the meta record it wrote.

    Every run has its runs.csv row, whatever its status (completed, diverged, failed, interrupted, and
    ``missing``: a job folder Hydra started that holds no summary.json, see find_missing), with its
    ``error``; curves.csv holds the curves of the runs that logged metrics, each row tagged with its
    run's status. ``metrics`` keeps only those metric names in curves.csv (the figure's needs);
    runs.csv keeps every final value regardless. Every file is written atomically (fa_bench.atomic).
    """
    source, dest = Path(source), Path(dest)
    run_dirs = find_runs(source)
    missing = find_missing(source)
    if jobs is not None:  # only this sweep's jobs (sweep_jobs)
        jobs = [Path(j).resolve() for j in jobs]
        run_dirs = [d for d in run_dirs if _within(d.resolve(), jobs)]
        missing = [m for m in missing if _within(m[0].resolve(), jobs)]
    if not run_dirs and not missing:
        raise FileNotFoundError(f"no run folders (summary.json, or a job's .hydra/) under {source}")
    runs, curves = load_runs(run_dirs, missing, swept_by(experiment))
    all_dirs = run_dirs + [d for d, _, _ in missing]
    dest.mkdir(parents=True, exist_ok=True)
    atomic.to_csv(runs.drop(columns=["run_dir", "commit"], errors="ignore"), dest / "runs.csv", index=False,
                  na_rep="nan")
    if metrics and not curves.empty:
        curves = curves[curves["name"].isin(list(metrics))]
    atomic.to_csv(thin(curves, max_points), dest / "curves.csv", index=False, float_format="%.7g", na_rep="nan")
    for run_dir, (_, row) in zip(all_dirs, runs.iterrows()):  # saved activations (Nøkland Fig. 3's t-SNE)
        if row["status"] != MISSING and (run_dir / "activations.npz").is_file():
            tag = re.sub(r"[^A-Za-z0-9_.=-]+", "_", str(row.get("setting") or ""))
            name = f"{row['rule']}_seed{row['seed']}" + (f"_{tag}" if tag else "") + ".npz"
            (dest / "activations").mkdir(exist_ok=True)
            atomic.copyfile(run_dir / "activations.npz", dest / "activations" / name)
    for name in EXTRA_TABLES:
        parts = []
        for run_dir, (_, row) in zip(all_dirs, runs.iterrows()):
            if row["status"] != MISSING and (run_dir / name).is_file():
                try:
                    part = pd.read_csv(run_dir / name)
                except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
                    log.warning("%s cannot be read (%s): left out of %s", run_dir / name, err, name)
                    continue
                part["rule"], part["seed"] = row["rule"], row["seed"]
                parts.append(part)
        if parts:
            atomic.to_csv(pd.concat(parts, ignore_index=True), dest / name, index=False, float_format="%.7g")
    meta = run_meta(runs, experiment)
    atomic.write_json(dest / "meta.json", meta, indent=2, default=str)
    return meta


def merge_collected(base: Path | str, newer: Path | str, experiment: str | None = None) -> dict:
    """Fold a newer collection of some of an experiment's cells into its committed results, in place:
    every run and curve row of a setting (cell) that ``newer`` holds replaces ``base``'s rows of that
    setting; the other cells keep theirs. For cells rerun at a larger budget when the run folders of
    the rest are gone (the committed results keep records, not run folders). meta.json is recomputed
    from the merged rows, so its commits and budget list both collections'; returns it."""
    base, newer = Path(base), Path(newer)
    runs = {p: read_table(p / "runs.csv") for p in (base, newer)}
    curves = {p: read_table(p / "curves.csv") for p in (base, newer)}
    replaced = set(runs[newer]["setting"].fillna("").astype(str))
    if replaced == {""}:
        raise ValueError(f"{newer}/runs.csv names no setting: it would replace every run of {base}")

    def kept(table):
        return table[~table["setting"].fillna("").astype(str).isin(replaced)]

    merged_runs = pd.concat([kept(runs[base]), runs[newer]], ignore_index=True)
    atomic.to_csv(merged_runs, base / "runs.csv", index=False, na_rep="nan")
    atomic.to_csv(pd.concat([kept(curves[base]), curves[newer]], ignore_index=True), base / "curves.csv",
                  index=False, float_format="%.7g", na_rep="nan")
    # meta from the file as written, read with pandas' own NA handling (read_table keeps "nan" as text,
    # which the budget lists would then carry): what collect's meta reads from the same runs
    meta = run_meta(pd.read_csv(base / "runs.csv"), experiment)
    atomic.write_json(base / "meta.json", meta, indent=2, default=str)
    return meta
