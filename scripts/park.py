"""Carry runs that stopped with a checkpoint from one machine to the next, through the repository.

A session's machine is replaced when the session ends, and its runs/ folder with it: a run that needs
more hours than a session has resumes in the next one only from a checkpoint that was committed.
``park`` copies every checkpointed run of a sweep folder (checkpoint, records and Hydra's .hydra/)
into a folder under results/; ``--restore`` puts them back into a sweep folder, and the same fa-run
command, with ``hydra.sweep.dir`` at that folder, then resumes them bit for bit (tests/test_campaign.py).
Once a run finishes, archive it with scripts/recollect.py and delete its parked copy.

    python scripts/park.py runs/t2a1M_matched_noise results/lansdell_table2a/steps1M/parked/t2a1M_matched_noise
    python scripts/park.py --restore results/lansdell_table2a/steps1M/parked/t2a1M_matched_noise runs/t2a1M_matched_noise
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from campaign import CHECKPOINT, checkpointed, park, unpark  # scripts/ is on sys.path when this runs as a script


def describe(folder: Path) -> list[str]:
    """One line per checkpointed run under ``folder``: where it is and the overrides that resume it."""
    lines = []
    for run in checkpointed(folder):
        overrides = run / ".hydra" / "overrides.yaml"
        command = " ".join(yaml.safe_load(overrides.read_text()) or []) if overrides.is_file() else "(no .hydra/)"
        size = (run / CHECKPOINT).stat().st_size / 2**20
        lines.append(f"  {run.relative_to(folder)}: {size:.1f} MiB; fa-run {command}")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("src", help="the sweep folder to park (with --restore: the parked folder)")
    p.add_argument("dest", help="the parked folder (with --restore: the sweep folder to resume in)")
    p.add_argument("--restore", action="store_true", help="put parked runs back into a sweep folder")
    args = p.parse_args(argv)
    src, dest = Path(args.src), Path(args.dest)
    if not src.is_dir():
        print(f"park: {src} is not a folder", file=sys.stderr)
        return 1
    if args.restore:
        n = unpark(src, dest)
        print(f"{n} parked run(s) restored into {dest}; run the same fa-run command with hydra.sweep.dir={dest} "
              f"to resume them")
    else:
        n = park(src, dest)
        print(f"{n} checkpointed run(s) parked in {dest}:")
    print("\n".join(describe(dest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
