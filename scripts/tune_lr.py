"""Per-rule learning-rate search for an experiment, the way Lillicrap et al. picked theirs ("manual
search to optimize learning speed"): for each rule and candidate setting, train on a few seeds and
score the area under the test learning curve (mean of the logged test metric; lower is faster).

    python scripts/tune_lr.py lillicrap_fig2 --rules bp fa --lrs 0.001 0.01 --seeds 0 1

Writes results/<experiment>/lr_search.csv (one row per rule × setting × seed, with the commit).
"""
from __future__ import annotations

import argparse
import itertools
import math
import tempfile
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf, open_dict

from fa_bench.config import compose_config
from fa_bench.records import git_info
from fa_bench.run import run


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("experiment")
    p.add_argument("--rules", nargs="+", required=True)
    p.add_argument("--lrs", nargs="+", type=float, required=True)
    p.add_argument("--extra", nargs="*", default=[""],
                   help="alternative override sets, each a comma-free override like rule.sigma=0.01")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--metric", default="test/nse", help="split/name of the metric to integrate")
    p.add_argument("--out", default=None)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="further config overrides for every run")
    args = p.parse_args(argv)
    out = Path(args.out or f"results/{args.experiment}/lr_search.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    split, name = args.metric.split("/")
    rows = []
    for rule, lr, extra, seed in itertools.product(args.rules, args.lrs, args.extra, args.seeds):
        overrides = [f"experiment={args.experiment}", "hydra.mode=RUN", f"rule={rule}", f"seed={seed}",
                     "metrics.every=0", "trainer.progress=false", *args.overrides]
        cfg = compose_config(overrides)
        # per_rule is merged last by the runner, so the candidate goes there too
        candidate = OmegaConf.from_dotlist([f"optimizer.lr={lr}"] + ([extra] if extra else []))
        with open_dict(cfg):
            cfg.per_rule[rule] = OmegaConf.merge(cfg.per_rule.get(rule) or {}, candidate)
        with tempfile.TemporaryDirectory() as tmp:
            summary = run(cfg, tmp)
            curve = pd.read_csv(Path(tmp) / "metrics.csv")
        values = curve[(curve["split"] == split) & (curve["name"] == name)]["value"]
        score = float(values.clip(upper=10).mean()) if summary["status"] == "completed" else math.inf
        rows.append({"experiment": args.experiment, "rule": rule, "lr": lr, "extra": extra, "seed": seed,
                     "status": summary["status"], "score_mean_" + name: score,
                     "final_" + name: summary.get("final", {}).get(args.metric), **git_info()})
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(out, index=False)
    table = pd.DataFrame(rows).groupby(["rule", "extra", "lr"])["score_mean_" + name].mean().unstack("lr")
    print(table.to_string())


if __name__ == "__main__":
    main()
