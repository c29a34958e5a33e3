"""Nøkland 2016, "Direct feedback alignment provides learning in deep neural networks" (NIPS):
Tables 1-3 beside the paper's values, Fig. 2 (error curves), Fig. 3 (t-SNE of hidden features) and the
IFA run of Sec. 5."""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fa_bench import atomic
from fa_bench.collect import read_table, select
from fa_bench.figures.common import RULE_STYLE, cell_of, mean_band, provenance, save_figure
from fa_bench.figures.registry import figure
from fa_bench.papers.nokland2016 import TABLES, VALUES

log = logging.getLogger(__name__)

RULES = ("bp", "fa", "dfa")

# the paper's tables (fa_bench/papers/nokland2016.py), drawn here beside ours; the scorecard's table
# claims are generated from the same dict
PAPER = TABLES
IFA_TEST_ERROR = VALUES["ifa_test_error"]


def _with_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Each row's cell: Hydra's recorded choice (runs.csv's choice_cell, collected since run folders
    record it), else the cell=<name> override in `setting` (older results, curves.csv)."""
    df = df.copy()
    from_setting = df["setting"].map(cell_of) if "setting" in df else pd.Series("", index=df.index)
    if "choice_cell" in df:
        chosen = df["choice_cell"].fillna("").astype(str)
        df["cell"] = chosen.where(chosen != "", from_setting)
    else:
        df["cell"] = from_setting
    return df


# ------------------------------------------------------------------------------------------------
# Tables 1-3
# ------------------------------------------------------------------------------------------------
def _pct(mean, sd, train, decimals, train_shown_above) -> str:
    text = f"{mean:.{decimals}f} %" if sd is None else f"{mean:.{decimals}f} ± {sd:.{decimals}f} %"
    if train is not None and train > train_shown_above:
        text += f" ({train:.{decimals}f} %)"
    return text


def paper_cell(entry, decimals, train_shown_above) -> str:
    return "—" if entry is None else _pct(*entry, decimals, train_shown_above)


def our_cell(runs: pd.DataFrame, decimals: int, train_shown_above: float, not_converged: float) -> str:
    """mean ± sd of the completed runs' final test error, their final training error in brackets when
    above the paper's threshold; '—' (with the training error) where training stayed near chance."""
    if runs.empty:
        return "not run"
    done = runs[runs["status"] == "completed"]
    if done.empty:
        return "— (" + ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items()) + ")"
    test = pd.to_numeric(done.get("final_test/error", pd.Series(dtype=float)), errors="coerce").dropna()
    train = pd.to_numeric(done.get("final_train/error", pd.Series(dtype=float)), errors="coerce").dropna()
    if test.empty:
        return "— (no final test error)"
    train_mean = train.mean() if len(train) else None
    if train_mean is not None and train_mean >= not_converged:
        return f"— ({train_mean:.{decimals}f} %)"
    sd = test.std(ddof=1) if len(test) > 1 else None  # one seed: no spread to show
    return _pct(test.mean(), sd, train_mean, decimals, train_shown_above)


def paper_table(runs: pd.DataFrame, spec: dict) -> pd.DataFrame:
    """One row per cell (the paper's order, then any cell it lacks), ours beside the paper's per rule."""
    runs = _with_cells(runs)
    cells = list(spec["cells"]) + sorted(set(runs["cell"]) - set(spec["cells"]))
    rows = []
    for cell in cells:
        label, paper = spec["cells"].get(cell, (cell or "(cell not recorded: the sweep ran one cell)", {}))
        mine = runs[runs["cell"] == cell]
        row = {"network": label}
        counts = []
        for rule in RULES:
            r = mine[mine["rule"] == rule]
            row[f"{rule.upper()} ours"] = our_cell(r, spec["decimals"], spec["train_shown_above"],
                                                   spec["not_converged"])
            row[f"{rule.upper()} paper"] = (paper_cell(paper[rule], spec["decimals"], spec["train_shown_above"])
                                            if rule in paper else "not in the paper")
            counts.append(str(int((r["status"] == "completed").sum())))
        row["seeds (BP/FA/DFA)"] = "/".join(counts)
        rows.append(row)
    return pd.DataFrame(rows)


