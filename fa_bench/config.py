"""Compose fa-run's config from Python (tests, scripts, notebooks) exactly as the CLI would."""
from __future__ import annotations

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fa_bench.cli import conf_dir


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides or []), return_hydra_config=return_hydra_config)
