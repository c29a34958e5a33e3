"""Where the time of a Lillicrap Fig. 2 step goes (issue 13's fig2 target): autograd's share.

A fig2 job is 8000 batch-1 steps of a 10-seed stack of the 30-20-10 linear net, and issue 13 wants
the whole figure (4 rules x 10 seeds, start-up, collect, figure) in 10 s. This times one FA step
three ways, paired and in blocks taking turns (bench.round_robin), 1 thread:

- fa_bench: the loop's step on the model fa-run builds (bench.engine_step on the composed
  ``experiment=lillicrap_fig2 rule=fa`` config, 10 seeds stacked);
- plain autograd: the same arithmetic as plain tensors under ``loss.backward()`` and a foreach SGD
  step, no fa_bench code;
- by hand: the same arithmetic with the backward written out (FA's δ = e·B), no autograd graph.

The gap between the last two is what autograd itself costs at this size: the floor of any engine that
builds a graph per step.

    python scripts/fig2_step_floor.py [--reps 15] [--steps 400]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import engine_of, engine_step, round_robin  # noqa: E402  (scripts/ is not a package)

from fa_bench import run as R  # noqa: E402
from fa_bench.config import compose_config  # noqa: E402

SEEDS = list(range(10))


def fa_bench_engine(n_train=8000):
    """The stacked 10-seed RuleEngine that a fig2 fa job trains (no biases: linear_30_20_10 has none)."""
    cfg = R.resolve_config(compose_config(["experiment=lillicrap_fig2", "rule=fa", "trainer.progress=false",
                                           f"dataset.n_train={n_train}"]), command_line=[])
    device = torch.device("cpu")
    return engine_of(cfg, R.build_data(cfg, device), device, seeds=SEEDS), float(cfg.optimizer.lr)


def plain_steps(engine, lr):
    """``(autograd, by_hand)``: one step on example i, on copies of the engine's W, B and data."""
    hidden, out = (m for m in engine.model if hasattr(m, "feedback_weight"))
    W0, W1, B1 = (t.detach().clone() for t in (hidden.weight, out.weight, out.feedback_weight))
    S, X, Y = W0.shape[0], engine.x_train, engine.y_train

    def example(i):  # every seed sees the same stream (shuffle off), as the engine's batches are
        i %= X.shape[0]
        return X[i].expand(S, 1, -1), Y[i].expand(S, 1, -1)

    def by_hand(i):
        x, t = example(i)
        h = torch.bmm(x, W0.transpose(1, 2))
        e = torch.bmm(h, W1.transpose(1, 2)) - t  # ∂(½‖y − t‖²)/∂y
        d = torch.bmm(e, B1)  # FA: the error goes down through B, not W
        torch._foreach_add_([W0, W1], [torch.bmm(d.transpose(1, 2), x), torch.bmm(e.transpose(1, 2), h)],
                            alpha=-lr)

    params = [W0.clone().requires_grad_(), W1.clone().requires_grad_()]
    opt = torch.optim.SGD(params, lr=lr, foreach=True)

    def autograd(i):  # backprop's graph: FA differs from it only in which matrix the error meets
        x, t = example(i)
        y = torch.bmm(torch.bmm(x, params[0].transpose(1, 2)), params[1].transpose(1, 2))
        loss = 0.5 * (y - t).pow(2).sum()
        for p in params:
            p.grad = None
        loss.backward()
        opt.step()
    autograd.weights, by_hand.weights = params, (W0, W1)
    return autograd, by_hand


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--steps", type=int, default=400)
    args = p.parse_args()
    torch.set_num_threads(1)
    engine, lr = fa_bench_engine()
    batches = list(engine.epoch_batches(0, 0))
    autograd, by_hand = plain_steps(engine, lr)
    counter = iter(range(10**9))
    contestants = {"fa_bench": engine_step(engine), "plain autograd": lambda _: autograd(next(counter)),
                   "by hand": lambda _: by_hand(next(counter))}
    times = round_robin(contestants, batches, warmup=200, steps=args.steps, repeats=args.reps)
    med = {k: statistics.median(v) * 1e6 for k, v in times.items()}
    print(f"one FA step of the 10-seed 30-20-10 stack at batch 1, medians of {args.reps} blocks of {args.steps}:")
    for k, v in med.items():
        print(f"  {k:15s} {v:7.1f} us   x {len(batches)} steps = {v * len(batches) / 1e6:.2f} s")
    print(f"fa_bench / plain autograd {med['fa_bench'] / med['plain autograd']:.2f}; "
          f"plain autograd / by hand {med['plain autograd'] / med['by hand']:.2f}")


if __name__ == "__main__":
    main()
