"""Lillicrap et al. 2016, Fig. 4: the network that integrates its activity and spikes (fa_bench.spiking).

Reads results/lillicrap_fig4/: curves.csv and meta.json from the collector, and traces.csv (the runs'
trace CSVs, fa_bench.spiking.TRACE_COLUMNS, with the run's rule and seed added).
"""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from fa_bench import atomic
from fa_bench.collect import read_table, select
from fa_bench.figures.common import RULE_STYLE, mean_band, provenance
from fa_bench.figures.registry import figure
from fa_bench.papers.lillicrap2016 import VALUES

PAPER_ERROR = VALUES["fig4_test_error"]  # % test error the paper reports for this network
STAGE_NAMES = ["early", "middle", "late"]
N_CLASSES = 10  # MNIST digits: output rows are labelled by class when they split into 10 equal groups


def _trace_run(traces: pd.DataFrame) -> pd.DataFrame:
    """One run's traces: rule fa (else the first rule), seed 0 (else the lowest seed)."""
    rules = sorted(traces["rule"].astype(str).unique())
    rule = "fa" if "fa" in rules else rules[0]
    rows = traces[traces["rule"].astype(str) == rule]
    return rows[rows["seed"] == rows["seed"].min()]


def _completed_traces(folder: Path, curves: pd.DataFrame) -> pd.DataFrame:
    """traces.csv's rows of the runs that completed (those with completed curves); empty when there
    is no traces.csv."""
    path = folder / "traces.csv"
    if not path.is_file():
        return pd.DataFrame()
    traces = read_table(path)
    def runs(df):
        return list(zip(df["rule"].astype(str), pd.to_numeric(df["seed"], errors="coerce")))

    done = set(runs(curves))
    return traces[[run in done for run in runs(traces)]] if not traces.empty else traces


def _stage_titles(phases: list[float], examples: dict[float, int]) -> list[str]:
    names = STAGE_NAMES if len(phases) == len(STAGE_NAMES) else [f"{p:g} of training" for p in phases]
    return [f"{name} ({examples[p]:,} images seen)" for name, p in zip(names, phases)]


def _raster(ax, rows: pd.DataFrame):
    """Spike raster: layers stacked top (hidden 1) to bottom (output, ordered by class group)."""
    spikes = rows[rows["kind"] == "spike"].assign(neuron=lambda d: pd.to_numeric(d["neuron"]))
    layers = list(dict.fromkeys(spikes["layer"]))  # in the order they were recorded
    n_t = int(rows["t"].max()) + 1
    blocks, ticks = [], []
    for layer in layers:
        grid = spikes[spikes["layer"] == layer].pivot_table(index="neuron", columns="t", values="value")
        grid = grid.reindex(columns=range(n_t)).fillna(0).to_numpy()
        ticks.append((sum(len(b) for b in blocks) + len(grid) / 2 - 0.5, "out" if layer == "out" else f"h{layer}"))
        blocks.append(grid)
    image = np.vstack(blocks)
    if layers and layers[-1] == "out":  # the output rows come in class order: name each class's rows
        out = spikes[spikes["layer"] == "out"]["neuron"].drop_duplicates().sort_values().to_numpy()
        per_class = len(out) // N_CLASSES if len(out) % N_CLASSES == 0 else None
        if per_class:  # the trace samples as many neurons from every class group
            top = len(image) - len(out)
            for c in range(N_CLASSES):
                ax.text(n_t - 0.3, top + (c + 0.5) * per_class - 0.5, str(c), fontsize=5, va="center",
                        color="0.4")
    ax.imshow(image, aspect="auto", cmap="Greys", interpolation="nearest", vmin=0, vmax=1)
    edge = 0
    for block in blocks[:-1]:
        edge += len(block)
        ax.axhline(edge - 0.5, color="tab:red", lw=0.6)
    ax.set_yticks([y for y, _ in ticks], [name for _, name in ticks], fontsize=7)
    ax.tick_params(axis="x", labelbottom=False)
    labels = rows[rows["kind"] == "label"]
    for t, value in zip(labels["t"], labels["value"]):  # image onsets and the digit shown
        ax.axvline(t - 0.5, color="tab:blue", lw=0.4, ls=":")
        ax.text(t - 0.5, -1, str(int(value)), fontsize=7, color="tab:blue", va="bottom")


