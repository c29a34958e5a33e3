"""Lillicrap, Cownden, Tweed & Akerman 2016 (Nat. Commun. 7:13276)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from fa_bench.collect import read_table, select
from fa_bench.figures import figure
from fa_bench.figures.common import RULE_STYLE, mean_band, provenance


@figure("lillicrap_fig2")
def fig2(folder: Path) -> list[Path]:
    """(a) test NSE vs examples for shallow / node perturbation / BP / FA; (b) angle δ_FA vs δ_BP."""
    curves = read_table(folder / "curves.csv")
    curves = curves[curves["status"] == "completed"]
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for rule in ["shallow", "node_perturbation", "bp", "fa"]:
        df = select(curves, "test/nse", rule=rule)
        if not df.empty:
            mean_band(ax_a, df, **RULE_STYLE[rule])
    ax_a.set(xlabel="examples", ylabel="NSE (test)", title="a  linear 30-20-10 network", ylim=(0, 1.1))
    ax_a.legend(frameon=False, fontsize=8)
    fa = curves[curves["rule"] == "fa"]
    hidden = sorted(fa.loc[fa["name"] == "delta_angle", "layer"].unique())
    if hidden:  # the first converted layer is the hidden one: its δ is where FA and BP differ
        mean_band(ax_b, select(fa, f"train/delta_angle/{hidden[0]}"), **RULE_STYLE["fa"])
    ax_b.axhline(90, color="0.6", ls=":", lw=1)
    ax_b.set(xlabel="examples", ylabel="∠(δ_FA, δ_BP) (deg)", title="b  hidden-layer modulator angle",
             ylim=(0, 100))
    fig.text(0.01, 0.005, provenance(folder) + "; bands: ±1 sd over seeds", fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = folder / "fig2.png"
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return [out]
