"""Bad input stops before training with one message that names the key, the value and what is valid,
and fa-run prints it without a traceback (fa_bench.validation, through fa_bench.run.resolve_config).

The fuzz table covers every config group (dataset, model, rule, optimizer, trainer, metrics), the
top-level keys (seed, seeds, threads, device, sparsity, engine, loss, unknown +keys, ...), experiment
files (per_rule, spiking) and YAML syntax errors in an experiment file.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fa_bench.config import compose_config
from fa_bench.errors import ConfigError
from fa_bench.run import resolve_config, run
from fa_bench.validation import check_experiment_yaml

CONF = Path(__file__).resolve().parents[1] / "conf"
TINY = ["trainer.max_steps=1", "device=cpu", "trainer.progress=false"]

# (overrides, substrings the message must contain: the key and the value as the message spells them)
BAD = [
    # dataset
    (["dataset=linear_teacher", "dataset.n_train=0"], ["dataset.n_train=0", "integer >= 1"]),
    (["dataset=teacher_net", "dataset.n_test=-5"], ["dataset.n_test=-5", "integer >= 1"]),
    (["dataset.n_train=1.5"], ["dataset.n_train=1.5"]),
    (["dataset.n_train=abc"], ["dataset.n_train='abc'", "whole number"]),
    (["dataset.n_test=true"], ["dataset.n_test=True", "whole number"]),
    (["+dataset.foo=1"], ["dataset.foo", "=1", "n_train"]),
    (["dataset=linear_teacher", "dataset.n_in=0"], ["dataset.n_in=0", ">= 1"]),
    (["dataset=linear_teacher", "dataset.teacher_scale=-1"], ["dataset.teacher_scale=-1", "> 0"]),
    (["dataset.download=maybe"], ["dataset.download='maybe'", "true or false"]),
    (["dataset=cifar10", "dataset.whiten=pca"], ["dataset.whiten='pca'", "zca"]),
    (["dataset.name=nope"], ["dataset.name='nope'", "mnist"]),
    # model
    (["model=linear_30_20_10", "model.init=gaussian"], ["model.init='gaussian'", "fan_in_uniform"]),
    (["model=linear_30_20_10", "model.init_scale=-0.1"], ["model.init_scale=-0.1", "> 0"]),
    (["+model.dropout=1.5"], ["model.dropout=1.5", "< 1"]),
    (["model.sizes=[784,0,10]"], ["model.sizes=[784, 0, 10]", ">= 1"]),
    (["model.hidden_activation=softmax"], ["model.hidden_activation='softmax'", "tanh"]),
    (["+model.foo=1"], ["model.foo", "=1", "sizes"]),
    (["+model.bias_init_scale=-1"], ["model.bias_init_scale=-1", "fan_in"]),
    (["+model.bias_init_value=abc"], ["model.bias_init_value='abc'", "a number"]),
    (["+model.bias_init_value=0.1", "+model.bias_init_scale=fan_in"], ["model.bias_init_value=0.1", "bias_init_scale=null"]),
    (["+model.bias_init_value=0.1"], ["model.bias_init_value=0.1", "init other than 'default'"]),
    # rule
    (["rule=node_perturbation", "rule.sigma=-1"], ["rule.sigma=-1", "> 0"]),
    (["rule=node_perturbation", "rule.sigma=0"], ["rule.sigma=0", "> 0"]),
    (["rule=fa", "rule.scale=-0.5"], ["rule.scale=-0.5", "> 0"]),
    (["rule=fa", "rule.init=gauss"], ["rule.init='gauss'", "kaiming_uniform"]),
    (["rule=matched", "rule.decay=-1"], ["rule.decay=-1", ">= 0"]),
    (["rule=fa", "+rule.bogus=1"], ["rule.bogus", "=1", "scale"]),
    (["rule=ifa", "model=moskovitz_mnist"], ["rule=ifa", "model=moskovitz_mnist", "convolutions", "use dfa or fa"]),
    (["rule=dfa", "rule.direct=5"], ["rule.direct=5", "list"]),
    (["rule=fa", "+rule.seed=3"], ["rule.seed=3", "top-level seed"]),
    (["rule=fa", "+rule.output_layer=nope"], ["output_layer 'nope'", "converted layers"]),
    (["rule.name=nope"], ["rule.name='nope'", "dfa"]),
    # optimizer
    (["optimizer.lr=abc"], ["optimizer.lr='abc'", "number > 0"]),
    (["optimizer.lr=0"], ["optimizer.lr=0", "> 0"]),
    (["optimizer.lr=-0.01"], ["optimizer.lr=-0.01", "> 0"]),
    (["optimizer.momentum=-0.9"], ["optimizer.momentum=-0.9", ">= 0"]),
    (["optimizer.weight_decay=-1"], ["optimizer.weight_decay=-1", ">= 0"]),
    (["optimizer=adam", "+optimizer.betas=[0.9,1.5]"], ["optimizer.betas=[0.9, 1.5]", "[0, 1)"]),
    (["+optimizer.foo=1"], ["optimizer.foo", "=1", "momentum"]),
    (["+optimizer.nesterov=yes"], ["optimizer.nesterov='yes'", "true or false"]),
    (["optimizer.name=lbfgs"], ["optimizer.name='lbfgs'", "sgd"]),
    # trainer
    (["trainer.epochs=0"], ["trainer.epochs=0", ">= 1"]),
    (["trainer.batch_size=-1"], ["trainer.batch_size=-1", ">= 1"]),
    (["trainer.batch_size=2.5"], ["trainer.batch_size=2.5", "integer"]),
    (["trainer.max_steps=0"], ["trainer.max_steps=0", "or null"]),
    (["trainer.eval_every=abc"], ["trainer.eval_every='abc'", "integer"]),
    (["trainer.shuffle=3"], ["trainer.shuffle=3", "true or false"]),
    (["trainer.stop_train_error=-1"], ["trainer.stop_train_error=-1", ">= 0"]),
    (["trainer.divergence_loss=-1"], ["trainer.divergence_loss=-1", "> 0"]),
    (["+trainer.foo=1"], ["trainer.foo", "=1", "epochs"]),
    (["trainer.phases=[{steps:0}]"], ["trainer.phases[0].steps=0", ">= 1"]),
    (["trainer.adversarial={epsilon:-1}"], ["trainer.adversarial", "epsilon"]),
    # metrics
    (["metrics.every=-1"], ["metrics.every=-1", ">= 0"]),
    (["metrics.every=abc"], ["metrics.every='abc'", "integer"]),
    (["metrics.batch_size=0"], ["metrics.batch_size=0", ">= 1"]),
    (["metrics.neuron_sample=-2"], ["metrics.neuron_sample=-2", ">= 0"]),
    (["+metrics.foo=1"], ["metrics.foo", "=1", "neuron_sample"]),
    # top-level keys
    (["seed=1.5"], ["seed=1.5", "integer"]),
    (["seed=abc"], ["seed='abc'", "integer"]),
    (["seed=true"], ["seed=True", "integer"]),
    (["seeds=[1,1]"], ["seeds=[1, 1]", "distinct integers"]),
    (["seeds=[0,1.5]"], ["seeds=[0, 1.5]", "distinct integers"]),
    (["threads=-1"], ["threads=-1", ">= 1"]),
    (["threads=0"], ["threads=0", ">= 1"]),
    (["threads=two"], ["threads='two'", "integer"]),
    (["device=gpu"], ["device='gpu'", "auto, cpu, cuda"]),
    (["device=cuda:x"], ["device='cuda:x'", "cuda:<index>"]),
    (["sparsity=1.0"], ["sparsity=1.0", "[0, 1)"]),
    (["sparsity=-0.1"], ["sparsity=-0.1", "[0, 1)"]),
    (["engine=jax"], ["engine='jax'", "autograd, spiking"]),
    (["loss=l1"], ["loss='l1'", "cross_entropy"]),
    (["save_activations=0"], ["save_activations=0", ">= 1"]),
    (["rerun=maybe"], ["rerun='maybe'", "true or false"]),
    (["trainer.checkpoint_every=-3"], ["trainer.checkpoint_every=-3", "10min"]),
    (["collect.max_points=0"], ["collect.max_points=0", ">= 1"]),
    (["+foo=1"], ["unknown key 'foo'", "foo=1", "valid top-level keys", "seed"]),
    (["+data.foo=1"], ["data.foo", "=1", "root"]),
    # experiment files
    (["experiment=lillicrap_fig2", "rule=fa", "per_rule.fa.optimizer.lr=-1"], ["per_rule.fa.optimizer.lr=-1"]),
    (["experiment=lillicrap_fig2", "+per_rule.nope.seed=1"], ["per_rule.nope", "valid rules"]),
    (["experiment=lillicrap_fig2", "+per_rule.fa.foo=1"], ["per_rule.fa.foo", "valid top-level keys"]),
    (["experiment=lillicrap_fig4", "spiking.streams=0"], ["spiking.streams=0", ">= 1"]),
    (["experiment=lillicrap_fig4", "+spiking.seed=1"], ["spiking.seed=1", "top-level seed"]),
    (["experiment=nokland_ifa", "model=moskovitz_mnist"], ["rule=ifa", "convolutions"]),
    (["experiment=lillicrap_sparse", "sparsity=2"], ["sparsity=2", "[0, 1)"]),
]


@pytest.mark.parametrize("overrides,expected", BAD, ids=[" ".join(o) for o, _ in BAD])
def test_bad_override_stops_with_one_message_naming_key_and_value(overrides, expected):
    with pytest.raises(ConfigError) as err:
        resolve_config(compose_config(overrides))
    message = str(err.value)
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"
    assert "\n" not in message


def test_fuzz_table_covers_every_group():
    assert len(BAD) >= 40
    keys = {o.lstrip("+").split("=", 1)[0].split(".", 1)[0] for overrides, _ in BAD for o in overrides}
    for group in ("dataset", "model", "rule", "optimizer", "trainer", "metrics", "experiment", "seed",
                  "seeds", "threads", "device", "sparsity", "engine", "foo"):
        assert group in keys, group


def _cells(experiment):
    cfg = compose_config([f"experiment={experiment}", "hydra.mode=RUN"], return_hydra_config=True)
    cells = cfg.hydra.sweeper.params.get("cell")
    return [c.strip() for c in str(cells).split(",")] if cells else []


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")))
def test_every_experiment_cell_still_validates(experiment):
    """The negative control: good configs pass. tests/test_runner.py checks each experiment's swept
    rules; this checks each of its swept cells (the table rows and figure curves)."""
    for cell in _cells(experiment) or [None]:
        overrides = [f"experiment={experiment}", "hydra.mode=RUN"] + ([f"cell={cell}"] if cell else [])
        resolve_config(compose_config(overrides))


# --- YAML syntax errors ------------------------------------------------------------------------------
def _broken_experiment(tmp_path):
    (tmp_path / "experiment").mkdir(parents=True)
    (tmp_path / "experiment" / "broken.yaml").write_text(
        "# @package _global_\nexperiment_name: broken\ntrainer:\n  epochs: [1, 2\n")
    return tmp_path


def test_yaml_error_in_experiment_names_file_and_line(tmp_path):
    d = _broken_experiment(tmp_path)
    with pytest.raises(ConfigError) as err:
        check_experiment_yaml(["--config-dir", str(d), "experiment=broken", "seed=1"])
    message = str(err.value)
    assert f"{d / 'experiment' / 'broken.yaml'}:5:1" in message
    assert "line 4, column 11" in message and "YAML syntax error" in message
    check_experiment_yaml(["experiment=lillicrap_fig2", "rule=fa", "--config-dir", str(tmp_path / "none")])


def test_yaml_error_in_a_swept_cell_is_found(tmp_path):
    (tmp_path / "cell").mkdir()
    (tmp_path / "cell" / "bad.yaml").write_text("model:\n  sizes: [1, 2]\n   name: mlp\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:3:"):
        check_experiment_yaml([f"--config-dir={tmp_path}", "-m", "cell=nokland_2x800_tanh,bad"])


# --- through fa-run: one message, no traceback, nothing trained ---------------------------------------
def _fa_run(args, cwd, env=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "fa_bench.cli", *args, *TINY], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _assert_one_message(proc, tmp_path, *parts):
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    assert any(all(p in line for p in parts) for line in out.splitlines()), out
    for metrics in tmp_path.rglob("metrics.csv"):  # a data error comes after the run folder opened: no rows
        assert len(metrics.read_text().splitlines()) <= 1, metrics


@pytest.mark.parametrize("overrides,parts", [
    (["optimizer.lr=abc"], ["optimizer.lr='abc'", "number > 0"]),
    (["dataset.n_train=0"], ["dataset.n_train=0"]),
    (["threads=-1"], ["threads=-1"]),
    (["+foo=1"], ["unknown key 'foo'", "+foo=1"]),
    (["seed=1.5"], ["seed=1.5", "integer"]),
    (["rule=node_perturbation", "rule.sigma=-1"], ["rule.sigma=-1"]),
    (["rule=ifa", "model=moskovitz_mnist"], ["rule=ifa", "convolutions"]),
])
def test_cli_bad_value_prints_one_message_without_traceback(tmp_path, overrides, parts):
    _assert_one_message(_fa_run(overrides, tmp_path), tmp_path, *parts)


def test_a_bad_override_in_a_sweep_is_named_not_the_sweep(tmp_path):
    # Hydra reads hydra.mode from a first composition and swallows its error; a sweep then stopped with
    # "Sweep parameters 'seed=range(2)' requires --multirun". lansdell_fig4 keeps Hydra's basic
    # launcher, which has no n_jobs: the message must name that override
    proc = _fa_run(["experiment=lansdell_fig4", "seed=range(2)", "hydra.launcher.n_jobs=1"], tmp_path)
    out = proc.stdout + proc.stderr
    _assert_one_message(proc, tmp_path, "fa-run:", "hydra.launcher.n_jobs")
    assert "requires --multirun" not in out, out
    assert not list(tmp_path.rglob("summary.json"))  # nothing trained


@pytest.mark.parametrize("override,message", [
    ("dataset.n_train=0", "dataset.n_train=0 is out of range (the split holds 1000 examples); valid: [1, 1000]"),
    ("dataset.n_test=-5", "dataset.n_test=-5 is out of range (the split holds 500 examples); valid: [1, 500]"),
    ("dataset.n_train=5000", "dataset.n_train=5000 is out of range (the split holds 1000 examples)"),
])
def test_mnist_subset_out_of_its_split_stops_before_training(tmp_path, override, message):
    """MNIST's split sizes are known once it loads: the loader names them (before any training)."""
    with pytest.raises(ValueError) as err:
        run(compose_config([override, "dataset.download=false", *TINY]), tmp_path / "run")
    assert message in str(err.value) and "\n" not in str(err.value)
    for metrics in tmp_path.rglob("metrics.csv"):
        assert len(metrics.read_text().splitlines()) <= 1, metrics


