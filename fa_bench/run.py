"""One run from a composed config: validate, build, train, write metrics.csv and summary.json."""
from __future__ import annotations

import inspect
import logging
import platform
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

import fa_bench
from fa_bench.atomic import write_text as atomic_write_text
from fa_bench.checkpoint import Checkpointer
from fa_bench.config import conf_dir, what_trains
from fa_bench.data import DATASETS, StreamingData, load_dataset
from fa_bench.distributed import from_environment, local_device
from fa_bench.engines.autograd import PhaseSchedule, RuleEngine
from fa_bench.errors import ConfigError
from fa_bench.interrupts import RunInterrupted
from fa_bench.losses import LOSSES, get_loss
from fa_bench.models import MODELS, build_model, check_bias_value, check_init
from fa_bench.noise import TrainingNoise
from fa_bench.optim import OPTIMIZERS
from fa_bench.optim import build_optimizer as _build_optimizer
from fa_bench.records import MetricsWriter, git_info, write_summary
from fa_bench.rules import RULES, get_rule
from fa_bench.run_folder import RunFolder
from fa_bench.seeding import derive_seed, generator
from fa_bench.sparsity import sparsify
from fa_bench.spiking import RULE as SPIKING_RULE
from fa_bench.spiking import train_spiking
from fa_bench.stacking import seed_axis_loss, stack_models, stack_refusal
from fa_bench.trainer import TrainConfig, train_loop
from fa_bench.tsne import save_activations
from fa_bench.validation import validate

log = logging.getLogger(__name__)


def _check(kind: str, value, valid):
    if value not in valid:
        raise ConfigError(f"unknown {kind} {value!r}; valid choices: {', '.join(sorted(valid))}")


