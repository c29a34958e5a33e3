"""``fa-run``: the Hydra entry point (SPEC §1)."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from fa_bench.run import ConfigError, run


def conf_dir() -> str:
    """conf/ beside the package in a checkout (editable install), or shipped inside a built wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"fa_bench's conf/ not found beside {here}")


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def main(cfg: DictConfig) -> float | None:
    try:
        summary = run(cfg, HydraConfig.get().runtime.output_dir)
    except ConfigError as err:
        logging.getLogger("fa_bench").error("bad config: %s", err)
        raise SystemExit(f"fa-run: bad config: {err}") from None
    # a sweeper that optimises (optuna, ...) reads the return value
    return summary.get("final", {}).get("test/error", summary.get("final", {}).get("test/nse"))


if __name__ == "__main__":
    main()
