"""Config validation at the boundary (fa_bench.run.resolve_config calls ``validate`` first).

Every check raises fa_bench.errors.ConfigError with one message that names the key, the value and
what is valid: unknown keys (``+foo=1`` included) at the top level and in every group, wrong types,
out-of-range numbers, non-integer seeds, rules that cannot apply to the model. ``validate`` checks
the config as it will run: with the chosen rule's ``per_rule`` settings merged in (a value that came
from ``per_rule`` is named ``per_rule.<rule>.<key>``), so resolve_config's later merge cannot bring
in a bad value unseen.

``check_experiment_yaml(argv)`` is for fa-run before Hydra composes anything: a YAML syntax error in
a config file named on the command line (``experiment=<name>``, ``cell=<name>``, ...) becomes
``<file>:<line>:<column>: <problem>`` instead of Hydra's traceback.
"""
from __future__ import annotations

import functools
import inspect
import logging
import math
import re
from dataclasses import fields
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from fa_bench.errors import ConfigError

log = logging.getLogger(__name__)

# keys of the root config that are not groups (conf/config.yaml), with what they hold
DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
ENGINES = ("autograd", "spiking")
# settings run.py passes to a builder itself: a config value for them would be ignored or collide
RUN_SETS = {"rule": ("seed",), "spiking": ("data", "writer", "seed", "device", "progress", "trace_path")}
MODEL_EXTRA = ("name", "init", "init_scale", "bias_init_scale", "bias_init_value")  # build_model's own keywords
METRICS_KEYS = ("every", "batch_size", "neuron_sample")
COLLECT_KEYS = ("max_points", "metrics")
DATA_KEYS = ("root",)
NOISE_KEYS = ("activations",)  # fa_bench.noise; dataset.input_noise is checked with the dataset
NOT_SET = object()


# --- small helpers ---------------------------------------------------------------------------------
def _fail(key: str, value, valid: str):
    raise ConfigError(f"{key}={value!r} is not valid: {valid}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int(key, v, lo=None, null=False, hi=None):
    if v is None and null:
        return
    ok = _is_int(v) and (lo is None or v >= lo) and (hi is None or v <= hi)
    if not ok:
        rng = f" >= {lo}" if lo is not None else ""
        rng += f" and <= {hi}" if hi is not None else ""
        _fail(key, v, f"must be an integer{rng}" + (" or null" if null else ""))


def _num(key, v, lo=None, strict=False, hi=None, hi_strict=False, null=False):
    if v is None and null:
        return
    ok = _is_num(v)
    if ok and lo is not None:
        ok = v > lo if strict else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_strict else v <= hi
    if not ok:
        parts = []
        if lo is not None:
            parts.append(f"{'>' if strict else '>='} {lo}")
        if hi is not None:
            parts.append(f"{'<' if hi_strict else '<='} {hi}")
        _fail(key, v, "must be a number" + (" " + " and ".join(parts) if parts else "") + (" or null" if null else ""))


def _bool(key, v):
    if not isinstance(v, bool):
        _fail(key, v, "must be true or false")


def _choice(key, v, valid, null=False):
    if v is None and null:
        return
    if not isinstance(v, str) or v not in valid:
        _fail(key, v, "valid choices: " + ", ".join(map(str, valid)) + (", or null" if null else ""))


def _by_default(key, v, default):
    """The type a builder's default implies: bool, a number, a string, or a list (None: anything)."""
    if default is inspect.Parameter.empty or default is None or v is None:
        return
    if isinstance(default, bool):
        _bool(key, v)
    elif isinstance(default, (int, float)):
        if not _is_num(v):
            _fail(key, v, f"must be a number (default {default!r})")
    elif isinstance(default, str):
        if not isinstance(v, str):
            _fail(key, v, f"must be a string (default {default!r})")
    elif isinstance(default, (list, tuple)):
        if not isinstance(v, (list, tuple)):
            _fail(key, v, f"must be a list (default {list(default)!r})")


def _unknown(group: str, node: dict, valid, how: str = ""):
    unknown = [k for k in node if k not in valid]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"unknown setting '{group}.{k}' ({group}.{k}={node[k]!r}{how}); valid settings of {group}: "
                          f"{', '.join(sorted(valid))}")


