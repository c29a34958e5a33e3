"""The random hyperparameter search of Lansdell 2020's autoencoder (App. C.2: "Values for W step size,
noise variance and B step size were found by random hyperparameter search for each method"), one short
run per draw, scored by Table 2a's own measure (fa_bench.figures.lansdell_autoencoder.table_measure:
the minimum over training of 32 x the mean test loss, i.e. of a batch of 32's summed loss).

    python scripts/lansdell_ae_search.py --draws 4 --steps 1000

Per method (a cell of experiment lansdell_table2a, conf/cell/lansdell_t2a_*, without noise where the
method has both columns), ``--draws`` log-uniform draws, each one run of seed 0 with the experiment's
settings cut to ``--steps`` iterations. A "+ noise" cell takes its method's rate: the noise column adds
c* = 0.02 to the same method (App. C.5), and searching it too would double a CPU budget we do not have.

- the W learning rate: log10 in [-4, -1.5] for SGD on the batch-mean loss (the code's [-6, -3] on the
  batch sum is [-4.5, -1.5] here; its lowest decade is too slow for our short runs, and above ~0.03 the
  relu outputs die within a few hundred steps), [-4, -2] for Adam;
- the B learning rate of np_feedback and sg (``rule.lr_feedback``): log10 in [-6, -3], as the code;
- Matched's weight decay (``rule.decay``): log10 in [-3, -0.5] (the paper names no value).

The noise levels are not searched: c* = 0.02 and the DAE's 0.3 are the paper's search's results.
Draws come from numpy's generator seeded by ``--seed`` and the cell's name, so a cell's draws do not
depend on which other cells run. Writes one row per draw (with the commit) to ``--out``; the best draw
per cell is printed, to be copied into that cell's YAML.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf, open_dict

from fa_bench.config import compose_config
from fa_bench.figures.lansdell_autoencoder import table_measure
from fa_bench.records import git_info
from fa_bench.run import run

CELLS = ["bp_sgd", "bp_adam", "fa", "matched", "dae", "np", "sg"]  # the methods; "+ noise" cells share their rates
RANGES = {"sgd": (-4.0, -1.5), "adam": (-4.0, -2.0), "lr_feedback": (-6.0, -3.0), "decay": (-3.0, -0.5)}


def draws(cfg, rng, n) -> list[dict]:
    out = []
    for _ in range(n):
        lo, hi = RANGES["adam" if cfg.optimizer.name == "adam" else "sgd"]
        d = {"optimizer.lr": float(10 ** rng.uniform(lo, hi))}
        if "lr_feedback" in cfg.rule:
            d["rule.lr_feedback"] = float(10 ** rng.uniform(*RANGES["lr_feedback"]))
        if "decay" in cfg.rule:  # a rule whose feedback decays (matched)
            d["rule.decay"] = float(10 ** rng.uniform(*RANGES["decay"]))
        out.append({k: float(f"{v:.3g}") for k, v in d.items()})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cells", nargs="+", default=CELLS)
    p.add_argument("--draws", type=int, default=4)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results/lansdell_table2a/lr_search.csv")
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="further config overrides for every run (tests: a tiny data set)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for cell in args.cells:
        base = ["experiment=lansdell_table2a", "hydra.mode=RUN", f"cell=lansdell_t2a_{cell}", "seed=0",
                "trainer.progress=false", f"trainer.max_steps={args.steps}", *args.overrides]
        rng = np.random.default_rng([args.seed, zlib.crc32(cell.encode())])
        for draw in draws(compose_config(base), rng, args.draws):
            cfg = compose_config(base)
            with open_dict(cfg):
                for key, value in draw.items():
                    OmegaConf.update(cfg, key, value)
            with tempfile.TemporaryDirectory() as tmp:
                summary = run(cfg, tmp)
                curve = pd.read_csv(Path(tmp) / "metrics.csv")
            test = curve[(curve["split"] == "test") & (curve["name"] == "loss")]
            score = table_measure(test["value"]) if summary["status"] == "completed" else math.inf
            rows.append({"cell": cell, **draw, "steps": args.steps, "status": summary["status"],
                         "min_test_loss_batch32": score, **git_info()})
            print(rows[-1], flush=True)
            pd.DataFrame(rows).to_csv(out, index=False)
    table = pd.DataFrame(rows)
    best = table.loc[table.groupby("cell")["min_test_loss_batch32"].idxmin()]
    print(best.drop(columns=[c for c in best if c.startswith("git")]).to_string(index=False))


if __name__ == "__main__":
    main()
