"""scripts/gpu_check.sh and the trainer options it measures (trainer.precision, channels_last, compile).

On the CPU: the check refuses cleanly, its dry run lists steps whose bench commands parse and whose
overrides compose into valid configs, the options are validated, bf16 and channels_last are refused
with a ConfigError, and compile runs the rule through the compiled module. The ``cuda`` tests (run by
the check itself, ``-k cuda``) compare each option's step with the plain fp32 step on a GPU.
"""
import copy
import importlib.util
import shlex
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import fa_bench
from fa_bench.config import compose_config
from fa_bench.engines.autograd import RuleEngine
from fa_bench.errors import ConfigError
from fa_bench.losses import get_loss
from fa_bench.optim import build_optimizer
from fa_bench.records import MetricsWriter
from fa_bench.run import resolve_config, run
from fa_bench.seeding import generator
from fa_bench.trainer import TrainConfig, train_loop

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
TINY = ["dataset=linear_teacher", "model=linear_30_20_10", "dataset.n_train=32", "dataset.n_test=16",
        "trainer.batch_size=8", "trainer.progress=false", "rule=fa"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (scripts/gpu_check.sh)")


def dry_run_steps():
    out = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, check=True).stdout
    lines = out.strip().splitlines()
    steps = [line.split(": ", 1) for line in lines[:-1]]
    return {head.split(" (")[0]: (int(head.split("(")[1].split(" s")[0]), shlex.split(cmd)) for head, cmd in steps}, \
        lines[-1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_gpu_check_refuses_without_cuda(tmp_path):
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                          "OUT": str(tmp_path / "out"), **_python_env()})
    assert proc.returncode == 2
    assert "no CUDA device" in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def _python_env():
    import os
    import sys
    return {"PYTHON": sys.executable, "HOME": os.environ.get("HOME", "/tmp"),
            **({"FA_DATA": os.environ["FA_DATA"]} if "FA_DATA" in os.environ else {})}


