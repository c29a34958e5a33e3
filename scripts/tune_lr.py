"""Per-rule learning-rate search for an experiment, the way Lillicrap et al. picked theirs ("manual
search to optimize learning speed"): for each rule and candidate setting, train on a few seeds and
score the area under the test learning curve (mean of the logged test metric; lower is faster).

    python scripts/tune_lr.py lillicrap_fig2 --rules bp fa --lrs 0.001 0.01 --seeds 0 1

Writes results/<experiment>/lr_search.csv (one row per rule × setting × seed, with the commit).

A search at a paper's full budget is better run as ordinary ``fa-run`` runs (checkpointed, resumable,
one folder each, ``optimizer.lr=...`` on the command line); ``--from-runs`` then tabulates their
finished folders instead of training: the runs whose config is the experiment's (with ``--set``) up to
the learning rate and the seed, scored by their final ``--metric``:

    python scripts/tune_lr.py nokland_table1 --rules bp --lrs 1e-4 3e-4 1e-3 --seeds 0 1 2 \
        --metric test/error --set cell=nokland_2x800_tanh --from-runs runs/nokland_table1
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf, open_dict

from fa_bench.config import compose_config
from fa_bench.records import git_info
from fa_bench.run import resolve_config, run


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
    p.add_argument("--from-runs", nargs="+", default=None, metavar="DIR",
                   help="tabulate the finished run folders under these sweep folders instead of training")
    args = p.parse_args(argv)
    if args.from_runs:
        return from_runs(args)
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


def _comparable(config: dict) -> dict:
    """A run's resolved config less what the search varies (lr, seed) and what does not alter the run,
    compared as the run key compares configs (null options pruned)."""
    from fa_bench.config import NOT_IN_RUN_KEY, pruned
    out = pruned({k: v for k, v in config.items() if k not in (*NOT_IN_RUN_KEY, "seed", "seeds")})
    out["optimizer"] = {k: v for k, v in out["optimizer"].items() if k != "lr"}
    out["trainer"] = {k: v for k, v in out["trainer"].items() if k != "progress"}
    return out


def from_runs(args):
    out = Path(args.out or f"results/{args.experiment}/lr_search.csv")
    split, name = args.metric.split("/")
    rows = []
    for rule in args.rules:
        overrides = [f"rule={rule}", *args.overrides]
        cfg = resolve_config(compose_config([f"experiment={args.experiment}", "hydra.mode=RUN", *overrides]),
                             command_line=overrides)  # what config.yaml holds: per_rule merged
        wanted = _comparable(OmegaConf.to_container(cfg, resolve=True))
        for folder in sorted(d for root in args.from_runs for d in Path(root).iterdir() if d.is_dir()):
            if not (folder / "summary.json").is_file() or not (folder / "config.yaml").is_file():
                continue
            config = yaml.safe_load((folder / "config.yaml").read_text())
            lr, seed = float(config["optimizer"]["lr"]), config.get("seed")
            if _comparable(config) != wanted or seed not in args.seeds or not any(math.isclose(lr, c) for c in args.lrs):
                continue
            summary = json.loads((folder / "summary.json").read_text())
            rows.append({"experiment": args.experiment, "rule": rule, "lr": lr, "seed": seed,
                         "status": summary["status"], "epochs_run": summary.get("epochs_run"),
                         "stop_reason": summary.get("stop_reason"), "final_" + name: (summary.get("final") or {}).get(args.metric),
                         "git_commit": summary.get("git_commit"), "git_dirty": summary.get("git_dirty"),
                         "run_dir": folder.name})
    if not rows:
        raise SystemExit(f"tune_lr: no finished run under {args.from_runs} matches {args.experiment} with {args.overrides}")
    table = pd.DataFrame(rows).sort_values(["rule", "lr", "seed"])
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    done = table[table["status"] == "completed"]
    print(done.groupby(["rule", "lr"])["final_" + name].agg(["mean", "std", "count"]).to_string())


if __name__ == "__main__":
    main()
