"""The figure registry: experiment name -> the function that draws it from results/<experiment>/.
Figure modules register here (not in the package __init__, which imports them)."""
from __future__ import annotations

from pathlib import Path

FIGURES: dict = {}


def figure(experiment: str):
    def deco(fn):
        FIGURES[experiment] = fn
        return fn
    return deco


def make_figure(experiment: str, results_dir: Path | str) -> list[Path]:
    """Draw the figure(s) of one experiment from ``results_dir/<experiment>``; returns the files written."""
    folder = Path(results_dir) / experiment
    if experiment not in FIGURES:
        return []
    return FIGURES[experiment](folder)


def make_all(results_dir: Path | str) -> list[Path]:
    """Every experiment folder under ``results_dir``: its summary table, and its figure if it has one."""
    from fa_bench.figures import learning_curves
    from fa_bench.tables import write_summary_table

    written = []
    for folder in sorted(p.parent for p in Path(results_dir).glob("*/runs.csv")):
        written.append(write_summary_table(folder))
        written += make_figure(folder.name, results_dir)
        written += learning_curves.draw(folder)  # every classification experiment's test error by epoch
    return written