def resolve_config(cfg: DictConfig, command_line: list[str] | None = None) -> DictConfig:
    """Apply ``per_rule`` overrides for the chosen rule, then validate every name in the config.

    ``per_rule`` lets one experiment file give each rule its own settings (learning rate, feedback
    scale, noise) while a sweep varies ``rule``: {rule_name: {any config subtree to merge}}. A setting
    given on the command line (``command_line``; default: the overrides Hydra ran with) wins over the
    per_rule value for the same key: ``experiment=lillicrap_fig2 rule=fa optimizer.lr=0.003`` trains
    at 0.003.
    """
    cfg = cfg.copy()
    validate(cfg)  # types, ranges and unknown keys of every group (fa_bench.validation)
    _check("engine", cfg.get("engine", "autograd"), ENGINES)
    _check("rule", cfg.rule.name, RULES)
    overrides = (cfg.get("per_rule") or {}).get(cfg.rule.name)
    if overrides is not None:
        explicit = _explicit_values(cfg, overrides, command_line)
        with open_dict(cfg):
            cfg = OmegaConf.merge(cfg, overrides)
            for key, value in explicit.items():
                OmegaConf.update(cfg, key, value, merge=False)
    _check("rule", cfg.rule.name, RULES)
    _check("model", cfg.model.name, MODELS)
    _check("dataset", cfg.dataset.name, DATASETS)
    _check("loss", cfg.loss, LOSSES)
    _check("optimizer", cfg.optimizer.name, OPTIMIZERS)
    _check("device", cfg.device, ("auto", "cpu", "cuda", *[f"cuda:{i}" for i in range(8)]))
    _check_arguments(f"dataset {cfg.dataset.name!r}", DATASETS[cfg.dataset.name], _data_kwargs(cfg))
    _check_arguments("trainer", TrainConfig, _kwargs(cfg.trainer, drop=()))
    _check_arguments("metrics", lambda every, batch_size, neuron_sample: None, _kwargs(cfg.metrics, drop=()))
    _check_arguments(f"optimizer {cfg.optimizer.name!r}", OPTIMIZERS[cfg.optimizer.name], _kwargs(cfg.optimizer))
    n_saved = cfg.get("save_activations")
    if n_saved is not None and not (isinstance(n_saved, int) and not isinstance(n_saved, bool) and n_saved >= 1):
        raise ConfigError(f"save_activations is null or a number of test examples >= 1, got {n_saved!r}")
    sparsity = cfg.get("sparsity") or 0.0
    if not (isinstance(sparsity, (int, float)) and 0.0 <= sparsity < 1.0):
        raise ConfigError(f"sparsity is the fraction of W and B removed, in [0, 1); got {sparsity!r}")
    if not cfg.optimizer.get("lr", 0) > 0:
        raise ConfigError(f"optimizer.lr must be > 0, got {cfg.optimizer.get('lr')!r}")
    if cfg.get("engine") == "spiking":
        if cfg.rule.name != SPIKING_RULE:
            raise ConfigError(f"engine=spiking learns by feedback alignment only (rule={SPIKING_RULE}), got "
                              f"rule={cfg.rule.name}")
        _check_arguments("spiking", train_spiking, _spiking_kwargs(cfg))
        _refuse_trainer_settings_for_spiking(cfg)
        return cfg
    try:
        get_rule(cfg.rule.name, **_rule_options(cfg))
        _train_config(cfg)
        model_kwargs = _kwargs(cfg.model)
        init = model_kwargs.pop("init", "default")
        check_init(init, model_kwargs.pop("init_scale", None))
        check_bias_value(model_kwargs.pop("bias_init_value", None), model_kwargs.pop("bias_init_scale", None), init)
        with torch.device("meta"):  # builds the architecture without allocating or drawing weights
            MODELS[cfg.model.name](**model_kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(str(err)) from err
    return cfg


def _refuse_trainer_settings_for_spiking(cfg):
    """The spiking engine's schedule is spiking.{epochs, streams, eval_every}: a trainer.* or metrics.*
    setting other than the defaults would be ignored, so it is an error instead."""
    for group in ("trainer", "metrics"):
        defaults = OmegaConf.load(Path(conf_dir()) / group / "default.yaml")
        for key, value in _kwargs(cfg[group], drop=()).items():
            if key != "progress" and value != defaults.get(key):
                raise ConfigError(f"engine=spiking does not honour {group}.{key}={value!r}: its schedule is "
                                  f"spiking.epochs, spiking.streams and spiking.eval_every, and it has no probe")


def _leaves(node, prefix="") -> list[str]:
    if not isinstance(node, DictConfig):
        return [prefix]
    return [leaf for k in node for leaf in _leaves(node[k], f"{prefix}{k}.")] if len(node) else [prefix]


def _explicit_values(cfg, per_rule_node, command_line) -> dict:
    """The command line's values for keys that ``per_rule`` also sets (dotted key -> value), as the
    composed config holds them (so they are typed exactly as Hydra parsed them)."""
    if command_line is None:
        from hydra.core.hydra_config import HydraConfig

        command_line = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    leaves = [leaf.rstrip(".") for leaf in _leaves(per_rule_node)]
    explicit = {}
    for item in command_line:
        key = item.lstrip("+~").split("=", 1)[0]
        if "=" in item and any(key == leaf or key.startswith(leaf + ".") for leaf in leaves):
            explicit[key] = OmegaConf.select(cfg, key)
    return explicit


def _kwargs(node, drop=("name",)) -> dict:
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in drop}


def _rule_options(cfg):
    opts = _kwargs(cfg.rule)
    opts["seed"] = int(cfg.seed)  # the rule derives its own streams from it (fa_bench.seeding)
    return opts


def _data_kwargs(cfg):
    kwargs = _kwargs(cfg.dataset, drop=("name", "loss", "input_noise"))  # input_noise: fa_bench.noise, in training
    kwargs.setdefault("root", cfg.data.root)
    return kwargs


def _spiking_kwargs(cfg) -> dict:
    return _kwargs(cfg.get("spiking") or {}, drop=())


def _train_config(cfg) -> TrainConfig:
    return TrainConfig(**_kwargs(cfg.trainer, drop=()), metrics_every=cfg.metrics.every,
                       metrics_batch_size=cfg.metrics.batch_size,
                       metrics_neuron_sample=cfg.metrics.get("neuron_sample", 0))


def _check_arguments(kind: str, fn, kwargs: dict):
    """Names the keys a builder does not take, with the ones it does (before anything is built)."""
    params = inspect.signature(fn).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    unknown = set(kwargs) - set(params)
    if unknown:
        raise ConfigError(f"{kind} got unknown setting(s) {sorted(unknown)}; valid: {', '.join(params)}")


