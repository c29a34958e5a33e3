"""Lansdell, Prakash & Kording 2020: Fig. 2 (experiment lansdell_fig2). Per learned layer, the
relative error ‖W − B‖/‖W‖, the angle between what B and W send down (feedback_angle) and the sign
agreement of W and B, for node perturbation at each noise level (ridge solver solid, SGD dashed) and
for FA; then the test error of all of them and BP. Mean ± s.e. over seeds, as the paper's caption."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt

from fa_bench.collect import read_table, select
from fa_bench.figures.common import mean_band, save_figure
from fa_bench.figures.registry import figure

NOISE = re.compile(r"cell=lansdell_fig2_np_(?P<solver>ridge|sgd)_c(?P<c>[0-9e.-]+)")
LAYERS = ("3", "5")  # the layers whose B is learned (the first layer's B is never used)


def _style(setting: str) -> dict:
    m = NOISE.fullmatch(setting)
    if m is None:
        return {"cell=lansdell_fig2_fa": dict(color="tab:orange", label="FA"),
                "cell=lansdell_fig2_bp": dict(color="k", label="BP")}.get(setting, dict(color="0.5", label=setting))
    shade = {"1e-4": "#08306b", "1e-3": "#2171b5", "1e-2": "#6baed6", "1e-1": "#c6dbef"}.get(m["c"], "tab:blue")
    return dict(color=shade, ls="-" if m["solver"] == "ridge" else "--", label=f"NP c={m['c']} ({m['solver']})")


@figure("lansdell_fig2")
def fig2(folder: Path) -> list[Path]:
    curves = read_table(Path(folder) / "curves.csv")
    curves = curves[curves["status"] == "completed"].assign(iterations=lambda d: d["step"])
    settings = sorted(curves["setting"].unique(), key=lambda s: (NOISE.fullmatch(s) is None, s))
    panels = [("rel_error", "‖W−B‖/‖W‖", "log"), ("feedback_angle", "angle ẽB vs ẽW (°)", "linear"),
              ("sign_congruence", "sign agreement", "linear")]
    fig, axes = plt.subplots(len(LAYERS), len(panels) + 1, figsize=(14, 6))
    for row, layer in enumerate(LAYERS):
        for col, (name, label, scale) in enumerate(panels):
            ax = axes[row][col]
            for setting in settings:
                if setting == "cell=lansdell_fig2_bp":
                    continue
                rows = select(curves, f"train/{name}/{layer}", setting=setting)
                if not rows.empty:
                    mean_band(ax, rows, x="iterations", band="se", **_style(setting))
            ax.set(xlabel="iterations", ylabel=label, yscale=scale, title=f"layer {layer}")
    ax = axes[0][-1]
    for setting in settings:
        rows = select(curves, "test/error", setting=setting)
        if not rows.empty:
            mean_band(ax, rows, x="iterations", band="se", **_style(setting))
    ax.set(xlabel="iterations", ylabel="test error (%)", yscale="log", title="test error")
    axes[1][-1].axis("off")
    handles, labels = ax.get_legend_handles_labels()
    axes[1][-1].legend(handles, labels, frameon=False, fontsize=7, loc="center")
    return save_figure(fig, folder, "fig2.png", "; bands: ±1 s.e. over seeds", dpi=130)
