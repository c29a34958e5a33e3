"""Lansdell, Prakash & Kording 2020: the MNIST autoencoder (experiments lansdell_table2a and lansdell_fig3).

- lansdell_table2a: Fig. 3A, train (dashed) and test (solid) loss of every method, mean ± s.e. over seeds,
  and ``table2a.md``, Table 2a's number beside the paper's.
- lansdell_fig3: Fig. 3B, the 2-d latent of 1000 test images coloured by digit, for NP, BP(SGD) and FA;
  Fig. 3C, sample reconstructions; and ``measures.csv``, the latent's digit separation (read by the
  scorecard).

**Table 2a's number** (``table_measure``), as the authors' notebook computes it: the minimum over training
of the test loss of a batch of 32 images, summed over the batch (½Σ(ŷ − x)² per image). fa_bench logs
test/loss, the mean per-image loss over the whole test set at each evaluation, so the number is
32 x min test/loss (the code averaged 1000 random test batches per "epoch", whose expectation this is).

**Digit separation of the latent** (``latent_knn_accuracy``): the leave-one-out 10-nearest-neighbour
accuracy (%) of the digit label on the 2-d latent of the saved test images (Euclidean, majority vote,
ties to the nearest neighbour's label). Chance is about 10 %; a latent that separates the digits gives
a high value, the FA latent the paper shows (Fig. 3B: "does not learn to separate digits ... at all")
a low one.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from fa_bench import atomic
from fa_bench.collect import read_table, select
from fa_bench.figures.common import mean_band, save_figure
from fa_bench.figures.registry import figure
from fa_bench.tsne import knn_accuracy

BATCH = 32  # the paper's test batch, whose summed loss Table 2a reports
LATENT_FEATURE = "feature_2"  # the input of the third converted layer: the 2-d bottleneck
KNN = 10

METHODS = {  # cell suffix -> (label, paper row, noise column)
    "bp_sgd": ("BP(SGD)", "bp_sgd", False), "bp_sgd_noise": ("BP(SGD) + noise", "bp_sgd", True),
    "bp_adam": ("BP(ADAM)", "bp_adam", False), "bp_adam_noise": ("BP(ADAM) + noise", "bp_adam", True),
    "fa": ("FA", "fa", False), "fa_noise": ("FA + noise", "fa", True),
    "matched": ("Matched", "matched", False), "matched_noise": ("Matched + noise", "matched", True),
    "dae": ("DAE", "dae", True), "np": ("NP (ours)", "np", True), "sg": ("SG", "sg", False),
}
COLORS = {"bp_sgd": "black", "bp_adam": "tab:purple", "fa": "tab:green", "matched": "tab:brown",
          "dae": "tab:gray", "np": "tab:blue", "sg": "tab:orange"}
CELL = re.compile(r"cell=lansdell_t2a_(?P<method>\w+)")


def table_measure(test_loss) -> float:
    """One run's Table 2a number from its logged test/loss values (mean per-image loss at each
    evaluation): BATCH x their minimum, the summed loss of a batch of 32 at the best evaluation."""
    values = np.asarray(list(test_loss), dtype=float)
    values = values[np.isfinite(values)]
    return float(BATCH * values.min()) if values.size else math.inf


def _method(setting: str) -> str | None:
    m = CELL.fullmatch(str(setting))
    return m["method"] if m and m["method"] in METHODS else None


def table_rows(curves: pd.DataFrame) -> pd.DataFrame:
    """Per method: our mean ± s.e. (ddof 1) over seeds of the table measure, and the paper's value."""
    from fa_bench.papers.lansdell2020 import TABLE2A

    rows = []
    for setting in sorted(curves["setting"].unique(), key=lambda s: list(METHODS).index(_method(s) or "np")):
        method = _method(setting)
        if method is None:
            continue
        per_seed = select(curves, "test/loss", setting=setting).groupby("seed")["value"].apply(table_measure)
        label, row, noise = METHODS[method]
        n = len(per_seed)
        se = per_seed.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
        paper = TABLE2A[row]["noise" if noise else "no_noise"]
        rows.append({"method": label, "cell": method, "seeds": n, "ours_mean": per_seed.mean(), "ours_se": se,
                     "paper_mean": paper[0] if paper else float("nan"),
                     "paper_se": paper[1] if paper else float("nan")})
    return pd.DataFrame(rows)


