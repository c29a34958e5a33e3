"""Regenerate every figure and results/SCORECARD.md from the committed results data (no training)."""
from __future__ import annotations

import argparse
from pathlib import Path

from fa_bench.figures import make_all
from fa_bench.scorecard import write_scorecard


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", default="results", help="the results folder to read and write")
    args = p.parse_args(argv)
    written = make_all(args.results)
    written.append(write_scorecard(Path(args.results)))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