def test_missing_and_corrupt_mnist_raise_one_message(tmp_path, fake_data):
    """In the API: the data loaders' own errors (fa_bench.data.errors), one message naming the file."""
    cfg = compose_config([f"data.root={tmp_path / 'nowhere'}", "dataset.download=false", *TINY])
    with pytest.raises(FileNotFoundError) as err:
        run(cfg, None)
    assert "MNIST" in str(err.value) and str(tmp_path / "nowhere") in str(err.value)
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (fake_data["root"] / "MNIST" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    images = next(raw.glob("train-images*ubyte"))
    images.write_bytes(images.read_bytes()[:100])
    with pytest.raises(ValueError) as err:
        run(compose_config([f"data.root={tmp_path}", "dataset.download=false", *TINY]), None)
    assert images.name in str(err.value) and "truncated" in str(err.value)


def test_cli_missing_or_corrupt_mnist_prints_one_message(tmp_path, fake_data):
    """fa-run catches fa_bench.data.errors.DataFileNotFoundError / DataCorruptError / DataConfigError."""
    proc = _fa_run([f"data.root={tmp_path / 'nowhere'}", "dataset.download=false"], tmp_path)
    _assert_one_message(proc, tmp_path, "MNIST not found", str(tmp_path / "nowhere"))
    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (fake_data["root"] / "MNIST" / "raw").iterdir():
        (raw / f.name).write_bytes(f.read_bytes())
    images = next(raw.glob("train-images*ubyte"))
    images.write_bytes(images.read_bytes()[:100])
    proc = _fa_run([f"data.root={tmp_path / 'data'}", "dataset.download=false"], tmp_path)
    _assert_one_message(proc, tmp_path, images.name, "truncated")


def test_cli_yaml_error_in_experiment_prints_file_and_line(tmp_path):
    """fa-run must call fa_bench.validation.check_experiment_yaml(sys.argv[1:]) before hydra.main."""
    d = _broken_experiment(tmp_path / "conf")
    proc = _fa_run(["--config-dir", str(d), "experiment=broken"], tmp_path)
    _assert_one_message(proc, tmp_path, "broken.yaml:5:1", "YAML syntax error")