def pick_device(name: str) -> torch.device:
    name = local_device(name)  # under torchrun: this process's GPU
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name} but CUDA is not available here; use device=auto or cpu")
    return torch.device(name)


def build_data(cfg: DictConfig, device):
    return load_dataset(cfg.dataset.name, device=device, **_data_kwargs(cfg))


def example_batch(data) -> torch.Tensor:
    """Two inputs of the data set's shape (what convert sizes DFA's feedback with)."""
    if isinstance(data, StreamingData):
        return torch.zeros(2, *data.input_shape, device=data.device)
    if getattr(data, "train_crop", None) is not None:  # the model sees crops: the test set holds their shape
        return data.x_test[:2]
    return data.x_train[:2]


def build_model_on(cfg: DictConfig, data, device):
    """The converted (and sparsified) model of a resolved config, checked against the data's inputs."""
    model = build_model(cfg.model.name, seed=int(cfg.seed), **_kwargs(cfg.model)).to(device)
    try:
        with torch.no_grad():
            model.eval()(example_batch(data))
        model.train()
    except RuntimeError as err:  # shapes that don't chain: the model does not fit the data set
        raise ConfigError(f"model {cfg.model.name!r} does not take dataset {cfg.dataset.name!r} "
                          f"inputs of shape {tuple(example_batch(data).shape[1:])}: {err}") from err
    model = fa_bench.convert(model, cfg.rule.name, example_input=example_batch(data), **_rule_options(cfg))
    sparsify(model, float(cfg.get("sparsity") or 0.0), generator(int(cfg.seed), "sparsity"))
    try:
        PhaseSchedule(model, cfg.trainer.get("phases"))
    except ValueError as err:
        raise ConfigError(str(err)) from err
    log.info("%s", model.fa_report)
    return model


def build_optimizer(cfg: DictConfig, model):
    return _build_optimizer(model, cfg.optimizer.name, **_kwargs(cfg.optimizer))


def build(cfg: DictConfig, device):
    """Data, converted model, loss and optimizer for a resolved config."""
    data = build_data(cfg, device)
    model = build_model_on(cfg, data, device)
    return data, model, get_loss(cfg.loss), build_optimizer(cfg, model)


def _train_autograd(cfg, device, writers, out_dir, checkpoint=None, resume=None, dist=None):
    data, model, loss_fn, optimizer = build(cfg, device)
    torch.manual_seed(derive_seed(int(cfg.seed), "global"))  # dropout and anything else on the global stream
    tcfg = _train_config(cfg)
    engine = RuleEngine(model, data, loss_fn, optimizer, tcfg, seeds=[int(cfg.seed)],
                        orders=[generator(int(cfg.seed), "order")], dist=dist,
                        noise=TrainingNoise.from_config(cfg, [int(cfg.seed)], stacked=False))
    result = train_loop(engine, tcfg, writers, desc=f"{cfg.rule.name} seed {cfg.seed}", checkpoint=checkpoint,
                        resume=resume)[0]
    n = cfg.get("save_activations")
    if n and out_dir is not None and result.status == "completed":  # what Nøkland's Fig. 3 embeds
        labels = data.y_test if data.labels_test is None else data.labels_test  # an autoencoder's: the digits
        save_activations(model, data.x_test[:n], labels[:n], out_dir / "activations.npz",
                         samples=0 if data.labels_test is None else 16)  # and sample reconstructions
    return [result]


def _train_spiking(cfg, device, writers, out_dir, checkpoint=None, resume=None, dist=None):
    if dist is not None and dist.active:
        raise ConfigError("engine=spiking runs in one process (no torchrun)")
    data = load_dataset(cfg.dataset.name, device=device, **_data_kwargs(cfg))
    result = train_spiking(data, writers[0], seed=int(cfg.seed), device=device, progress=bool(cfg.trainer.progress),
                           trace_path=None if out_dir is None else out_dir / "traces.csv", checkpoint=checkpoint,
                           resume=resume, **_spiking_kwargs(cfg))
    return [result]


