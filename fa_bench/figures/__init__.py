"""Figures from committed results alone. Adding one: a function under
@fa_bench.figures.registry.figure("<experiment>") that reads results/<experiment>/ and writes its
image there, in a module imported below."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before any figure module imports pyplot: no display needed

from fa_bench.figures import blog, lansdell, lansdell_autoencoder, lansdell_fig4, lillicrap, lillicrap_fig4, moskovitz, nokland  # noqa: E402,F401  (register)
from fa_bench.figures.registry import FIGURES, figure, make_all, make_figure  # noqa: E402,F401