def _params(fn) -> dict | None:
    """{name: default} of a builder's keyword parameters; None when it takes **kwargs (anything goes)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return {n: p.default for n, p in params.items() if p.kind is not p.VAR_POSITIONAL}


@functools.cache
def _file_keys(conf: str) -> tuple[frozenset, frozenset]:
    """Top-level keys of conf/config.yaml, and those the global-package files (experiment/, cell/)
    add: what a composed config may hold at its root."""
    import yaml

    from fa_bench.config import load_yaml

    root = Path(conf)
    base = set(load_yaml((root / "config.yaml").read_text()) or {}) - {"defaults", "hydra"}
    added = set()
    for group in ("experiment", "cell"):
        for path in sorted((root / group).glob("*.yaml")):
            text = path.read_text()
            try:
                data = load_yaml(text) or {}
            except yaml.YAMLError:
                continue  # reported by check_experiment_yaml when it is used
            head = "\n".join(text.splitlines()[:3])
            if isinstance(data, dict) and "@package _global_" in head:
                added |= set(data) - {"defaults", "hydra"}
    return frozenset(base), frozenset(added - base)


def _extra_dirs() -> list[str]:
    """Config folders Hydra searched besides conf/ (--config-dir, hydra.searchpath), when inside fa-run."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return []
        out = []
        for src in HydraConfig.get().runtime.config_sources:
            if src.get("schema") == "file" and src.get("provider") not in ("hydra",):
                out.append(str(src.path))
        return out
    except Exception:  # outside a Hydra app, or an older runtime layout
        return []


def _override_of(key: str) -> str:
    """How ``key`` came in on the command line (``+foo=1``), when Hydra knows; '' otherwise."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return ""
        for o in HydraConfig.get().overrides.task:
            if o.lstrip("+~").split("=", 1)[0] == key:
                return f", from {o}"
    except Exception:  # no Hydra runtime to ask (a plain compose): the message only loses this hint
        return ""
    return ""


def _container(node):
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


# --- the checks ------------------------------------------------------------------------------------
def validate(cfg: DictConfig) -> None:
    """Raise fa_bench.errors.ConfigError for a config that cannot run, naming the key, the value and
    what is valid. Checks the config with the chosen rule's per_rule settings merged in."""
    from fa_bench.config import conf_dir
    from fa_bench.rules import RULES

    try:
        plain = {k: _container(cfg[k]) for k in cfg if k != "hydra"}
    except Exception as err:  # an interpolation that cannot resolve (${oc.env:...}, a missing key)
        raise ConfigError(f"the config does not resolve: {err}") from None
    base, added = _file_keys(conf_dir())
    valid_top = set(base) | set(added) | {"hydra"}
    for d in _extra_dirs():
        if Path(d, "config.yaml").is_file() or Path(d, "experiment").is_dir():
            try:
                b, a = _file_keys(d) if Path(d, "config.yaml").is_file() else (frozenset(), _global_keys(d))
            except Exception as err:  # read as empty, its keys would be reported "unknown" with no reason
                raise ConfigError(f"the config dir {d} (hydra.searchpath) cannot be read: {err}") from None
            valid_top |= set(b) | set(a)
    groups = ("dataset", "model", "rule", "optimizer", "trainer", "metrics")
    valid_top |= set(groups)
    for key in plain:
        if key not in valid_top:
            raise ConfigError(f"unknown key '{key}' ({key}={plain[key]!r}{_override_of(key)}); valid top-level "
                              f"keys: {', '.join(sorted(valid_top - {'hydra'}))}")
    for g in groups:
        if not isinstance(plain.get(g), dict):
            _fail(g, plain.get(g), f"must be a config group (pick one with {g}=<option>)")
        if g in ("dataset", "model", "rule", "optimizer") and not isinstance(plain[g].get("name"), str):
            _fail(f"{g}.name", plain[g].get("name"), "must be the name of a registered option")

    # per_rule: {rule: {subtree}}, then validate what the chosen rule will run with
    per_rule = plain.get("per_rule") or {}
    if not isinstance(per_rule, dict):
        _fail("per_rule", per_rule, "must be a mapping {rule_name: {settings}}")
    for name, sub in per_rule.items():
        if name not in RULES:
            raise ConfigError(f"unknown rule 'per_rule.{name}'; valid rules: {', '.join(sorted(RULES))}")
        if not isinstance(sub, dict):
            _fail(f"per_rule.{name}", sub, "must be a mapping of settings to merge for that rule")
        for k in sub:
            if k not in valid_top - {"per_rule", "hydra"}:
                raise ConfigError(f"unknown key 'per_rule.{name}.{k}' (per_rule.{name}.{k}={sub[k]!r}); valid "
                                  f"top-level keys: {', '.join(sorted(valid_top - {'hydra', 'per_rule'}))}")
    rule_name = plain["rule"]["name"]
    _choice("rule.name", rule_name, sorted(RULES))
    from_rule = per_rule.get(rule_name)
    if from_rule:
        merged = OmegaConf.merge(OmegaConf.create(plain), OmegaConf.create(from_rule))
        plain = OmegaConf.to_container(merged, resolve=True)
    _check_all(plain, _Namer(rule_name, from_rule or {}))


