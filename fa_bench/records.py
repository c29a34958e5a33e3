"""What a run writes (docs/contracts.md §3): metrics.csv rows and summary.json, plus provenance."""
from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

from fa_bench import atomic

METRIC_COLUMNS = ["step", "epoch", "examples", "split", "name", "layer", "value"]


class MetricsWriter:
    """Appends rows to metrics.csv, each flushed as it is written (a killed run keeps every whole row it
    logged, and never a half one). ``resume``: a ``state()`` taken earlier; the file is cut back to
    that point and appended to, so a resumed run's rows follow the checkpointed ones exactly."""

    def __init__(self, path: Path | str | None, resume: dict | None = None):
        self._file = None
        self.last: dict[tuple[str, str, str], float] = {}
        if path is None:
            return
        if resume is not None and Path(path).is_file():
            self._file = open(path, "r+", newline="")
            self._file.truncate(resume["offset"])
            self._file.seek(resume["offset"])
            self._csv = csv.writer(self._file)
            self.last = dict(resume["last"])
        else:
            self._file = open(path, "w", newline="")
            self._csv = csv.writer(self._file)
            self._csv.writerow(METRIC_COLUMNS)
            self._file.flush()

    def log(self, step, epoch, examples, split, name, value, layer=""):
        value = float(value)
        self.last[(split, name, layer)] = value
        if self._file is not None:
            self._csv.writerow([step, epoch, examples, split, name, layer, repr(value)])
            self._file.flush()

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def state(self) -> dict:
        """Where the file stands and the last values: what a checkpoint needs to resume this writer."""
        offset = 0
        if self._file is not None:
            self._file.flush()
            offset = self._file.tell()
        return {"offset": offset, "last": dict(self.last)}

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def final(self) -> dict[str, float]:
        """Last value of every logged series, keyed 'split/name' or 'split/name/layer'."""
        return {"/".join(k for k in key if k): v for key, v in self.last.items()}


def git_info(start: Path | None = None) -> dict:
    """Commit of the code that ran and whether its tree was dirty ('unknown' outside a checkout).

    Changes under results/ do not count: they are what runs write, not what runs execute (an lr
    search that updates its CSV after each run would otherwise mark every later run dirty).
    """
    cwd = Path(start or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                 ":(exclude,top)results"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=10).stdout
        return {"git_commit": commit, "git_dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": "unknown", "git_dirty": None}


def _jsonable(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def write_summary(path: Path | str, summary: dict):
    clean = {k: ({kk: _jsonable(vv) for kk, vv in v.items()} if isinstance(v, dict) else _jsonable(v))
             for k, v in summary.items()}
    atomic.write_text(path, json.dumps(clean, indent=2, sort_keys=True) + "\n")