def _neuron_traces(ax_v, ax_d, rows: pd.DataFrame):
    for ax, kind, label, color in [(ax_v, "psp", "PSP V", "black"),
                                   (ax_d, "modulator", "modulator φ_δ(U)", "tab:green")]:
        trace = rows[rows["kind"] == kind].sort_values("t")
        ax.plot(trace["t"], trace["value"], lw=1, color=color)
        ax.set_ylabel(label, fontsize=7)
        ax.tick_params(labelsize=7)
        for t in rows.loc[rows["kind"] == "label", "t"]:
            ax.axvline(t - 0.5, color="tab:blue", lw=0.4, ls=":")
    ax_d.axhline(0, color="0.6", lw=0.6)
    ax_v.tick_params(axis="x", labelbottom=False)
    ax_d.set_xlabel("time step", fontsize=7)


def _error_panel(ax, curves: pd.DataFrame, phases_at: list[int]):
    for rule in sorted(curves["rule"].astype(str).unique()):
        df = select(curves, "test/error", rule=rule)
        if not df.empty:
            mean_band(ax, df, **RULE_STYLE.get(rule, dict(color="tab:purple", label=rule)))
    ax.axhline(PAPER_ERROR, color="0.5", ls="--", lw=0.8, label=f"paper: {PAPER_ERROR}%")
    for x, name in zip(phases_at, STAGE_NAMES if len(phases_at) == 3 else [""] * len(phases_at)):
        ax.axvline(x, color="0.7", lw=0.6, ls=":")
        ax.text(x, 1.0, name, transform=ax.get_xaxis_transform(), fontsize=7, ha="left", va="top",
                color="0.4")
    ax.set_yscale("log")
    ax.set(xlabel="training images", ylabel="test error (%)",
           title="784-1500-1500-1500-1000 integrating, spiking network: test error")
    ax.legend(frameon=False, fontsize=8)


@figure("lillicrap_fig4")
def fig4(folder: Path) -> list[Path]:
    """Test error over training (mean ± sd over seeds), and at early, middle and late learning a spike
    raster of sampled neurons plus one hidden neuron's PSP and modulator (one run's traces)."""
    folder = Path(folder)
    curves = read_table(folder / "curves.csv")
    curves = curves[curves["status"] == "completed"]
    traces = _completed_traces(folder, curves)
    if traces.empty:  # no completed run left traces: the error panel alone
        fig, ax = plt.subplots(figsize=(8, 3.2))
        _error_panel(ax, curves, [])
        fig.text(0.01, 0.005, provenance(folder) + "; band: ±1 sd over seeds; no completed run's traces: "
                 "rasters not drawn", fontsize=6, color="0.4")
        fig.tight_layout(rect=(0, 0.03, 1, 1))
        return [atomic.savefig(fig, folder / "fig4.png", dpi=150)]
    traces = _trace_run(traces)
    phases = sorted(traces["phase"].unique())
    examples = {p: int(traces.loc[traces["phase"] == p, "examples"].iloc[0]) for p in phases}

    n = max(len(phases), 1)
    fig = plt.figure(figsize=(4 * n, 9))
    outer = fig.add_gridspec(2, 1, height_ratios=[1.3, 4.8], hspace=0.3)
    _error_panel(fig.add_subplot(outer[0]), curves, [examples[p] for p in phases])
    grid = outer[1].subgridspec(3, n, height_ratios=[3.2, 0.8, 0.8], hspace=0.12, wspace=0.3)
    for col, (phase, title) in enumerate(zip(phases, _stage_titles(phases, examples))):
        rows = traces[traces["phase"] == phase]
        ax_r = fig.add_subplot(grid[0, col])
        _raster(ax_r, rows)
        ax_r.set_title(title, fontsize=9, pad=12)
        ax_v = fig.add_subplot(grid[1, col], sharex=ax_r)
        ax_d = fig.add_subplot(grid[2, col], sharex=ax_r)
        _neuron_traces(ax_v, ax_d, rows)
    fig.text(0.01, 0.005, provenance(folder) + "; band: ±1 sd over seeds; rasters and traces: seed "
             f"{traces['seed'].min()}, stream 0, digits shown above", fontsize=6, color="0.4")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.95, bottom=0.06)
    out = folder / "fig4.png"
    atomic.savefig(fig, out, dpi=150)
    plt.close(fig)
    return [out]
