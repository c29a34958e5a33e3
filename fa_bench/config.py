"""Where fa-run's configs live, and composing them from Python (tests, scripts, notebooks) as the CLI does."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig


def conf_dir() -> str:
    """conf/ beside the package in a checkout (editable install), or shipped inside a built wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "conf", here / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(f"fa_bench's conf/ not found beside {here}")


def compose_config(overrides: list[str] | None = None, return_hydra_config: bool = False) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides or []), return_hydra_config=return_hydra_config)
