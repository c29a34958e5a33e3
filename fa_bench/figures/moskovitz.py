"""Moskovitz, Litwin-Kumar & Abbott 2018: Table 1 (one experiment per column), Fig. 1 and Fig. 4 (ImageNet
top-1 solid, top-5 dotted), Fig. 2 (the BP/FA error-signal norm ratio against depth), Fig. 3 (angles to
backprop over training) and Fig. 5 (sign freezing; the fraction of weights that changed sign).

Figs. 3 and 5's bottom panel come from the MNIST column's runs (moskovitz_table1_mnist): their probes log
the angles and sign changes of every row. Paper values come from fa_bench/papers/moskovitz2018.py only.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from fa_bench import atomic
from fa_bench.collect import read_table, select
from fa_bench.figures.common import cell_of, mean_band, provenance, save_figure
from fa_bench.figures.registry import figure
from fa_bench.papers.moskovitz2018 import FIG4, TABLE1

FIG1_CELLS = ("moskovitz_bp", "moskovitz_fa", "moskovitz_usf_init", "moskovitz_usf_sn")
COLOURS = {"moskovitz_bp": "black", "moskovitz_bp_noise": "0.45", "moskovitz_bp_align": "0.7",
           "moskovitz_fa": "tab:green", "moskovitz_usf_init_ei": "tab:purple", "moskovitz_usf_init": "tab:blue",
           "moskovitz_usf_sn": "tab:orange", "moskovitz_dfa": "tab:cyan", "moskovitz_dense_fa": "tab:red",
           "moskovitz_bp_const": "black", "moskovitz_usf_const": "tab:blue", "moskovitz_usf_const_ei": "tab:purple"}


def _completed(folder: Path, name: str) -> pd.DataFrame:
    table = read_table(Path(folder) / name)
    return table[table["status"] == "completed"] if "status" in table else table


def _fmt(values: pd.Series, decimals: int) -> str:
    # a failed run's row leaves its final values empty, which can make pandas read the column as text
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "not run"
    if len(values) == 1:
        return f"{values.iloc[0]:.{decimals}f} (n=1)"
    return f"{values.mean():.{decimals}f} ± {values.std(ddof=1):.{decimals}f} (n={len(values)})"


def table1_markdown(folder: Path, experiment: str) -> str:
    """Table 1's column for one experiment: ours (final top-1 and top-5 test error) beside the paper's."""
    spec = TABLE1[experiment]
    runs_path = Path(folder) / "runs.csv"
    runs = read_table(runs_path) if runs_path.is_file() else pd.DataFrame()
    if not runs.empty:
        runs = runs.assign(cell=runs["setting"].map(cell_of))
    lines = [f"# Moskovitz et al. 2018, Table 1: {spec['dataset']}, top-1 test error (%)", "",
             "| method | ours: top-1 | ours: top-5 | paper: top-1 | status |", "| --- | --- | --- | --- | --- |"]
    for cell, (label, paper) in spec["cells"].items():
        rows = runs[runs["cell"] == cell] if not runs.empty else runs
        done = rows[rows["status"] == "completed"] if not rows.empty else rows
        top1 = _fmt(done["final_test/error"], 2) if not done.empty else "not run"
        top5 = (_fmt(done["final_test/top5_error"], 2)
                if not done.empty and "final_test/top5_error" in done else "not run")
        status = ", ".join(sorted(set(rows["status"]))) if not rows.empty else "not run"
        lines.append(f"| {label} | {top1} | {top5} | {paper:g} | {status} |")
    if (Path(folder) / "meta.json").is_file():
        lines += ["", f"Budget: {provenance(folder)}."]
    lines += ["", "Paper: Table 1 of Moskovitz, Litwin-Kumar & Abbott 2018 (no spreads or run counts given). "
              "Ours: the final network's error on the whole test set."]
    return "\n".join(lines) + "\n"


def _write_table(folder: Path, experiment: str) -> list[Path]:
    path = Path(folder) / "table1.md"
    atomic.write_text(path, table1_markdown(folder, experiment))
    return [path]


def _layers(curves: pd.DataFrame, name: str) -> list[str]:
    layers = {str(v) for v in curves.loc[(curves["split"] == "train") & (curves["name"] == name), "layer"]}
    layers = {v for v in layers if v and ":" not in v}  # whole layers, not sampled neurons
    return sorted(layers, key=lambda v: (int(v) if v.isdigit() else 10**9, v))


def _by_epoch(curves: pd.DataFrame) -> pd.DataFrame:
    per_epoch = curves["examples"].max() / (curves["epoch"].max() + 1)
    return curves.assign(epochs=curves["examples"] / per_epoch)


def _error_curves(ax, curves, cells, title):
    for cell in cells:
        rows = curves[curves["cell"] == cell]
        label = TABLE1_LABELS.get(cell, cell)
        for metric, ls in (("test/error", "-"), ("test/top5_error", ":")):
            series = select(rows, metric)
            if not series.empty:
                mean_band(ax, series, x="epochs", color=COLOURS.get(cell), ls=ls,
                          label=label if ls == "-" else None)
    ax.set(xlabel="epochs", ylabel="test error (%): top-1 solid, top-5 dotted", title=title, ylim=(0, 100))
    ax.legend(frameon=False, fontsize=7)


TABLE1_LABELS = {cell: label for spec in TABLE1.values() for cell, (label, _) in spec["cells"].items()}


def _imagenet(folder: Path, experiment: str) -> list[Path]:
    written = _write_table(folder, experiment)
    if not (Path(folder) / "curves.csv").is_file():
        return written
    curves = _by_epoch(_completed(folder, "curves.csv"))
    curves = curves.assign(cell=curves["setting"].map(cell_of))
    fig, ax = plt.subplots(figsize=(5.5, 4))
    _error_curves(ax, curves, FIG1_CELLS, f"Fig. 1: {TABLE1[experiment]['dataset']}")
    written += save_figure(fig, folder, "fig1.png", "; bands: ±1 sd over seeds")
    if any(cell in set(curves["cell"]) for cell in FIG4):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        _error_curves(ax, curves, tuple(FIG4), "Fig. 4: W norms fixed at initialisation")
        text = "paper (top-1/top-5): " + "; ".join(f"{TABLE1_LABELS[c]} {a:g}/{b:g}" for c, (a, b) in FIG4.items())
        ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=6, color="0.4")
        written += save_figure(fig, folder, "fig4.png", "; bands: ±1 sd over seeds")
    return written


# the CIFAR columns have a table only; the ImageNet ones Figs. 1 and 4 besides
for _experiment, _draw in (("moskovitz_table1_cifar1", _write_table), ("moskovitz_table1_cifar2", _write_table),
                           ("moskovitz_table1_imagenet1", _imagenet), ("moskovitz_table1_imagenet2", _imagenet)):
    figure(_experiment)(partial(_draw, experiment=_experiment))


@figure("moskovitz_table1_mnist")
def table1_mnist(folder: Path) -> list[Path]:
    """The MNIST column, Fig. 3 (angle of each layer's signal to backprop's over training: FA and FA-uSF by
    their δ, BP + Alignment by its weight update, whose δ is backprop's own) and Fig. 5's bottom panel."""
    written = _write_table(folder, "moskovitz_table1_mnist")
    if not (Path(folder) / "curves.csv").is_file():
        return written
    curves = _by_epoch(_completed(folder, "curves.csv"))
    curves = curves.assign(cell=curves["setting"].map(cell_of))
    panels = (("moskovitz_fa", "delta_angle", "(a) FA"), ("moskovitz_usf_init", "delta_angle", "(b) FA-uSF Init."),
              ("moskovitz_bp_align", "update_angle", "(c) BP + Alignment (update angle)"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=True)
    for ax, (cell, name, title) in zip(axes, panels):
        rows = curves[curves["cell"] == cell]
        layers = _layers(rows, name)
        for k, layer in enumerate(layers):
            series = select(rows, f"train/{name}/{layer}")
            if not series.empty:
                mean_band(ax, series, x="epochs", color=plt.cm.viridis(k / max(len(layers) - 1, 1)),
                          label=f"layer {layer}")
        ax.axhline(90, color="0.7", lw=0.8)
        ax.set(xlabel="epochs", title=title, ylim=(0, 100))
        ax.legend(frameon=False, fontsize=7)
    axes[0].set_ylabel("angle to backprop (°)")
    written += save_figure(fig, folder, "fig3.png", "; MNIST net as in Table 1")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for cell in TABLE1["moskovitz_table1_mnist"]["cells"]:
        rows = curves[curves["cell"] == cell]
        layers = _layers(rows, "sign_flips")
        if not layers:
            continue
        # the whole net's fraction: layers weighted alike (a layer's weight count is not logged)
        flips = pd.concat([select(rows, f"train/sign_flips/{layer}") for layer in layers])
        flips = flips.groupby(["seed", "epochs"], as_index=False)["value"].mean()
        mean_band(ax, flips, x="epochs", color=COLOURS.get(cell), label=TABLE1_LABELS[cell])
    ax.set(xlabel="epochs", ylabel="fraction of weights whose sign changed", title="Fig. 5 (bottom), MNIST net")
    ax.legend(frameon=False, fontsize=6)
    written += save_figure(fig, folder, "fig5_sign_changes.png", "; mean over the converted layers")
    return written


def depth_profile(curves: pd.DataFrame, metric: str = "norm_ratio", at: str = "end") -> pd.DataFrame:
    """Per seed and converted layer, a metric's value at the first or last probe: (seed, depth, layer, value)
    with depth 1 the converted layer nearest the input."""
    rows = curves[(curves["split"] == "train") & (curves["name"] == metric)]
    layers = _layers(rows, metric)
    out = []
    for depth, layer in enumerate(layers, start=1):
        series = rows[rows["layer"] == layer].sort_values("step").groupby("seed")["value"]
        picked = series.first() if at == "start" else series.last()
        out += [{"seed": seed, "depth": depth, "layer": layer, "value": float(v)} for seed, v in picked.items()]
    return pd.DataFrame(out, columns=["seed", "depth", "layer", "value"])


@figure("moskovitz_fig2")
def fig2(folder: Path) -> list[Path]:
    curves = _completed(folder, "curves.csv")
    curves = curves.assign(cell=curves["setting"].map(cell_of))
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, (cell, title) in zip(axes, (("moskovitz_fig2_naive", "(a) naïve initialisation"),
                                        ("moskovitz_fig2_vp", "(b) variance-preserving"))):
        for at, ls in (("start", ":"), ("end", "-")):
            profile = depth_profile(curves[curves["cell"] == cell], at=at)
            if profile.empty:
                continue
            mean_band(ax, profile, x="depth", color="tab:green" if at == "end" else "0.5", ls=ls,
                      label="end of training" if at == "end" else "initialisation")
        ax.set(xlabel="converted layer (1: nearest the input)", yscale="log", title=title)
        ax.legend(frameon=False, fontsize=7)
    axes[0].set_ylabel("‖δ_BP‖ / ‖δ_FA‖")
    return save_figure(fig, folder, "fig2.png", "; bands: ±1 sd over seeds")


@figure("moskovitz_fig5")
def fig5(folder: Path) -> list[Path]:
    curves = _by_epoch(_completed(folder, "curves.csv"))
    fig, (ax, ax_flips) = plt.subplots(1, 2, figsize=(9, 3.6))
    settings = sorted(set(curves["setting"]), key=lambda s: (s.endswith("null"), s))
    for k, setting in enumerate(settings):
        rows = curves[curves["setting"] == setting]
        point = setting.partition("=")[2] or "null"
        label = "never frozen" if point in ("null", "None") else f"signs frozen after {float(point):.0%}"
        colour = plt.cm.plasma(k / max(len(settings) - 1, 1))
        test = select(rows, "test/error")
        if not test.empty:
            mean_band(ax, test, x="epochs", color=colour, label=label)
        layers = _layers(rows, "sign_flips")
        if layers:
            flips = pd.concat([select(rows, f"train/sign_flips/{layer}") for layer in layers])
            mean_band(ax_flips, flips.groupby(["seed", "epochs"], as_index=False)["value"].mean(), x="epochs",
                      color=colour, label=label)
    ax.set(xlabel="epochs", ylabel="test error (%)", yscale="log", title="Fig. 5 (top), MNIST stand-in")
    ax_flips.set(xlabel="epochs", ylabel="fraction of weights whose sign changed", title="Fig. 5 (bottom)")
    ax.legend(frameon=False, fontsize=7)
    return save_figure(fig, folder, "fig5.png", "; FA-uSF Const. on the MNIST net")