def _global_keys(d: str) -> frozenset:
    import yaml

    keys = set()
    for group in ("experiment", "cell"):
        for path in Path(d, group).glob("*.yaml"):
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError:
                continue
            if isinstance(data, dict):
                keys |= set(data) - {"defaults", "hydra"}
    return frozenset(keys)


class _Namer:
    """'optimizer.lr', or 'per_rule.fa.optimizer.lr' when the chosen rule's per_rule set it."""

    def __init__(self, rule: str, sub: dict):
        self.rule, self.sub = rule, sub

    def __call__(self, *path) -> str:
        node = self.sub
        for p in path:
            if not isinstance(node, dict) or p not in node:
                return ".".join(path)
            node = node[p]
        return f"per_rule.{self.rule}." + ".".join(path)


def validate_resolved(cfg: DictConfig) -> None:
    """The same checks on a config whose per_rule settings are already merged (resolve_config's
    result). validate already checks the merged config; this is for callers that merge themselves."""
    try:
        plain = {k: _container(cfg[k]) for k in cfg if k != "hydra"}
    except Exception as err:
        raise ConfigError(f"the config does not resolve: {err}") from None
    plain["per_rule"] = {}
    _check_all(plain, _Namer(plain["rule"]["name"], {}))


def _check_all(c: dict, name: _Namer):
    _check_top(c, name)
    _check_optimizer(c["optimizer"], name)
    _check_dataset(c["dataset"], name)
    _check_trainer(c["trainer"], name)
    _check_metrics(c["metrics"], name)
    if c.get("engine", "autograd") == "spiking":
        _check_spiking(c.get("spiking") or {}, name)
    _check_rule(c["rule"], name, "rule")
    for i, phase in enumerate(c["trainer"].get("phases") or []):
        if isinstance(phase, dict) and isinstance(phase.get("rule"), dict):
            _check_rule(phase["rule"], name, f"trainer.phases[{i}].rule")
    model = _check_model(c["model"], name)
    if model is not None and c.get("engine", "autograd") == "autograd":
        _check_rule_fits_model(c, model, name)