def _train_stacked(configs, device, writers, out_dir, checkpoint=None, resume=None, dist=None, data=None):
    """S seeds of one config as one seed-stacked model (fa_bench.stacking) under the rule engine."""
    seeds = [int(c.seed) for c in configs]
    kwargs = [_data_kwargs(c) for c in configs]
    shared = all(k == kwargs[0] for k in kwargs)  # MNIST: one copy; a teacher per seed: one set each
    if shared:  # ``data``: the set run_seeds already loaded to check the model stacks
        datas = [data if data is not None else build_data(configs[0], device)]
    else:
        datas = [build_data(c, device) for c in configs]
    models = [build_model_on(c, datas[0 if shared else i], device) for i, c in enumerate(configs)]
    model = stack_models(models, seeds)
    del models
    optimizer = build_optimizer(configs[0], model)
    loss_fn = seed_axis_loss(get_loss(configs[0].loss))
    tcfg = _train_config(configs[0])
    engine = RuleEngine(model, datas[0] if shared else datas, loss_fn, optimizer, tcfg, seeds=seeds,
                        orders=[generator(s, "order") for s in seeds],
                        noise=TrainingNoise.from_config(configs[0], seeds, stacked=True))
    return train_loop(engine, tcfg, writers, desc=f"{configs[0].rule.name} seeds {seeds[0]}..{seeds[-1]}",
                      checkpoint=checkpoint, resume=resume)


# how a run trains: any model under a rule through autograd, or Lillicrap's spiking network (Fig. 4),
# whose forward and feedback dynamics run together and learn without a backward pass
ENGINES = {"autograd": _train_autograd, "spiking": _train_spiking}


