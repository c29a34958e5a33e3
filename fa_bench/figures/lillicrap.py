"""Lillicrap, Cownden, Tweed & Akerman 2016 (Nat. Commun. 7:13276)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from fa_bench.collect import read_table, select
from fa_bench.figures.common import RULE_STYLE, mean_band, save_figure
from fa_bench.figures.registry import figure


def _completed(folder: Path):
    curves = read_table(folder / "curves.csv")
    return curves[curves["status"] == "completed"]


def _save(fig, folder: Path, name: str) -> list[Path]:
    return save_figure(fig, folder, name, "; bands: ±1 sd over seeds")


def _first_layer(curves, name):
    layers = sorted(curves.loc[curves["name"] == name, "layer"].unique(), key=lambda s: (len(s), s))
    return layers[0] if layers else None


def _curves_and_angle(folder: Path, rules, metric: str, name: str, **panel_a) -> list[Path]:
    """(a) ``metric`` vs examples per rule; (b) the angle δ_FA vs δ_BP at the first converted layer
    (the hidden one: its δ is where FA and BP differ). Figs. 2 and 3a share this layout."""
    curves = _completed(folder)
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(10, 3.8))
    for rule in rules:
        df = select(curves, metric, rule=rule)
        if not df.empty:
            mean_band(ax_a, df, **RULE_STYLE[rule])
    ax_a.set(xlabel="examples", **panel_a)
    ax_a.legend(frameon=False, fontsize=8)
    fa = curves[curves["rule"] == "fa"]
    hidden = _first_layer(fa, "delta_angle")
    if hidden is not None:
        mean_band(ax_b, select(fa, f"train/delta_angle/{hidden}"), **RULE_STYLE["fa"])
    ax_b.axhline(90, color="0.6", ls=":", lw=1)
    ax_b.set(xlabel="examples", ylabel="∠(δ_FA, δ_BP) (deg)", title="b  hidden-layer modulator angle",
             ylim=(0, 100))
    return _save(fig, folder, name)


@figure("lillicrap_fig2")
def fig2(folder: Path) -> list[Path]:
    """(a) test NSE vs examples for shallow / node perturbation / BP / FA; (b) angle δ_FA vs δ_BP."""
    return _curves_and_angle(folder, ["shallow", "node_perturbation", "bp", "fa"], "test/nse", "fig2.png",
                             ylabel="NSE (test)", title="a  linear 30-20-10 network", ylim=(0, 1.1))


@figure("lillicrap_fig3a")
def fig3a(folder: Path) -> list[Path]:
    """(a) MNIST test error vs examples for BP, FA, shallow; (b) angle δ_FA vs δ_BP at the hidden layer."""
    return _curves_and_angle(folder, ["shallow", "bp", "fa"], "test/error", "fig3a.png", ylabel="test error (%)",
                             yscale="log", title="a  784-1000-10 logistic network, MNIST")


@figure("lillicrap_sparse")
def sparse(folder: Path) -> list[Path]:
    """Test error of FA with 50 % of W and B removed, beside the dense Fig. 3a curves when present."""
    curves = _completed(folder)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    dense = folder.parent / "lillicrap_fig3a" / "curves.csv"
    if dense.is_file():
        d = read_table(dense)
        d = d[d["status"] == "completed"]
        for rule in ["bp", "fa"]:
            df = select(d, "test/error", rule=rule)
            if not df.empty:
                style = dict(RULE_STYLE[rule], label=RULE_STYLE[rule]["label"] + " (dense)")
                mean_band(ax, df, **style)
    df = select(curves, "test/error", rule="fa")
    if not df.empty:
        mean_band(ax, df, color="tab:olive", label="feedback alignment, 50 % of W and B removed")
    ax.set(xlabel="examples", ylabel="test error (%)", yscale="log", title="sparse W and B, MNIST")
    ax.legend(frameon=False, fontsize=7)
    return _save(fig, folder, "sparse.png")


FIG3D_STYLE = {  # Lillicrap Fig. 3d: 3-layer shallow grey, BP black, FA green; 4-layer BP magenta, FA blue
    ("tanh_30_20_10", "shallow"): dict(color="0.7", label="30-20-10 shallow"),
    ("tanh_30_20_10", "bp"): dict(color="black", label="30-20-10 backprop"),
    ("tanh_30_20_10", "fa"): dict(color="tab:green", label="30-20-10 feedback alignment"),
    ("tanh_30_20_10_10", "bp"): dict(color="magenta", label="30-20-10-10 backprop"),
    ("tanh_30_20_10_10", "fa"): dict(color="tab:blue", label="30-20-10-10 feedback alignment"),
}


@figure("lillicrap_fig3d")
def fig3d(folder: Path) -> list[Path]:
    """Test NSE vs examples for 3- and 4-layer tanh learners fitting a 30-20-10-10 tanh target."""
    curves = _completed(folder)
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, rule), style in FIG3D_STYLE.items():
        df = select(curves, "test/nse", rule=rule, setting=f"model={model}")
        if not df.empty:
            mean_band(ax, df, **style)
    ax.set(xlabel="examples", ylabel="NSE (test)", yscale="log",
           title="d  fitting a 30-20-10-10 tanh network")
    ax.legend(frameon=False, fontsize=7)
    return _save(fig, folder, "fig3d.png")


@figure("lillicrap_fig5")
def fig5(folder: Path) -> list[Path]:
    """(a) ∠(W, Bᵀ) of the output layer and of sampled hidden units over learning (FA);
    (c) test NSE through the three freeze phases, with the angle."""
    curves = _completed(folder)
    free = curves[curves["setting"] == "trainer=default"]
    phased = curves[curves["setting"] == "trainer=lillicrap_fig5c"]
    fig, (ax_a, ax_c) = plt.subplots(1, 2, figsize=(10, 3.8))
    layers = sorted(free.loc[free["name"] == "weight_angle", "layer"].unique(), key=lambda s: (len(s), s))
    if layers:  # the output layer's W reads the hidden units: its columns are their outgoing weights
        out_layer = layers[-1]
        units = free[(free["name"] == "neuron_angle") & free["layer"].str.startswith(f"{out_layer}:")
                     & (free["seed"] == free["seed"].min())]
        for _, unit in units.groupby("layer"):
            unit = unit.sort_values("examples")
            ax_a.plot(unit["examples"], unit["value"], color="black", lw=0.5, alpha=0.6)
        ax_a.plot([], [], color="black", lw=0.5, label=f"single hidden units (seed {free['seed'].min()})")
        mean_band(ax_a, select(free, f"train/weight_angle/{out_layer}"), color="tab:blue",
                  label="∠(W, Bᵀ), whole matrix")
    ax_a.axhline(90, color="0.6", ls=":", lw=1)
    ax_a.set(xlabel="examples", ylabel="angle (deg)", ylim=(0, 100), title="a  W aligns with Bᵀ (FA)")
    ax_a.legend(frameon=False, fontsize=7)
    df = select(phased, "test/nse")
    if not df.empty:
        mean_band(ax_c, df, color="tab:green", label="test NSE")
        phase = select(phased, "train/phase").groupby("examples")["value"].first().sort_index()
        # a phase ends at the last evaluation that still belongs to it
        edges = [phase.index[i - 1] for i in range(1, len(phase)) if phase.iloc[i] != phase.iloc[i - 1]]
        for x in edges:
            ax_c.axvline(x, color="0.5", ls="--", lw=1)
        names = ["W frozen,\nW0 learns", "W0 frozen,\nW learns", "W frozen,\nW0 learns"]
        bounds = [phase.index.min(), *edges, phase.index.max()]
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
            if i < len(names):
                ax_c.text((lo + hi) / 2, 0.97, names[i], ha="center", va="top", fontsize=7,
                          transform=ax_c.get_xaxis_transform())
    ax_c.set(xlabel="examples", ylabel="NSE (test)", title="c  three phases (FA)", ylim=(0, None))
    ax_c.legend(frameon=False, fontsize=7, loc="lower left")
    return _save(fig, folder, "fig5.png")
