"""Shared plotting helpers: mean ± spread over seeds, provenance footers."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fa_bench.collect import budget_text

RULE_STYLE = {  # Lillicrap's colours: shallow light grey, RL dark grey, BP black, FA green
    "shallow": dict(color="0.7", label="shallow"),
    "node_perturbation": dict(color="0.35", label="node perturbation (RL)"),
    "bp": dict(color="black", label="backprop"),
    "fa": dict(color="tab:green", label="feedback alignment"),
    "dfa": dict(color="tab:blue", label="DFA"),
}


def mean_band(ax, df: pd.DataFrame, x="examples", y="value", by="seed", band="sd", **style):
    """Plot the mean over ``by`` and a band of ±1 sd, ±1 standard error (``band="se"``) or min-max at each x."""
    pivot = df.pivot_table(index=x, columns=by, values=y, aggfunc="mean")
    mean = pivot.mean(axis=1)
    if band in ("sd", "se"):
        sd = pivot.std(axis=1, ddof=1).fillna(0)
        if band == "se":
            sd = sd / pivot.notna().sum(axis=1).clip(lower=1) ** 0.5
        lo, hi = mean - sd, mean + sd
    else:
        lo, hi = pivot.min(axis=1), pivot.max(axis=1)
    ax.plot(mean.index, mean.values, lw=1.5, **style)
    ax.fill_between(mean.index, lo.values, hi.values, alpha=0.2, color=style.get("color"), lw=0)
    return mean


def provenance(folder: Path) -> str:
    return budget_text(json.loads((Path(folder) / "meta.json").read_text()))


def save_figure(fig, folder: Path, name: str, note: str = "", dpi: int = 150) -> list[Path]:
    """The provenance footer (budget, devices, commit; then ``note``), a tight layout, and an atomic save
    into ``folder/name``; closes the figure."""
    import matplotlib.pyplot as plt

    from fa_bench import atomic

    fig.text(0.01, 0.005, provenance(folder) + note, fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = Path(folder) / name
    atomic.savefig(fig, out, dpi=dpi)
    plt.close(fig)
    return [out]


def cell_of(setting) -> str:
    """The ``cell=<name>`` part of a run's setting ('cell=moskovitz_fa' -> 'moskovitz_fa'; '' when the
    runs did not vary the cell)."""
    for part in str(setting or "").split(","):
        key, _, value = part.partition("=")
        if key == "cell":
            return value
    return ""