def _check_top(c: dict, name):
    seed = c.get("seed")
    if not _is_int(seed):
        _fail(name("seed"), seed, "must be an integer")
    seeds = c.get("seeds")
    if seeds is not None:
        if not (isinstance(seeds, list) and seeds and all(_is_int(s) for s in seeds)
                and len(set(seeds)) == len(seeds)):
            _fail(name("seeds"), seeds, "must be null or a non-empty list of distinct integers")
    _choice(name("engine"), c.get("engine", "autograd"), ENGINES)
    device = c.get("device", "auto")
    if not (isinstance(device, str) and DEVICE_RE.match(device)):
        _fail(name("device"), device, "must be auto, cpu, cuda or cuda:<index>")
    _int(name("threads"), c.get("threads"), lo=1, null=True)
    sparsity = c.get("sparsity")
    if sparsity is not None and not (_is_num(sparsity) and 0 <= sparsity < 1):
        _fail(name("sparsity"), sparsity, "must be the fraction of W and B removed, in [0, 1)")
    _int(name("save_activations"), c.get("save_activations"), lo=1, null=True)
    if "rerun" in c:
        _bool(name("rerun"), c["rerun"])
    from fa_bench.losses import LOSSES

    _choice(name("loss"), c.get("loss"), sorted(LOSSES))
    exp = c.get("experiment_name")
    if exp is not None and not (isinstance(exp, str) and exp and "/" not in exp):
        _fail(name("experiment_name"), exp, "must be null or a name (a string without '/')")
    if "results_dir" in c and not (isinstance(c["results_dir"], str) and c["results_dir"]):
        _fail(name("results_dir"), c["results_dir"], "must be a folder path")
    collect = c.get("collect")
    if collect is not None:
        if not isinstance(collect, dict):
            _fail(name("collect"), collect, f"must be a mapping with keys {', '.join(COLLECT_KEYS)}")
        _unknown("collect", collect, COLLECT_KEYS)
        _int(name("collect", "max_points"), collect.get("max_points", 400), lo=1)
        m = collect.get("metrics")
        if m is not None and not (isinstance(m, list) and all(isinstance(x, str) for x in m)):
            _fail(name("collect", "metrics"), m, "must be null (all) or a list of metric names")
    data = c.get("data")
    if data is not None:
        if not isinstance(data, dict):
            _fail(name("data"), data, "must be a mapping {root: <folder>}")
        _unknown("data", data, DATA_KEYS)
        if not isinstance(data.get("root"), str):
            _fail(name("data", "root"), data.get("root"), "must be a folder path")
    noise = c.get("noise")
    if noise is not None:
        if not isinstance(noise, dict):
            _fail(name("noise"), noise, f"must be a mapping with keys {', '.join(NOISE_KEYS)}")
        _unknown("noise", noise, NOISE_KEYS)
        _num(name("noise", "activations"), noise.get("activations"), lo=0, null=True)


def _check_optimizer(o: dict, name):
    from fa_bench.optim import OPTIMIZERS

    _choice(name("optimizer", "name"), o["name"], sorted(OPTIMIZERS))
    params = _params(OPTIMIZERS[o["name"]]) or {}
    params.pop("params", None)
    _unknown("optimizer", o, set(params) | {"name"})
    _num(name("optimizer", "lr"), o.get("lr"), lo=0, strict=True)
    for k in ("momentum", "weight_decay", "dampening"):
        if k in o:
            _num(name("optimizer", k), o[k], lo=0)
    if "alpha" in o:
        _num(name("optimizer", "alpha"), o["alpha"], lo=0, hi=1)
    if "eps" in o:
        _num(name("optimizer", "eps"), o["eps"], lo=0, strict=True)
    if "betas" in o:
        b = o["betas"]
        if not (isinstance(b, (list, tuple)) and len(b) == 2 and all(_is_num(x) and 0 <= x < 1 for x in b)):
            _fail(name("optimizer", "betas"), b, "must be two numbers in [0, 1)")
    for k, v in o.items():
        if k not in ("name", "lr", "betas"):
            _by_default(name("optimizer", k), v, params.get(k))


# dataset keys with a range of their own; every other key gets the type of its builder's default
_DATA_COUNTS = ("n_train", "n_test")
_DATA_POSITIVE_INT = ("n_in", "n_out", "size")
_DATA_POSITIVE_NUM = ("teacher_scale", "weight_scale", "q_scale", "x_range")


