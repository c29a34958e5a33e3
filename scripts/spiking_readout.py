"""How much of Lillicrap Fig. 4's test error is the readout, not the weights: one checkpoint's weights,
tested several ways.

The paper guesses "the output class with highest activity ... after M = 5 time steps of exposure to a
test image" (Methods), and its Fig. 4 caption shows images "presented to the network for 50 time steps
each". fa_bench reads the guess as the spikes at the last of M = 5 steps (fa_bench/spiking.py). This
tests the weights a training run saved, with plasticity off, under each reading:

- ``last`` / ``sum``: spikes of each class group at the last step, or summed over all M steps;
- M = 5 (Methods) or 50 (the caption's presentation length);

each with several independent spike draws (``--draws``), so the spread from the network's own
stochastic spikes is measured, not guessed. Run it on a checkpoint.pt of an ``experiment=lillicrap_fig4``
run (FA_DATA must hold MNIST); it writes one CSV row per (readout, M, draw), stamped with the
checkpoint's step and this code's commit, and prints the mean per reading.

    python scripts/spiking_readout.py runs/fig4_60/fa_seed0_*/checkpoint.pt --out readout.csv
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

import torch

from fa_bench.data import load_dataset
from fa_bench.records import git_info
from fa_bench.spiking import SpikingNet, evaluate_spiking

READINGS = [("last", 5), ("sum", 5), ("last", 50), ("sum", 50)]


def load_net(path: Path, n_classes: int = 10) -> tuple[SpikingNet, dict]:
    """The network a checkpoint holds, weights and feedback as saved, and where its training stood (its
    activity state is not used: every evaluation starts from rest)."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    state = saved["engine"]
    sizes = [state["W"][0].shape[1]] + [w.shape[0] for w in state["W"]]
    net = SpikingNet(sizes, n_classes)
    for mine, values in ((net.W, state["W"]), (net.b, state["b"]), (net.B, state["B"])):
        for t, value in zip(mine, values):
            t.copy_(value)
    # time steps, as the run's metrics count them (the loop's own step counts images per stream)
    return net, {"checkpoint_step": state["time_step"], "checkpoint_examples": state["examples"]}


def readings(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, draws: int, report=print) -> list[dict]:
    """Test error (%) under every reading in READINGS, ``draws`` spike draws each. Draw d uses the spike
    stream a run of seed d evaluates with, so draw 0 of ('last', 5) is what a seed-0 run logs."""
    rows = []
    for readout, steps in READINGS:
        errors = [evaluate_spiking(net, x, y, steps=steps, readout=readout, seed=draw) for draw in range(draws)]
        rows += [{"readout": readout, "test_steps": steps, "draw": d, "error": e} for d, e in enumerate(errors)]
        spread = statistics.stdev(errors) if len(errors) > 1 else float("nan")
        report(f"readout={readout:4s} M={steps:2d}: test error {statistics.mean(errors):.2f} % "
               f"(sd {spread:.2f} over {len(errors)} spike draws, {len(y)} images)")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True, help="CSV: readout, test_steps, draw, error")
    p.add_argument("--draws", type=int, default=3, help="independent spike draws per reading")
    p.add_argument("--eval-n", type=int, default=None, help="test on the first N test images (default all)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    net, where = load_net(args.checkpoint)
    data = load_dataset("mnist", download=False)
    x, y = data.x_test.flatten(1), data.y_test
    if args.eval_n is not None:
        x, y = x[:args.eval_n], y[:args.eval_n]
    # the budget and the code travel with every row
    stamp = {**where, "test_images": len(y), "threads": 1, "device": "cpu", **git_info()}
    rows = [{**row, **stamp} for row in readings(net, x, y, args.draws, lambda s: print(s, flush=True))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
