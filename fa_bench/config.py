"""Where fa-run's configs live, and composing them from Python (tests, scripts, notebooks) as the CLI does."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fa_bench.experiments import help_text

# top-level keys that say where things go or how they are shown, not what a run computes
NOT_IN_RUN_KEY = ("hydra", "rerun", "results_dir", "collect", "data")


def load_yaml(text: str):
    """yaml.safe_load through libyaml's C loader where PyYAML has it (the same documents, ~10x faster:
    a run's validation reads every experiment file, collect every run's config)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


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


def seed_tag(seed, seeds) -> str:
    """A run folder's seed part: seed3, or seeds0-9 for a seed-batched job."""
    if seeds is None:
        return f"seed{seed}"
    seeds = list(seeds)
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"seeds{seeds[0]}-{seeds[-1]}"
    return "seeds" + "_".join(map(str, seeds))


def what_trains(resolved: dict) -> dict:
    """A resolved config as the run key sees it: less NOT_IN_RUN_KEY (where results and data live),
    trainer.progress and null settings. A checkpoint resumes only a run whose config this leaves equal."""
    body = pruned({k: v for k, v in resolved.items() if k not in NOT_IN_RUN_KEY})
    if isinstance(body.get("trainer"), dict):
        body["trainer"] = {k: v for k, v in body["trainer"].items() if k != "progress"}
    return body


def run_key(*, _root_) -> str:
    """The folder name of the run the whole config describes: '<rule>_<seeds>_<hash>', the hash over the
    resolved config less NOT_IN_RUN_KEY and trainer.progress. The same config always gets the same folder
    (a re-run skips or resumes it: fa_bench.run_folder); any change that alters the run, another."""
    body = OmegaConf.to_container(_root_, resolve=False)
    for key in NOT_IN_RUN_KEY:  # dropped before resolving: they may name what cannot resolve here
        body.pop(key, None)
    body = what_trains(OmegaConf.to_container(OmegaConf.create(body), resolve=True))
    digest = hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{body['rule']['name']}_{seed_tag(body.get('seed'), body.get('seeds'))}_{digest}"


def pruned(node):
    """The config less its null settings (and groups left empty): an option added later with a null
    default leaves every earlier run's key, and so its folder and checkpoint, where they were."""
    if isinstance(node, dict):
        kept = {k: pruned(v) for k, v in node.items() if v is not None}
        return {k: v for k, v in kept.items() if v != {}}
    if isinstance(node, list):
        return [pruned(v) for v in node]
    return node


def experiment_folder(name) -> str:
    """runs/<experiment>/ for an experiment's runs, runs/adhoc/ for the rest."""
    return str(name) if name else "adhoc"


OmegaConf.register_new_resolver("run_key", run_key, replace=True)
OmegaConf.register_new_resolver("experiment_folder", experiment_folder, replace=True)
OmegaConf.register_new_resolver("fa_experiments", lambda: help_text(Path(conf_dir()) / "experiment"), replace=True)