def _check_dataset(d: dict, name):
    from fa_bench.data import DATASETS

    _choice(name("dataset", "name"), d["name"], sorted(DATASETS))
    params = _params(DATASETS[d["name"]])
    if params is not None:
        _unknown("dataset", d, set(params) | {"name", "loss", "input_noise"})
    params = params or {}
    for k in _DATA_COUNTS:
        if k in d:
            _check_count(name("dataset", k), d[k], bounded=params.get(k, NOT_SET) is None)
    for k in _DATA_POSITIVE_INT:
        if k in d:
            _int(name("dataset", k), d[k], lo=1)
    for k in _DATA_POSITIVE_NUM:
        if k in d:
            _num(name("dataset", k), d[k], lo=0, strict=True)
    if "zca_epsilon" in d:
        _num(name("dataset", "zca_epsilon"), d["zca_epsilon"], lo=0)
    if "whiten" in d:
        _choice(name("dataset", "whiten"), d["whiten"], ("zca", "gcn_zca"), null=True)
    _num(name("dataset", "input_noise"), d.get("input_noise"), lo=0, null=True)
    if "target" in d:
        from fa_bench.data.vision import TARGETS

        _choice(name("dataset", "target"), d["target"], TARGETS)
    if "num_workers" in d:
        _int(name("dataset", "num_workers"), d["num_workers"], lo=0)
    if "n_classes" in d:
        _int(name("dataset", "n_classes"), d["n_classes"], lo=1, null=True)
    for k in ("seed", "teacher_seed"):
        if k in d:
            _int(name("dataset", k), d[k], null=k == "teacher_seed")
    if "sizes" in d:
        s = d["sizes"]
        if not (isinstance(s, list) and len(s) >= 2 and all(_is_int(x) and x >= 1 for x in s)):
            _fail(name("dataset", "sizes"), s, "must be a list of at least 2 layer sizes, integers >= 1")
    for k, v in d.items():
        if k not in ("name", "loss", *_DATA_COUNTS):
            _by_default(name("dataset", k), v, params.get(k))


def _check_count(key, v, bounded: bool):
    """n_train / n_test, as the data layer checks them (fa_bench.data.errors.check_count). A data set
    whose default is null (the whole split: MNIST, CIFAR, ...) learns its split sizes only when it
    loads, so there a count < 1 or above the split is left to the loader, whose message names the
    split's size; here only what is wrong whatever the split (not a whole number) is refused."""
    from fa_bench.data.errors import DataConfigError, check_count

    if bounded and _is_int(v):
        return
    try:
        check_count(key, v)
    except DataConfigError as err:
        raise ConfigError(str(err)) from None
    if isinstance(v, float):  # check_count takes 3.0 as 3; a config that says 3.0 means something else
        _fail(key, v, "must be a whole number of examples (an integer >= 1), or null for the whole split")


