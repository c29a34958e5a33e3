"""Rebuild a committed results folder from its archived run folders, with the experiment's collect
settings: ``<dest>/runs/`` → ``<dest>/`` (runs.csv, curves.csv, meta.json; at an experiment's own
folder also its summary table and figure). The archive, not a machine's runs/ folder, is what a later
session has: run folders outside the repository are gone when the machine is replaced, so finished
runs are archived here (records only, no checkpoints) and the tables are always rebuilt from it.

    python scripts/recollect.py nokland_table1                                # after moving run folders
    python scripts/recollect.py nokland_table1 --add runs/nokland_table1      # archive a sweep's finished runs first
    python scripts/recollect.py nokland_table1 --dest results/nokland_table1/adv_check   # a check's folder
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from campaign import collect_stopped, copy_finished  # scripts/ is on sys.path when this runs as a script

from fa_bench.collect import collect
from fa_bench.config import compose_config


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment", help="whose collect settings (conf/experiment/<name>.yaml) apply")
    p.add_argument("--results", default="results")
    p.add_argument("--dest", default=None, help="the folder to rebuild (default: <results>/<experiment>)")
    p.add_argument("--add", nargs="*", default=[], help="sweep folders whose finished runs are archived first")
    args = p.parse_args(argv)
    results = Path(args.results)
    dest = Path(args.dest) if args.dest else results / args.experiment
    archive = dest / "runs"
    for sweep in args.add:
        print(f"{sweep}: {copy_finished(Path(sweep), archive)} finished run(s) archived into {archive}")
    if dest.resolve() == (results / args.experiment).resolve():  # the experiment's own: tables and figure
        line, code = collect_stopped({"experiment": args.experiment}, archive, results)
        print(line)
        return code
    cfg = compose_config([f"experiment={args.experiment}"])
    meta = collect(archive, dest, experiment=args.experiment, max_points=cfg.collect.max_points,
                   metrics=cfg.collect.metrics)
    print(f"{meta['n_runs']} runs collected into {dest}: {meta['status_counts']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
