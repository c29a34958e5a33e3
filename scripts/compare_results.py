"""Compare two collected runs.csv files run by run (matched on rule, setting, seed): which final values
are bit-identical, and how far the others are (relative for losses and errors, absolute degrees for
angles). Used to check that a refactor or seed batching reproduces committed results.

    python scripts/compare_results.py results/lillicrap_fig3d/runs.csv \
        runs/lillicrap_fig3d/results/lillicrap_fig3d/runs.csv
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd


def compare(a: pd.DataFrame, b: pd.DataFrame) -> dict:
    keys = [k for k in ("rule", "setting", "seed") if k in a.columns and k in b.columns]
    a, b = a.sort_values(keys).reset_index(drop=True), b.sort_values(keys).reset_index(drop=True)
    if len(a) != len(b) or not a[keys].astype(str).equals(b[keys].astype(str)):
        raise SystemExit(f"the two tables hold different runs ({len(a)} vs {len(b)} rows, matched on {keys})")
    columns = [c for c in a.columns if c.startswith("final_") and c in b.columns]
    identical, rel, ang = 0, (0.0, ""), (0.0, "")
    for c in columns:
        x, y = a[c].astype(float).to_numpy(), b[c].astype(float).to_numpy()
        if np.array_equal(x, y, equal_nan=True):
            identical += 1
        elif "angle" in c:
            ang = max(ang, (float(np.nanmax(np.abs(x - y))), c))
        else:
            rel = max(rel, (float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-30))), c))
    return {"runs": len(a), "values": len(columns), "identical": identical, "max_rel": rel, "max_angle": ang}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    args = parser.parse_args(argv)
    r = compare(pd.read_csv(args.a), pd.read_csv(args.b))
    print(f"{r['runs']} runs x {r['values']} final values: {r['identical']} bit-identical; largest relative "
          f"difference of the others {r['max_rel'][0]:.2e} ({r['max_rel'][1] or '-'}), of angles "
          f"{r['max_angle'][0]:.2e} degrees ({r['max_angle'][1] or '-'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
