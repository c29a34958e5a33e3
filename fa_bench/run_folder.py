"""A run's folder: one writer at a time, and what an earlier attempt left in it.

Run folders are keyed by the run's resolved config (conf/config.yaml: ``run_key``), so the same config
always lands in the same folder: that is what lets a re-run skip a finished run and resume an
interrupted one. The price is that two processes could be handed one folder; an exclusive lock
(``.lock``, fcntl) makes the second fail at once with a message instead of mixing their records.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

from fa_bench.errors import RunFolderBusy

FINISHED = ("completed", "diverged")  # outcomes a re-run keeps; failed and interrupted runs train again
RECORDS = ("metrics.csv", "summary.json", "checkpoint.pt", "traces.csv", "activations.npz", "config.yaml")


class RunFolder:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = None

    def __enter__(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.seek(0)
            holder = self._lock.read().strip() or "unknown"
            self._lock.close()
            self._lock = None
            raise RunFolderBusy(f"run folder {self.path} is being written by another fa-run (pid {holder}); the "
                                f"same config never has two writers: wait for it to finish, then run again "
                                f"(finished runs are skipped)") from None
        self._lock.seek(0)
        self._lock.truncate()
        self._lock.write(str(os.getpid()))
        self._lock.flush()
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        return False

    def summary(self) -> dict | None:
        path = self.path / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def finished(self) -> dict | None:
        """The summary of a run that already reached an outcome (completed or diverged), else None."""
        summary = self.summary()
        return summary if summary is not None and summary.get("status") in FINISHED else None

    def clear(self):
        """Forget an earlier attempt (rerun=true): its records and checkpoint go, Hydra's .hydra/ stays."""
        for name in RECORDS:
            (self.path / name).unlink(missing_ok=True)
        for child in self.path.glob("seed*"):
            if child.is_dir():
                shutil.rmtree(child)
