"""Regenerate every figure, table and the scorecard from a results folder (no training): the committed
results/ by default, or any other (``--results <dir>``, e.g. the results a user's experiment sweep
collected into its own folder)."""
from __future__ import annotations

import argparse
from pathlib import Path

from fa_bench.figures import make_all
from fa_bench.scorecard import is_committed, write_scorecard


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results", default="results", help="the results folder to read and write")
    p.add_argument("--scorecard", default=None, help="where to write the scorecard (default: <results>/SCORECARD.md)")
    args = p.parse_args(argv)
    written = make_all(args.results)
    written.append(write_scorecard(Path(args.results), args.scorecard, committed=is_committed(args.results)))
    for path in written:
        print(path)


if __name__ == "__main__":
    main()