def hydra_choices() -> dict[str, str]:
    """The config-group options Hydra composed this run from ({'model': 'mlp_784_1000_10', 'cell': ...});
    empty outside a Hydra app (API calls, tests)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return {}
    choices = OmegaConf.to_container(HydraConfig.get().runtime.choices)
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def _new_summary(cfg, device, choices) -> dict:
    summary = {
        "status": "failed", "experiment": cfg.get("experiment_name"), "rule": cfg.rule.name,
        "model": cfg.model.name, "dataset": cfg.dataset.name, "seed": int(cfg.seed),
        "device": str(device), "torch_version": torch.__version__, "fa_bench_version": fa_bench.__version__,
        "python_version": platform.python_version(), **git_info(),
        "choices": hydra_choices() if choices is None else dict(choices),
        "budget": {"epochs": cfg.trainer.epochs, "max_steps": cfg.trainer.max_steps,
                   "batch_size": cfg.trainer.batch_size},
    }
    if cfg.get("engine") == "spiking":  # image streams run side by side play the part of the batch
        spiking = _spiking_kwargs(cfg)
        summary["budget"] = {"epochs": spiking.get("epochs", 1), "max_steps": None,
                             "batch_size": spiking.get("streams", 16)}
    return summary


def _write_config(cfg, out_dir):
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def _record_result(summary, result):
    summary.update(status=result.status, final=result.final, steps=result.steps, examples=result.examples,
                   epochs_run=result.epochs_run, stop_reason=result.stop_reason)
    if result.status == "diverged":
        log.warning("seed %s diverged at step %d; marked 'diverged' in summary.json", summary["seed"], result.steps)


def _setup(cfg):
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    return pick_device(cfg.device)


def _failed_summary(cfg, err) -> dict:
    """What a run that could not start says about itself (its config did not resolve)."""
    seed = cfg.get("seed")
    return {"status": "failed", "error": f"{type(err).__name__}: {err}", "experiment": cfg.get("experiment_name"),
            "rule": OmegaConf.select(cfg, "rule.name"), "seed": seed if isinstance(seed, int) else str(seed),
            "choices": hydra_choices(), **git_info()}


def _skipped(folders, summaries) -> list[dict] | None:
    """Every folder already holds a finished run: log it and hand back their summaries."""
    if any(s is None for s in summaries):
        return None
    for folder, summary in zip(folders, summaries):
        log.info("%s: %s earlier, skipped (rerun=true trains it again)", folder, summary["status"])
    return [{**s, "skipped": True} for s in summaries]


def run(cfg: DictConfig, out_dir: Path | str | None, choices: dict | None = None) -> dict:
    """Run one config; write metrics.csv, summary.json and the resolved config into ``out_dir``.

    A folder that already holds a finished run (completed or diverged) is skipped, one that holds a
    checkpoint resumes from it, anything else trains afresh; ``rerun=true`` always starts afresh.
    ``choices``: the config-group options the config was composed from (default: Hydra's, if any),
    recorded in summary.json so collected tables can say which model/cell/dataset file ran."""
    if out_dir is None:
        return _run_seeds([cfg], None, [None], choices, stacked=False)[0]
    if not from_environment().main:  # under torchrun only rank 0 writes; the others train and resume alike
        return _run_seeds([cfg], Path(out_dir), [None], choices, stacked=False)[0]
    with RunFolder(out_dir) as folder:
        if cfg.get("rerun"):
            folder.clear()
        skipped = _skipped([folder.path], [folder.finished()])
        if skipped:
            return skipped[0]
        return _run_seeds([cfg], folder.path, [folder.path], choices, stacked=False)[0]


def _run_seeds(configs, group_dir, dirs, choices, stacked, data=None, resolved=None) -> list[dict]:
    """Resolve, train (one seed, or seed-stacked), and write every seed's summary; resumes from the
    group's checkpoint when there is one. ``resolved``: the configs already resolved (run_seeds has
    done it to decide whether they stack), so the job does not pay for it twice."""
    try:
        if resolved is None:
            resolved = [resolve_config(c) for c in configs]  # every seed's config is checked before any trains
    except ConfigError as err:
        for c, d in zip(configs, dirs):
            if d is not None:
                write_summary(d / "summary.json", _failed_summary(c, err))
        raise
    device = _setup(resolved[0])
    dist = from_environment(device)
    summaries = [_new_summary(c, device, choices) for c in resolved]
    if dist.active:
        for summary in summaries:
            summary["processes"] = dist.world
    checkpoint, resume = None, None
    if group_dir is not None:
        checkpoint = Checkpointer(group_dir, resolved[0].trainer.get("checkpoint_every"), writes=dist.main,
                                  meta={"config": [OmegaConf.to_container(c, resolve=True) for c in resolved]})
        resume = checkpoint.load() if checkpoint.enabled else None
        # compared as the run key compares them: a null option added since the checkpoint, or another
        # results_dir or data root, changes nothing that trains
        if resume is not None and [what_trains(c) for c in resume.get("config") or []] != \
                [what_trains(c) for c in checkpoint.meta["config"]]:
            raise ConfigError(f"{checkpoint.path} was written by a different config; delete it or pass "
                              f"rerun=true to start afresh")
    for c, d in zip(resolved, dirs):
        _write_config(c, d)
    writers = [MetricsWriter(None if d is None else d / "metrics.csv",
                             resume=None if resume is None else resume["writers"][i]) for i, d in enumerate(dirs)]
    start = time.perf_counter()
    try:
        if stacked:
            results = _train_stacked(resolved, device, writers, group_dir, checkpoint, resume, dist, data)
        else:
            cfg = resolved[0]
            results = ENGINES[cfg.get("engine", "autograd")](cfg, device, writers, group_dir, checkpoint, resume,
                                                             dist)
        for summary, result in zip(summaries, results):
            _record_result(summary, result)
            if resume is not None:
                summary["resumed_from_step"] = resume["step"]
            if stacked:
                summary["seed_batch"] = [int(c.seed) for c in resolved]
        if checkpoint is not None and dist.main:
            checkpoint.remove()  # finished: the records say everything a re-run needs (it skips)
    except RunInterrupted as err:
        for summary, writer in zip(summaries, writers):
            summary.update(status="interrupted", steps=err.step, final=writer.final(), stop_reason=str(err),
                           checkpoint=None if checkpoint is None or not checkpoint.enabled else str(checkpoint.path))
        raise
    except Exception as err:
        for summary in summaries:
            summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        raise
    finally:
        # a resumed run counts its earlier segments too, each up to its last checkpoint (the time between
        # that checkpoint and a crash is lost with the state it trained); a checkpoint from before
        # fa_bench kept that count holds none, and the summary says so
        earlier = None if resume is None else resume.get("wall_time")
        wall = time.perf_counter() - start + (earlier or 0.0)
        for writer, summary, d in zip(writers, summaries, dirs):
            writer.close()
            summary["wall_time"] = wall
            if resume is not None and earlier is None:
                summary["wall_time_since_resume_only"] = True
            if d is not None:
                write_summary(d / "summary.json", summary)
    return summaries


# --- seed groups: one job, several seeds -------------------------------------------------------------
def seed_configs(cfg: DictConfig, seeds) -> list[DictConfig]:
    """One config per seed: ``cfg`` with ``seed`` set (everything that interpolates it follows) and no
    ``seeds`` list."""
    out = []
    for s in seeds:
        if not (isinstance(s, int) and not isinstance(s, bool)):
            raise ConfigError(f"seeds must be integers, got {s!r} in seeds={list(seeds)}")
        c = cfg.copy()
        with open_dict(c):
            c.seed = s
            c.seeds = None
        out.append(c)
    return out


def batch_refusal(cfg: DictConfig) -> str | None:
    """Why a resolved config's seeds cannot train as one seed-stacked job (None: they can). What only
    the built model can tell (its modules) is checked by fa_bench.stacking.stack_refusal."""
    if cfg.get("engine", "autograd") != "autograd":
        return f"engine={cfg.engine}"
    if not RULES[cfg.rule.name].seed_batchable:
        return f"rule {cfg.rule.name!r} does not seed-batch"
    if cfg.trainer.get("adversarial"):
        return "trainer.adversarial (FGSM) runs one seed at a time"
    if any((p or {}).get("rule") for p in cfg.trainer.get("phases") or []):
        return "a phase that switches the rule runs one seed at a time"
    if from_environment().active:
        return "a torchrun (DDP) job trains one seed at a time"
    if cfg.get("save_activations"):
        return "save_activations writes one model's activations"
    return None


def run_seeds(cfg: DictConfig, out_dir: Path | str, choices: dict | None = None) -> list[dict]:
    """Run every seed of ``cfg.seeds`` into ``out_dir/seed<s>/`` (ordinary run folders): as one
    seed-stacked job when the config and model allow it, else one after another (logged once, with
    the reason). Seed s's records are those of ``run`` with seed=s, to float rounding. Finished seeds
    are skipped and an interrupted stacked job resumes, as ``run`` does for one seed."""
    seeds = list(cfg.seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a list of distinct integers, got {seeds!r}")
    configs = seed_configs(cfg, seeds)
    choices = hydra_choices() if choices is None else choices
    with RunFolder(out_dir) as group:
        if cfg.get("rerun"):
            group.clear()
        dirs = [group.path / f"seed{s}" for s in seeds]
        if from_environment().active:
            raise ConfigError("under torchrun, run one seed per command (seed=N), not a seed group")
        for d, s in zip(dirs, seeds):
            _seed_overrides(group.path, d, s)
        skipped = _skipped(dirs, [RunFolder(d).finished() for d in dirs])
        if skipped:
            return skipped
        # resolved once: per_rule, validation and the meta-device model build do not depend on the seed
        # (tests/test_batched.py checks the reseeded copies against resolving each), and each
        # resolve costs ~75 ms, ~0.7 s of a 10-seed Fig. 2 job
        first = resolve_config(configs[0])
        resolved = [first, *seed_configs(first, seeds[1:])]
        reason = batch_refusal(first)
        if reason is None:
            device = _setup(resolved[0])
            data = build_data(resolved[0], device)
            reason = stack_refusal(build_model_on(resolved[0], data, device))
        if reason is not None:
            log.info("seed batching off (%s): %d seeds run one after another", reason, len(seeds))
            return [run(c, d, choices) for c, d in zip(configs, dirs)]
        log.info("seed batching: %d seeds of rule %s in one stacked job", len(seeds), resolved[0].rule.name)
        return _run_seeds(configs, group.path, dirs, choices, stacked=True, data=data, resolved=resolved)


def _seed_overrides(group_dir: Path, seed_dir: Path, seed: int):
    """The seed folder's .hydra/overrides.yaml: the group's, with this seed in place of the list (what
    collect reads to tell runs apart)."""
    import yaml

    src = group_dir / ".hydra" / "overrides.yaml"
    overrides = (yaml.safe_load(src.read_text()) if src.is_file() else None) or []
    mine = [o for o in overrides if o.lstrip("+~").split("=", 1)[0] not in ("seed", "seeds")] + [f"seed={seed}"]
    (seed_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    atomic_write_text(seed_dir / ".hydra" / "overrides.yaml", yaml.safe_dump(mine))