@figure("lansdell_table2a")
def table2a(folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    folder = Path(folder)
    curves = read_table(folder / "curves.csv")
    curves = curves[curves["status"] == "completed"]
    table = table_rows(curves)
    lines = ["# Lansdell 2020, Table 2a (MNIST autoencoder): min over training of a 32-image batch's summed "
             "test loss, mean ± s.e. over seeds", "",
             "Written by fa_bench.figures.lansdell_autoencoder from curves.csv; budget in the figure footer and "
             "meta.json (the paper: 1 M iterations x 10 runs; the scorecard's budget column says how far each row is).", "",
             "| method | seeds | ours | paper |", "| --- | --- | --- | --- |"]
    for _, r in table.iterrows():
        paper = "–" if not np.isfinite(r["paper_mean"]) else f"{r['paper_mean']:.1f} ± {r['paper_se']:.1f}"
        lines.append(f"| {r['method']} | {r['seeds']} | {r['ours_mean']:.1f} ± {r['ours_se']:.1f} | {paper} |")
    md = folder / "table2a.md"
    atomic.write_text(md, "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(8, 5))
    for setting in sorted(curves["setting"].unique()):
        method = _method(setting)
        if method is None:
            continue
        label, row, noise = METHODS[method]
        style = dict(color=COLORS[row], alpha=0.55 if noise and row not in ("np", "dae") else 1.0)
        for split, ls in (("test", "-"), ("train", "--")):
            rows = select(curves, f"{split}/loss", setting=setting).assign(
                value=lambda d: d["value"] * BATCH, iterations=lambda d: d["step"])
            rows = rows[rows["step"] > 0]
            if not rows.empty:
                mean_band(ax, rows, x="iterations", band="se", ls=ls, label=label if split == "test" else None,
                          **style)
    ax.set(xlabel="iterations", ylabel="loss of a 32-image batch (½Σ(ŷ−x)²)", yscale="log",
           title="MNIST autoencoder: test (solid), train (dashed)")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    return [md, *save_figure(fig, folder, "fig3a.png", "; ±1 s.e. over seeds; train: the noisy passes",
                             dpi=130)]


def _latents(folder: Path) -> dict[str, tuple]:
    """{method: (latent (N, 2), labels (N,), the npz, seed)} from activations/<rule>_seed<k>_cell=...npz,
    the lowest seed per method."""
    out = {}
    paths = sorted((folder / "activations").glob("*.npz"),
                   key=lambda p: int(re.search(r"_seed(\d+)_", p.name)[1]) if re.search(r"_seed(\d+)_", p.name) else 0)
    for path in paths:
        m = re.search(r"_seed(\d+)_cell=lansdell_t2a_(\w+)\.npz$", path.name)
        if not m or m[2] not in METHODS or m[2] in out:
            continue
        data = np.load(path)
        out[m[2]] = (data[LATENT_FEATURE], data["labels"], data, int(m[1]))
    return out


@figure("lansdell_fig3")
def fig3(folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    folder = Path(folder)
    latents = _latents(folder)
    first = ("np", "bp_sgd", "fa")  # the paper's Fig. 3B
    shown = [m for m in first if m in latents] + [m for m in latents if m not in first]
    written = []
    rows = []
    for method in shown:
        z, labels, _, seed = latents[method]
        rows.append({"step": 0, "epoch": 0, "examples": 0, "split": "test", "name": "latent_knn_accuracy",
                     "layer": "", "value": round(knn_accuracy(z, labels, k=KNN), 4), "rule": "", "seed": int(seed),
                     "setting": f"cell=lansdell_t2a_{method}", "status": "completed", "commit": ""})
    if rows:
        path = folder / "measures.csv"
        atomic.to_csv(pd.DataFrame(rows), path, index=False)
        written.append(path)
    if not shown:
        return written
    n_samples = 8
    fig = plt.figure(figsize=(4 * len(shown), 4 + 1.2 * (len(shown) + 1)))
    grid = fig.add_gridspec(2, len(shown), height_ratios=[4, 1.2 * (len(shown) + 1)])
    cmap = plt.get_cmap("tab10")
    for col, (method, row) in enumerate(zip(shown, rows)):
        z, labels = latents[method][:2]
        ax = fig.add_subplot(grid[0, col])
        ax.scatter(z[:, 0], z[:, 1], c=[cmap(int(v) % 10) for v in labels], s=4)
        ax.set(title=f"{METHODS[method][0]}: latent, {KNN}-NN digit accuracy {row['value']:.1f} %",
               xticks=[], yticks=[])
        ax.title.set_fontsize(9)
    handles = [plt.Line2D([], [], ls="", marker="o", color=cmap(d), label=str(d)) for d in range(10)]
    fig.axes[0].legend(handles=handles, fontsize=6, frameon=False, loc="best", ncol=2)
    # Fig. 3C: the inputs, then each method's reconstructions of them
    npz = latents[shown[0]][2]
    if "sample_inputs" in npz:
        strips = [("input", npz["sample_inputs"][:n_samples])]
        strips += [(METHODS[m][0], latents[m][2]["sample_outputs"][:n_samples]) for m in shown
                   if "sample_outputs" in latents[m][2]]
        sub = grid[1, :].subgridspec(len(strips), 1)
        for r, (label, images) in enumerate(strips):
            ax = fig.add_subplot(sub[r, 0])
            side = int(round(math.sqrt(images.shape[1])))
            ax.imshow(np.concatenate([im.reshape(side, side) for im in images], axis=1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    return written + save_figure(fig, folder, "fig3.png", "; latent and reconstructions of test images "
                                                          "after training, the lowest seed per method", dpi=110)