def _check_trainer(t: dict, name):
    from fa_bench.trainer import TrainConfig

    valid = {f.name: f.default for f in fields(TrainConfig) if not f.name.startswith("metrics_")}
    _unknown("trainer", t, valid)
    for k in ("epochs", "batch_size", "eval_every", "eval_batch_size"):
        if k in t:
            _int(name("trainer", k), t[k], lo=1)
    if "max_steps" in t:
        _int(name("trainer", "max_steps"), t["max_steps"], lo=1, null=True)
    for k in ("shuffle", "progress"):
        if k in t:
            _bool(name("trainer", k), t[k])
    if "divergence_loss" in t:
        _num(name("trainer", "divergence_loss"), t["divergence_loss"], lo=0, strict=True)
    if "stop_train_error" in t:
        _num(name("trainer", "stop_train_error"), t["stop_train_error"], lo=0, hi=100, null=True)
    phases = t.get("phases")
    if phases is not None:
        if not isinstance(phases, list):
            _fail(name("trainer", "phases"), phases, "must be null or a list of {steps: N, freeze: [layer, ...]}")
        for i, p in enumerate(phases):
            if not isinstance(p, dict):
                _fail(name("trainer", "phases") + f"[{i}]", p, "must be {steps: N, freeze: [layer, ...], rule: {...}}")
            unknown = set(p) - {"steps", "freeze", "rule"}
            if unknown:
                k = sorted(unknown)[0]
                raise ConfigError(f"unknown key 'trainer.phases[{i}].{k}' ({k}={p[k]!r}); valid keys of a phase: "
                                  f"steps, freeze, rule")
            _int(name("trainer", "phases") + f"[{i}].steps", p.get("steps"), lo=1)
            fr = p.get("freeze", [])
            if not (isinstance(fr, list) and all(_is_int(x) or isinstance(x, str) for x in fr)):
                _fail(name("trainer", "phases") + f"[{i}].freeze", fr, "must be a list of layer names or indices")
    if t.get("checkpoint_every") is not None:
        try:
            from fa_bench.checkpoint import parse_every
        except ImportError:  # a checkout without checkpoints: TrainConfig refuses the key itself
            parse_every = None
        if parse_every is not None:
            try:
                parse_every(t["checkpoint_every"])
            except (TypeError, ValueError) as err:
                raise ConfigError(str(err) if "checkpoint_every" in str(err) else
                                  f"trainer.checkpoint_every={t['checkpoint_every']!r} is not valid: {err}") from None
    for k, v in t.items():
        _by_default(name("trainer", k), v, valid.get(k))
    adv = t.get("adversarial")
    if adv is not None:
        from fa_bench.adversarial import FGSM

        try:
            FGSM.from_config(adv)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"trainer.adversarial={adv!r} is not valid: {err}") from None


def _check_metrics(m: dict, name):
    _unknown("metrics", m, METRICS_KEYS)
    _int(name("metrics", "every"), m.get("every", 100), lo=0)
    _int(name("metrics", "batch_size"), m.get("batch_size"), lo=1, null=True)
    _int(name("metrics", "neuron_sample"), m.get("neuron_sample", 0), lo=0)


def _check_spiking(s: dict, name):
    from fa_bench.spiking import train_spiking

    if not isinstance(s, dict):
        _fail(name("spiking"), s, "must be a mapping of train_spiking settings")
    params = _params(train_spiking) or {}
    for k in RUN_SETS["spiking"]:
        if k in s:
            raise ConfigError(f"spiking.{k}={s[k]!r} cannot be set: fa-run passes it itself"
                              + (" (use the top-level seed)" if k == "seed" else "")
                              + (" (use the top-level device)" if k == "device" else "")
                              + (" (use trainer.progress)" if k == "progress" else ""))
    valid = set(params) - set(RUN_SETS["spiking"])
    _unknown("spiking", s, valid)
    for k in ("streams", "epochs", "steps_per_image", "test_steps", "eval_every", "n_classes"):
        if k in s:
            _int(name("spiking", k), s[k], lo=1)
    if "eval_n" in s:
        _int(name("spiking", "eval_n"), s["eval_n"], lo=1, null=True)
    if "lr" in s:
        _num(name("spiking", "lr"), s["lr"], lo=0, strict=True)
    for k in ("weight_decay", "w_scale", "b_scale"):
        if k in s:
            _num(name("spiking", k), s[k], lo=0)
    if "tau" in s:
        _num(name("spiking", "tau"), s["tau"], lo=0, hi=1)
    for k, v in s.items():
        _by_default(name("spiking", k), v, params.get(k))


def rule_options(rule_name: str) -> dict:
    """{option: default} a rule accepts (merged down its class hierarchy, as Rule.__init__ does)."""
    from fa_bench.rules import RULES

    valid = {}
    for klass in reversed(RULES[rule_name].__mro__):
        valid.update(klass.__dict__.get("options", {}) or {})
    return valid