def test_gpu_check_dry_run_is_wired_to_the_bench_and_fits_eight_minutes():
    steps, total = dry_run_steps()
    assert set(steps) == {"tests", "fp32", "bf16", "channels_last", "compile"}
    assert sum(limit for limit, _ in steps.values()) <= 8 * 60 and total.startswith("at most")
    spec = importlib.util.spec_from_file_location("bench_script", ROOT / "scripts" / "bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert steps["tests"][1][-3:] == ["-k", "cuda", "tests/test_gpu_check.py"]
    seen = set()
    for _, argv in steps.values():
        if "scripts/bench.py" not in argv:
            continue
        args = bench.parse(argv[argv.index("scripts/bench.py") + 1:])  # every flag exists
        assert args.device == "cuda" and args.out.startswith("results/bench/cuda/")
        for model in args.models:  # every override composes into a config the trainer accepts
            cfg = resolve_config(compose_config([f"model={model}", "rule=fa", *args.set]), command_line=[])
            TrainConfig(**{k: v for k, v in cfg.trainer.items()})
        seen |= set(args.set)
    assert {"trainer.precision=bf16", "trainer.channels_last=true", "trainer.compile=true"} <= seen


@pytest.mark.parametrize("key, value", [("precision", "fp16"), ("channels_last", "yes"), ("compile", 1)])
def test_device_options_are_validated(key, value):
    with pytest.raises(ValueError, match=f"trainer.{key}"):
        TrainConfig(**{key: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal")
@pytest.mark.parametrize("override", ["trainer.precision=bf16", "trainer.channels_last=true"])
def test_cpu_refuses_bf16_and_channels_last_before_training(override, tmp_path):
    cfg = compose_config([*TINY, override, "device=cpu"])
    with pytest.raises(ConfigError, match=override.split("=")[0].replace(".", r"\.") + ".*needs a CUDA device"):
        run(cfg, tmp_path / "run")
    metrics = tmp_path / "run" / "metrics.csv"
    assert not metrics.exists() or "test" not in metrics.read_text()  # refused before the first evaluation


def _engine(model, data, compile_=False, precision="fp32", channels_last=False, steps=3):
    cfg = TrainConfig(max_steps=steps, batch_size=8, shuffle=False, metrics_every=0, progress=False,
                      compile=compile_, precision=precision, channels_last=channels_last)
    return RuleEngine(model, data, get_loss("cross_entropy"), build_optimizer(model, "sgd", lr=0.1), cfg, seeds=[0],
                      orders=[generator(0, "order")]), cfg


def _mlp_data(device):
    from fa_bench.data import load_dataset
    return load_dataset("mnist", device=device)


def test_compile_runs_the_rule_through_the_compiled_module(monkeypatch):
    """trainer.compile=true: the rule's forward goes through what torch.compile returned (here a recorder,
    since compiling on this CPU takes minutes), and the run is the uncompiled run's."""
    calls = []

    class Recorder(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls.append(x.shape)
            return self.inner(x)

    monkeypatch.setattr(torch, "compile", lambda module: Recorder(module))
    data = _mlp_data("cpu")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 10))
    a, b = (fa_bench.convert(copy.deepcopy(plain), "fa", seed=0) for _ in range(2))
    for model, compiled in ((a, True), (b, False)):
        engine, cfg = _engine(model, data, compile_=compiled)
        train_loop(engine, cfg, [MetricsWriter(None)])
    assert len(calls) == 3 and all(s[0] == 8 for s in calls)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def _one_step_grads(model, data, **options):
    engine, _ = _engine(model, data, steps=1, **options)
    engine.begin_step(0, 0)
    engine.optimizer.step = lambda: None  # keep the gradients of this one step
    engine.train_step(next(iter(engine.epoch_batches(0))))
    return [p.grad.float().clone() for p in model.parameters() if p.grad is not None]


@cuda
def test_cuda_bf16_step_is_the_fp32_step_to_bf16_precision():
    data = _mlp_data("cuda")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(), nn.Linear(64, 10)).cuda()
    ref = _one_step_grads(fa_bench.convert(copy.deepcopy(plain), "fa", seed=0), data)
    low = _one_step_grads(fa_bench.convert(copy.deepcopy(plain), "fa", seed=0), data, precision="bf16")
    for g, h in zip(ref, low):
        assert h.dtype == torch.float32 and torch.allclose(g, h, rtol=0.05, atol=0.02 * g.abs().max().item())


@cuda
def test_cuda_channels_last_convnet_step_equals_the_contiguous_one():
    data = _mlp_data("cuda")
    plain = nn.Sequential(nn.Conv2d(1, 8, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                          nn.Linear(8 * 14 * 14, 10)).cuda()
    x = data.x_train[:2]
    ref = _one_step_grads(fa_bench.convert(copy.deepcopy(plain), "fa", example_input=x, seed=0), data)
    cl = _one_step_grads(fa_bench.convert(copy.deepcopy(plain), "fa", example_input=x, seed=0), data,
                         channels_last=True)
    for g, h in zip(ref, cl):
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-5)


@cuda
def test_cuda_channels_last_is_refused_for_an_mlp():
    data = _mlp_data("cuda")
    model = fa_bench.convert(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)).cuda(), "fa", seed=0)
    with pytest.raises(ConfigError, match="channels_last=true is for convnets"):
        _engine(model, data, channels_last=True)


@cuda
def test_cuda_compile_step_equals_the_eager_step():
    data = _mlp_data("cuda")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.Tanh(), nn.Linear(64, 10)).cuda()
    ref = _one_step_grads(fa_bench.convert(copy.deepcopy(plain), "fa", seed=0), data)
    comp = _one_step_grads(fa_bench.convert(copy.deepcopy(plain), "fa", seed=0), data, compile_=True)
    for g, h in zip(ref, comp):
        assert torch.allclose(g, h, rtol=1e-4, atol=1e-6)
