"""Hydra callback: after an experiment's sweep, collect its runs into results/ and draw its figure."""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)


class CollectResults(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        name = config.get("experiment_name")
        if not name:
            return  # an ad-hoc sweep: its run folders are the result
        from fa_bench.collect import collect
        from fa_bench.figures import make_figure
        from fa_bench.tables import write_summary_table

        dest = Path(config.results_dir) / name
        meta = collect(config.hydra.sweep.dir, dest, experiment=name, max_points=config.collect.max_points,
                       metrics=config.collect.metrics)
        written = [write_summary_table(dest), *make_figure(name, config.results_dir)]
        log.info("collected %d runs into %s (%s); figures: %s", meta["n_runs"], dest, meta["status_counts"],
                 ", ".join(str(p) for p in written) or "none")