def write_paper_table(folder: Path, experiment: str) -> list[Path]:
    spec = PAPER[experiment]
    runs = read_table(Path(folder) / "runs.csv")
    table = paper_table(runs, spec)
    header = "| " + " | ".join(table.columns) + " |"
    lines = [header, "|" + " --- |" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    text = "\n".join([
        f"# Nøkland 2016, {spec['title']}: ours beside the paper's",
        "",
        f"Written by `make figures` from runs.csv. Budget: {provenance(folder)}.",
        "",
        "Ours: test error at the end of training, mean ± sd over the completed seeds; in brackets the "
        "training error of the last epoch (measured while training, dropout on) when above "
        f"{spec['train_shown_above']} % (the paper's threshold). — : did not converge (training error still "
        f"≥ {spec['not_converged']:g} %, shown in brackets; chance is {spec['chance']:g} %), or no completed run. "
        "Paper: mean ± sd over an unstated number of runs; its empty fields (no convergence) are —.",
        "",
        *lines,
        "",
    ])
    return [atomic.write_text(Path(folder) / spec["file"], text)]


@figure("nokland_table1")
def table1(folder: Path) -> list[Path]:
    return write_paper_table(folder, "nokland_table1")


@figure("nokland_table2")
def table2(folder: Path) -> list[Path]:
    return write_paper_table(folder, "nokland_table2")


@figure("nokland_table3")
def table3(folder: Path) -> list[Path]:
    return write_paper_table(folder, "nokland_table3")


# ------------------------------------------------------------------------------------------------
# curves
# ------------------------------------------------------------------------------------------------
ERROR_FLOOR = 0.01  # % : zero errors are drawn here on the log axes (one error in 10000 test images)


def _curves(folder: Path) -> pd.DataFrame:
    curves = read_table(Path(folder) / "curves.csv")
    curves = _with_cells(curves[curves["status"] == "completed"])
    # epochs from each run's own count: examples at its last point / epochs it ran (the logged epoch is
    # 0-based and the last evaluation closes the last epoch)
    per_epoch = curves.groupby(["rule", "seed", "setting"])[["examples", "epoch"]].transform("max")
    curves["epochs"] = curves["examples"] / (per_epoch["examples"] / (per_epoch["epoch"] + 1))
    return curves


def _error_band(ax, df, **style):
    df = df.assign(value=df["value"].clip(lower=ERROR_FLOOR))
    if not df.empty:
        mean_band(ax, df, x="epochs", **style)


_save = save_figure


def _phase_end(curves: pd.DataFrame) -> float | None:
    """Epoch at which the first training phase ended (the last evaluation still inside it)."""
    phase = select(curves, "train/phase").sort_values("examples")
    inside = phase[phase["value"] == 0]
    if inside.empty or len(inside) == len(phase):
        return None
    return float(inside["epochs"].max())


@figure("nokland_fig2")
def fig2(folder: Path) -> list[Path]:
    """Left: training error of a 3x50 tanh net whose first layer was frozen during BP pre-training, then
    trained by BP or DFA. Right: training (dashed) and test (solid) error of 2x800 tanh, BP / FA / DFA."""
    curves = _curves(folder)
    fig, (ax_l, ax_r) = plt.subplots(1, 2, figsize=(10, 3.9))
    left = {"nokland_fig2_left_bp": dict(color="black", label="first layer unfrozen, trained by BP"),
            "nokland_fig2_left_dfa": dict(color=RULE_STYLE["dfa"]["color"],
                                          label="first layer unfrozen, trained by DFA")}
    note = ""
    for cell, style in left.items():
        df = select(curves, "train/error", cell=cell)
        if df.empty:
            continue
        if cell.endswith("_dfa") and (df["rule"] == "dfa").all():
            # results from before a phase could switch the rule (trainer.phases[].rule): those runs were
            # DFA throughout, and are labelled as the approximation they were
            style = dict(style, label="DFA throughout (approximation: upper layers\npre-trained by DFA, not BP)")
            note = "; left DFA curve: approximation (results from before phases switched the rule)"
        _error_band(ax_l, df, **style)
    end = _phase_end(curves[curves["cell"] == "nokland_fig2_left_bp"])
    if end is not None:
        ax_l.axvline(end, color="0.5", ls="--", lw=1)
        ax_l.text(end, 0.98, " first layer\n unfrozen", transform=ax_l.get_xaxis_transform(), va="top", fontsize=7)
    ax_l.set(xlabel="epochs", ylabel="training error (%)", yscale="log",
             title="3x50 tanh, first layer frozen during BP pre-training")
    ax_l.legend(frameon=False, fontsize=7, loc="lower left")
    for rule in RULES:
        cell = f"nokland_fig2_right_{rule}"
        style = RULE_STYLE[rule]
        _error_band(ax_r, select(curves, "test/error", cell=cell), color=style["color"], label=f"{style['label']} test")
        _error_band(ax_r, select(curves, "train/error", cell=cell), color=style["color"], ls="--",
                    label=f"{style['label']} train")
    ax_r.set(xlabel="epochs", ylabel="error (%)", yscale="log", title="2x800 tanh, MNIST")
    ax_r.legend(frameon=False, fontsize=7, ncol=2)
    return _save(fig, folder, "fig2.png", f"; bands: ±1 sd over seeds; errors of 0 drawn at {ERROR_FLOOR} %" + note)


@figure("nokland_ifa")
def ifa(folder: Path) -> list[Path]:
    """Training and test error of the 4x100 tanh net trained by IFA, with the paper's 3.9 % test error."""
    curves = _curves(folder)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    _error_band(ax, select(curves, "test/error", rule="ifa"), color="tab:purple", label="IFA test")
    _error_band(ax, select(curves, "train/error", rule="ifa"), color="tab:purple", ls="--", label="IFA train")
    ax.axhline(IFA_TEST_ERROR, color="0.5", ls=":", lw=1, label=f"paper: {IFA_TEST_ERROR:g} % test error")
    ax.set(xlabel="epochs", ylabel="error (%)", yscale="log", title="indirect feedback alignment, 4x100 tanh")
    ax.legend(frameon=False, fontsize=7)
    return _save(fig, folder, "ifa.png", f"; bands: ±1 sd over seeds; errors of 0 drawn at {ERROR_FLOOR} %")


# ------------------------------------------------------------------------------------------------
# Fig. 3: t-SNE of the hidden features
# ------------------------------------------------------------------------------------------------
TSNE = dict(perplexity=30.0, n_iter=1000, seed=0)  # one embedding per panel, the same settings for all
ACTIVATIONS = re.compile(r"^(?P<rule>.+)_seed(?P<seed>\d+)")


def _activation_files(folder: Path) -> dict[str, Path]:
    """The first seed's activations.npz per rule, from results/<experiment>/activations/<rule>_seed<k>*.npz."""
    found: dict[str, tuple[int, Path]] = {}
    for path in sorted((Path(folder) / "activations").glob("*.npz")):
        m = ACTIVATIONS.match(path.stem)
        if m is None:
            log.warning("ignoring %s: not named <rule>_seed<k>.npz", path)
            continue
        seed = int(m["seed"])
        if m["rule"] not in found or seed < found[m["rule"]][0]:
            found[m["rule"]] = (seed, path)
    return {rule: path for rule, (_, path) in found.items()}


def _source_key(path: Path) -> str:
    """What an embedding depends on: the activations' bytes and the t-SNE settings."""
    return hashlib.sha1(path.read_bytes() + repr(sorted(TSNE.items())).encode()).hexdigest()[:16]


def embeddings(folder: Path) -> pd.DataFrame:
    """t-SNE of every feature of every rule's activations, cached in tsne.csv beside them: an
    embedding is recomputed only when its activations or the settings changed (each takes ~30 s for
    2000 points on one CPU thread)."""
    from fa_bench.tsne import tsne

    folder = Path(folder)
    cache_path = folder / "tsne.csv"
    cache = (pd.read_csv(cache_path, dtype={"rule": str, "source": str}) if cache_path.is_file()
             else pd.DataFrame(columns=["rule", "source"]))
    parts = []
    for rule, path in _activation_files(folder).items():
        key = _source_key(path)
        cached = cache[(cache["rule"] == rule) & (cache["source"] == key)]
        if not cached.empty:
            parts.append(cached)
            continue
        with np.load(path) as data:
            labels = data["labels"]
            n_features = sum(k.startswith("feature_") for k in data.files)
            for i in range(n_features):
                y = tsne(data[f"feature_{i}"], **TSNE)
                parts.append(pd.DataFrame({"rule": rule, "source": key, "feature": i, "point": np.arange(len(y)),
                                           "x": y[:, 0], "y": y[:, 1], "label": labels}))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if not table.empty:
        atomic.to_csv(table, cache_path, index=False, float_format="%.5g")
    return table


def separation(folder: Path, table: pd.DataFrame) -> Path:
    """measures.csv: each embedded panel's leave-one-out 5-NN digit accuracy (%), as curve rows (split
    test, name tsne_knn_accuracy, layer = the feature: 0 the input, k hidden layer k) for the
    scorecard's Fig. 3 claims: the number each panel's title shows."""
    from fa_bench.tsne import knn_accuracy

    seeds = {rule: int(ACTIVATIONS.match(path.stem)["seed"]) for rule, path in _activation_files(folder).items()}
    rows = []
    for (rule, feature), df in table.groupby(["rule", "feature"]):
        df = df.sort_values("point")
        rows.append({"step": 0, "epoch": 0, "examples": 0, "split": "test", "name": "tsne_knn_accuracy",
                     "layer": str(int(feature)), "value": round(knn_accuracy(df[["x", "y"]].to_numpy(),
                                                                             df["label"].to_numpy()), 4),
                     "rule": rule, "seed": seeds.get(rule, 0), "setting": "", "status": "completed", "commit": ""})
    path = Path(folder) / "measures.csv"
    atomic.to_csv(pd.DataFrame(rows), path, index=False)
    return path


@figure("nokland_fig3")
def fig3(folder: Path) -> list[Path]:
    """Rows: BP, DFA (and any other rule found); columns: test images, hidden layers 1..3; colour: class.
    Each panel's title gives the leave-one-out 5-nearest-neighbour accuracy in the embedding (also
    written to measures.csv for the scorecard)."""
    table = embeddings(folder)
    if table.empty:
        log.warning("%s: no activations/<rule>_seed<k>.npz (runs with save_activations, collected): "
                    "Fig. 3 not drawn", folder)
        return []
    measures = separation(folder, table)
    accuracy = read_table(measures).set_index(["rule", "layer"])["value"]
    rules = [r for r in ("bp", "dfa") if r in set(table["rule"])] + sorted(set(table["rule"]) - {"bp", "dfa"})
    n_cols = int(table["feature"].max()) + 1
    fig, axes = plt.subplots(len(rules), n_cols, figsize=(3 * n_cols, 3 * len(rules) + 0.3), squeeze=False)
    for r, rule in enumerate(rules):
        for c in range(n_cols):
            ax = axes[r, c]
            df = table[(table["rule"] == rule) & (table["feature"] == c)].sort_values("point")
            ax.set(xticks=[], yticks=[])
            if df.empty:
                continue
            ax.scatter(df["x"], df["y"], c=df["label"], cmap="tab10", vmin=-0.5, vmax=9.5, s=2, lw=0)
            where = "input images" if c == 0 else f"hidden layer {c}"
            acc = accuracy[(rule, str(c))]
            ax.set_title(f"{RULE_STYLE.get(rule, {}).get('label', rule)}: {where}\n5-NN accuracy {acc:.1f} %",
                         fontsize=8)
    n_points = int(table.groupby(["rule", "feature"]).size().max())
    return [measures] + _save(fig, folder, "fig3.png",
                 f"; one seed per rule; t-SNE of the first {n_points} test images (perplexity {TSNE['perplexity']:g}, "
                 f"{TSNE['n_iter']} iterations, PCA to 50 dims first), colour: digit class")
