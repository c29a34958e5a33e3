"""``fa-run``: the Hydra entry point (docs/contracts.md §1)."""
from __future__ import annotations

import logging

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from fa_bench.config import conf_dir
from fa_bench.run import ConfigError, run, run_seeds


def seed_tag(seed, seeds) -> str:
    """A job folder's seed part: seed3, or seeds0-9 for a seed-batched job."""
    if seeds is None:
        return f"seed{seed}"
    seeds = list(seeds)
    return f"seeds{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else \
        "seeds" + "_".join(map(str, seeds))


OmegaConf.register_new_resolver("seed_tag", seed_tag, replace=True)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    out_dir = HydraConfig.get().runtime.output_dir
    try:
        if cfg.get("seeds") is not None:
            summaries = run_seeds(cfg, out_dir)
            summary = summaries[0]
        else:
            summary = run(cfg, out_dir)
    except ConfigError as err:
        logging.getLogger("fa_bench").error("bad config: %s", err)
        raise SystemExit(f"fa-run: bad config: {err}") from None
    # a sweeper that optimises (optuna, ...) reads the return value
    return summary.get("final", {}).get("test/error", summary.get("final", {}).get("test/nse"))


if __name__ == "__main__":
    main()
