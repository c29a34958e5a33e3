"""The blog post's example (experiment blog_three_layer): test error of the three-layer sigmoid net by
random feedback and by backprop over the 10 epochs, with the blog's 89.5 % accuracy as a line."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from fa_bench.collect import read_table, select
from fa_bench.figures.common import mean_band, save_figure
from fa_bench.figures.registry import figure
from fa_bench.papers.blog2016 import VALUES

STYLE = {"fa": dict(color="tab:red", label="random feedback (FA)"), "bp": dict(color="k", label="backprop")}


@figure("blog_three_layer")
def three_layer(folder: Path) -> list[Path]:
    curves = read_table(Path(folder) / "curves.csv")
    curves = curves[curves["status"] == "completed"]
    # the last evaluation closes the last epoch, whose 0-based number it carries
    per_epoch = curves["examples"].max() / (curves["epoch"].max() + 1)
    fig, (ax, ax_angle) = plt.subplots(1, 2, figsize=(9, 3.6))
    for rule, style in STYLE.items():
        test = select(curves, "test/error", rule=rule)
        if not test.empty:
            mean_band(ax, test.assign(epochs=test["examples"] / per_epoch), x="epochs", **style)
    limit = VALUES["three_layer_fa_test_error"]
    ax.axhline(limit, color="0.5", ls=":", lw=1, label=f"blog: {100 - limit:g} % accuracy after 10 iterations")
    ax.set(xlabel="epochs", ylabel="test error (%)", yscale="log", title="784-100-10 sigmoid net, MNIST")
    ax.legend(frameon=False, fontsize=7)
    angle = select(curves, "train/delta_angle/1", rule="fa")
    if not angle.empty:
        mean_band(ax_angle, angle.assign(epochs=angle["examples"] / per_epoch), x="epochs", color="tab:red")
    ax_angle.axhline(90, color="0.7", lw=0.8)
    ax_angle.set(xlabel="epochs", ylabel="δ_FA vs δ_BP angle, hidden layer (°)", ylim=(0, 100),
                 title="random feedback aligns")
    return save_figure(fig, folder, "three_layer.png", "; bands: ±1 sd over seeds", dpi=150)