def _check_rule(r: dict, name, where: str):
    from fa_bench.rules import RULES
    from fa_bench.rules.base import FEEDBACK_INITS

    if not isinstance(r.get("name"), str) or r["name"] not in RULES:
        _fail(f"{where}.name", r.get("name"), "valid rules: " + ", ".join(sorted(RULES)))
    opts = rule_options(r["name"])
    path = where.split(".") if where == "rule" else None

    def key(k):
        return name(*path, k) if path else f"{where}.{k}"

    for k in RUN_SETS["rule"]:
        if k in r:
            raise ConfigError(f"{key(k)}={r[k]!r} cannot be set: the rule's seed is the top-level seed (seed=...)")
    valid = (set(opts) - set(RUN_SETS["rule"])) | {"name"}
    unknown = [k for k in r if k not in valid]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"unknown option '{where}.{k}' ({where}.{k}={r[k]!r}{_override_of(f'{where}.{k}')}) of "
                          f"rule {r['name']!r}; valid options: {', '.join(sorted(valid))}")
    for k, v in r.items():
        if k == "name":
            continue
        if k == "init":
            _choice(key(k), v, FEEDBACK_INITS)
        elif k == "scale":
            _num(key(k), v, lo=0, strict=True, null=True)
        elif k in ("sigma",) or k.startswith("lr"):
            _num(key(k), v, lo=0, strict=True)
        elif k in ("decay",) or k.endswith("scale") or k.endswith("decay"):
            _num(key(k), v, lo=0)
        elif k == "direct":
            if v is not None and not (isinstance(v, list) and v and all(_is_int(x) or isinstance(x, str) for x in v)):
                _fail(key(k), v, "must be null (every layer) or a non-empty list of converted layer names or indices")
        elif k == "output_layer":
            if v is not None and not isinstance(v, str):
                _fail(key(k), v, "must be null (the last converted layer) or a converted layer's name")
        else:
            _by_default(key(k), v, opts.get(k))


def _check_model(m: dict, name):
    """Keys and types of the model; returns the model built on the meta device (no memory, no draws),
    or None when it cannot be built here (run.py reports that)."""
    from fa_bench.models import MODELS
    from fa_bench.models.registry import ACTIVATIONS, WEIGHT_INITS, bias_value_problem, check_bias_init

    _choice(name("model", "name"), m["name"], sorted(MODELS))
    params = _params(MODELS[m["name"]])
    if params is not None:
        _unknown("model", m, set(params) | set(MODEL_EXTRA))
    params = params or {}
    if "init" in m:
        _choice(name("model", "init"), m["init"], WEIGHT_INITS)
    if "init_scale" in m:
        _num(name("model", "init_scale"), m["init_scale"], lo=0, strict=True, null=True)
    if m.get("init") == "uniform" and m.get("init_scale") is None:
        _fail(name("model", "init_scale"), None, "init=uniform draws U[-init_scale, init_scale]: set a number > 0")
    if "bias_init_scale" in m:
        try:
            check_bias_init(m["bias_init_scale"])
        except ValueError:
            _fail(name("model", "bias_init_scale"), m["bias_init_scale"],
                  "must be null (zero biases), a number >= 0 (U[-s, s]) or 'fan_in'")
    problem = bias_value_problem(m.get("bias_init_value"), m.get("bias_init_scale"), m.get("init", "default"))
    if problem:
        _fail(name("model", "bias_init_value"), m["bias_init_value"], problem)
    for k in ("dropout", "input_dropout"):
        if k in m:
            _num(name("model", k), m[k], lo=0, hi=1, hi_strict=True)
    for k in ("hidden_activation", "output_activation"):
        if k in m:
            _choice(name("model", k), m[k], list(ACTIVATIONS))
    if "sizes" in m:
        s = m["sizes"]
        if not (isinstance(s, list) and len(s) >= 2 and all(_is_int(x) and x >= 1 for x in s)):
            _fail(name("model", "sizes"), s, "must be a list [n_in, ..., n_out] of integers >= 1")
    for k in ("in_channels", "n_classes", "image_size", "width"):
        if k in m and m[k] is not None:
            _int(name("model", k), m[k], lo=1)
    if "depth" in m and m["depth"] is not None:
        _int(name("model", "depth"), m["depth"], lo=0)
    for k, v in m.items():
        if k not in MODEL_EXTRA:
            _by_default(name("model", k), v, params.get(k))
    import torch

    kwargs = {k: v for k, v in m.items() if k not in MODEL_EXTRA}
    try:
        with torch.device("meta"):
            return MODELS[m["name"]](**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"model {m['name']!r} cannot be built from {kwargs}: {err}") from None
    except Exception as err:  # meta tensors lack an op the builder uses: the real build checks this config
        log.warning("model %r could not be built on the meta device (%s: %s): whether the rule fits it is "
                    "checked when it is built", m["name"], type(err).__name__, err)
        return None


