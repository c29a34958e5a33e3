"""Learning curves for every classification experiment: test error against epochs, one line per rule
(and per cell or setting), mean ± sd over the seeds that completed, from the committed curves alone.

A reader can then see whether a number taken at a reduced budget was still falling when it was taken.
Drawn by ``make_all`` for every results folder whose curves hold a test error, whatever its own figure.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from fa_bench.collect import read_table, select
from fa_bench.figures.common import mean_band, save_figure

FILE = "learning_curves.png"


def draw(folder: Path) -> list[Path]:
    """``learning_curves.png`` in ``folder`` when its curves have test/error; [] otherwise."""
    path = Path(folder) / "curves.csv"
    if not path.is_file():
        return []
    curves = read_table(path)
    if "status" in curves:
        curves = curves[curves["status"] == "completed"]
    test = select(curves, "test/error")
    if test.empty:
        return []
    # per run: examples per epoch from its last point (the last evaluation closes its last epoch)
    last = test.groupby(["rule", "seed", "setting"], dropna=False)[["examples", "epoch"]].transform("max")
    per_epoch = (last["examples"] / (last["epoch"] + 1)).where(last["examples"] > 0, 1)
    test = test.assign(setting=test["setting"].fillna("").astype(str), epochs=test["examples"] / per_epoch)
    groups = sorted(test.groupby(["rule", "setting"], dropna=False).groups)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (rule, setting) in enumerate(groups):
        rows = test[(test["rule"] == rule) & (test["setting"] == setting)]
        label = f"{rule} {setting}" if setting else rule
        mean_band(ax, rows, x="epochs", color=colors[i % len(colors)], label=label)
    ax.set(xlabel="epochs", ylabel="test error (%)", yscale="log", title=f"{Path(folder).name}: test error")
    ax.legend(frameon=False, fontsize=6, ncol=2 if len(groups) > 8 else 1)
    return save_figure(fig, folder, FILE, "; bands: ±1 sd over seeds", dpi=120)
