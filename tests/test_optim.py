"""fa_bench.optim.SGD: torch.optim.SGD's numbers and state, bit for bit, without torch.optim's per-step
wrappers (and so without importing torch._dynamo, which costs every sweep worker 1-2 s)."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from fa_bench.optim import SGD, build_optimizer

SETTINGS = [
    {},
    {"weight_decay": 1e-2},
    {"momentum": 0.9},
    {"momentum": 0.9, "dampening": 0.1, "weight_decay": 1e-3},
    {"momentum": 0.9, "nesterov": True},
    {"momentum": 0.5, "maximize": True},
    {"foreach": True, "momentum": 0.9},  # torch's own step (foreach kernels): the fallback path
]


def _model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3))


def _steps(model, optimizer, n, start=0, frozen=None):
    g = torch.Generator().manual_seed(123 + start)
    for _ in range(n):
        x, y = torch.randn(8, 6, generator=g), torch.randn(8, 3, generator=g)
        optimizer.zero_grad(set_to_none=True)
        ((model(x) - y) ** 2).mean().backward()
        if frozen is not None:
            frozen.grad = None  # a parameter without a gradient is skipped, momentum and decay too
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("settings", SETTINGS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "plain")
def test_sgd_is_torch_sgd_bit_for_bit(settings):
    ours, theirs = _model(), _model()
    a = _steps(ours, SGD(ours.parameters(), lr=0.05, **settings), 7, frozen=ours[2].bias)
    b = _steps(theirs, torch.optim.SGD(theirs.parameters(), lr=0.05, **settings), 7, frozen=theirs[2].bias)
    for p, q in zip(a, b):
        assert torch.equal(p, q)
    assert not torch.equal(a[0], _model()[0].weight.detach()), "no step was taken"


@pytest.mark.parametrize("direction", ["ours_to_torch", "torch_to_ours"])
def test_sgd_checkpoints_are_torch_sgd_checkpoints(direction):
    """A state_dict (momentum buffers included) moves between the two and the run goes on identically."""
    make_first, make_second = (SGD, torch.optim.SGD) if direction == "ours_to_torch" else (torch.optim.SGD, SGD)
    settings = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-3}
    straight = _model()
    opt = make_first(straight.parameters(), **settings)
    _steps(straight, opt, 3)
    # deep copies: a state_dict holds the live momentum buffers, which the straight run goes on changing
    state = copy.deepcopy({"model": straight.state_dict(), "opt": opt.state_dict()})
    want = _steps(straight, opt, 4, start=3)
    resumed = _model(seed=1)
    resumed.load_state_dict(state["model"])
    opt2 = make_second(resumed.parameters(), **settings)
    opt2.load_state_dict(state["opt"])
    got = _steps(resumed, opt2, 4, start=3)
    for p, q in zip(got, want):
        assert torch.equal(p, q)


def test_build_optimizer_gives_fa_bench_sgd():
    assert type(build_optimizer(_model(), "sgd", lr=0.1)) is SGD


def test_sgd_never_imports_torch_dynamo():
    """Building, stepping, checkpointing and zeroing: torch.optim's wrappers would import torch._dynamo."""
    code = (
        "import sys, torch\n"
        "from fa_bench.optim import SGD\n"
        "m = torch.nn.Linear(3, 2)\n"
        "o = SGD(m.parameters(), lr=0.1, momentum=0.9)\n"
        "m(torch.randn(4, 3)).sum().backward()\n"
        "o.step(); o.load_state_dict(o.state_dict()); o.zero_grad()\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
        "t = torch.optim.SGD(m.parameters(), lr=0.1)\n"
        "assert 'torch._dynamo' in sys.modules, 'the check cannot tell: torch.optim no longer imports it'\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_sgd_sparse_gradients_as_torch():
    def run(cls):
        torch.manual_seed(0)
        emb = torch.nn.Embedding(10, 4, sparse=True)
        opt = cls(emb.parameters(), lr=0.1)
        for idx in ([1, 2, 2], [3, 1], [9]):
            opt.zero_grad()
            emb(torch.tensor(idx)).pow(2).sum().backward()
            opt.step()
        return emb.weight.detach()
    assert torch.equal(run(SGD), run(torch.optim.SGD))