def _check_rule_fits_model(c: dict, model, name):
    """convert's own refusals (a rule undefined on convolutions, an output_layer that is not a layer,
    ...), seen on the meta-device model before anything is built for real."""
    import importlib

    convert_mod = importlib.import_module("fa_bench.convert")
    from fa_bench.rules import get_rule

    r = c["rule"]
    opts = {k: v for k, v in r.items() if k != "name"}
    try:
        rule = get_rule(r["name"], **opts, seed=c["seed"])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"rule={r['name']} with {opts}: {err}") from None
    modules = dict(model.named_modules())
    names = [n for n, mod in modules.items() if convert_mod._convertible(mod)]
    try:
        convert_mod._refuse(model, rule, names, modules, example_input=True)  # run.py always passes one
    except ValueError as err:
        raise ConfigError(f"rule={r['name']} cannot train model={c['model']['name']}: {err}") from None


# --- YAML files named on the command line ----------------------------------------------------------
def _argv_config_dirs(argv) -> list[str]:
    dirs = []
    args = list(argv)
    for i, a in enumerate(args):
        if a in ("--config-dir", "-cd") and i + 1 < len(args):
            dirs.append(args[i + 1])
        elif a.startswith("--config-dir="):
            dirs.append(a.split("=", 1)[1])
        elif a.startswith("hydra.searchpath="):
            for p in re.findall(r"(?:file://)?([^,\[\]'\"]+)", a.split("=", 1)[1]):
                if not p.startswith("pkg://"):
                    dirs.append(p.replace("file://", ""))
    return dirs


def check_experiment_yaml(argv) -> None:
    """Before Hydra composes: every config file a ``group=option`` override on the command line names
    (experiment=<name>, cell=..., model=...; comma-separated sweeps too), and the root config, must be
    YAML that parses. A syntax error raises ConfigError '<file>:<line>:<column>: <problem>'."""
    import yaml

    from fa_bench.config import conf_dir

    dirs = [*_argv_config_dirs(argv), conf_dir()]
    paths = [Path(d) / "config.yaml" for d in dirs]
    for a in argv:
        if a.startswith("-") or "=" not in a:
            continue
        key, value = a.split("=", 1)
        key = key.lstrip("+~")
        if not key or "." in key or key == "hydra" or key.startswith("hydra/"):
            continue
        m = re.fullmatch(r"\s*(?:choice\()?(.*?)\)?\s*", value)
        for option in (m.group(1) if m else value).split(","):
            option = option.strip().strip("'\"")
            if not option or not re.fullmatch(r"[\w./-]+", option):
                continue
            paths += [Path(d) / key / f"{option}.yaml" for d in dirs]
    seen = set()
    for path in paths:
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        try:
            yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
            where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
            problem = getattr(err, "problem", None) or str(err).replace("\n", " ")
            context, cmark = getattr(err, "context", None), getattr(err, "context_mark", None)
            if context:
                at = f" at line {cmark.line + 1}, column {cmark.column + 1}" if cmark else ""
                problem += f" ({context}{at})"
            raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
