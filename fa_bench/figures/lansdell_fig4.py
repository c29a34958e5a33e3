"""Lansdell, Prakash & Kording 2020, Fig. 4 (experiment lansdell_fig4): with W fixed at its random draw,
the ridge-fitted B against W. Rows: the two learned layers (module names 3 and 5: 784-50-20-10's
50→20 and 20→10, the paper's W¹ and W² in its code's numbering). Columns A-C over iterations for the
noise sweep (784-50-20-10, c ∈ {1e-3, 1e-2, 1e-1}): relative error ‖W − B‖/‖W‖, the angle between ẽ·B and
ẽ·W (feedback_angle, the paper's angle), and the sign agreement of W and B; D and E, the width sweep
(784-N-50-10, c = 1e-2): the final relative error and angle against N, both layers. Mean ± s.e. over
seeds. Also writes fig4.md, the final values per condition."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fa_bench.collect import read_table, select
from fa_bench.figures.common import mean_band, save_figure
from fa_bench.figures.registry import figure

NOISE = re.compile(r"cell=lansdell_fig4_c(?P<c>[0-9e.-]+)")
WIDTH = re.compile(r"cell=lansdell_fig4_n(?P<n>\d+)")
LAYERS = ("3", "5")
SHADES = {"1e-3": "#08306b", "1e-2": "#2171b5", "1e-1": "#6baed6"}
LAYER_COLOURS = {"3": "tab:red", "5": "tab:purple"}
METRICS = (("rel_error", "‖W−B‖/‖W‖"), ("feedback_angle", "angle ẽB vs ẽW (°)"),
           ("sign_congruence", "sign agreement"))


def _final(runs, setting, metric, layer):
    col = f"final_train/{metric}/{layer}"
    vals = runs.loc[runs["setting"] == setting, col].astype(float).dropna()
    if vals.empty:
        return np.nan, np.nan
    se = vals.std(ddof=1) / np.sqrt(len(vals)) if len(vals) > 1 else 0.0
    return vals.mean(), se


def _table(folder: Path, runs, settings) -> Path:
    lines = ["# Lansdell 2020, Fig. 4: final values, mean ± s.e. over seeds (written by make figures)", "",
             "| condition | seeds | " + " | ".join(f"{m} {layer}" for m, _ in METRICS for layer in LAYERS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in METRICS for _ in LAYERS) + " |"]
    for setting in settings:
        n = int((runs["setting"] == setting).sum())
        cells = []
        for metric, _ in METRICS:
            for layer in LAYERS:
                m, se = _final(runs, setting, metric, layer)
                cells.append(f"{m:.4g} ± {se:.2g}")
        lines.append(f"| {setting.removeprefix('cell=lansdell_fig4_')} | {n} | " + " | ".join(cells) + " |")
    out = Path(folder) / "fig4.md"
    out.write_text("\n".join(lines) + "\n")
    return out


@figure("lansdell_fig4")
def fig4(folder: Path) -> list[Path]:
    folder = Path(folder)
    curves = read_table(folder / "curves.csv")
    curves = curves[curves["status"] == "completed"].assign(iterations=lambda d: d["step"])
    runs = read_table(folder / "runs.csv")
    runs = runs[runs["status"] == "completed"]
    noise = sorted((s for s in curves["setting"].unique() if NOISE.fullmatch(s)),
                   key=lambda s: float(NOISE.fullmatch(s)["c"]))
    widths = sorted((s for s in runs["setting"].unique() if WIDTH.fullmatch(s)),
                    key=lambda s: int(WIDTH.fullmatch(s)["n"]))
    fig, axes = plt.subplots(len(LAYERS), len(METRICS) + 1, figsize=(15, 6.5))
    for row, layer in enumerate(LAYERS):
        for col, (name, label) in enumerate(METRICS):
            ax = axes[row][col]
            for setting in noise:
                rows = select(curves, f"train/{name}/{layer}", setting=setting)
                c = NOISE.fullmatch(setting)["c"]
                if not rows.empty:
                    mean_band(ax, rows, x="iterations", band="se", color=SHADES.get(c, "tab:blue"), label=f"c={c}")
            scale = "log" if name in ("rel_error", "feedback_angle") else "linear"
            ax.set(xlabel="iterations", ylabel=label, yscale=scale, title=f"{'ABC'[col]}: layer {layer}")
        axes[row][0].legend(frameon=False, fontsize=7)
    ns = [int(WIDTH.fullmatch(s)["n"]) for s in widths]
    for row, (name, label) in enumerate(METRICS[:2]):
        ax = axes[row][-1]
        for layer in LAYERS:
            stats = np.array([_final(runs, s, name, layer) for s in widths]).reshape(-1, 2)
            if len(stats):
                ax.errorbar(ns, stats[:, 0], yerr=stats[:, 1], marker="o", capsize=3,
                            color=LAYER_COLOURS[layer], label=f"layer {layer}")
        ax.set(xscale="log", yscale="log", xlabel="N (784-N-50-10, c = 1e-2)", ylabel=f"final {label}",
               title=f"{'DE'[row]}: {name} vs N")
        ax.legend(frameon=False, fontsize=7)
    written = save_figure(fig, folder, "fig4.png", "; bands and bars: ±1 s.e. over seeds", dpi=130)
    return written + [_table(folder, runs, noise + widths)]
