"""Checkpoints: everything the next training step depends on, in one file beside the run's records.

What goes in is the training loop's business (fa_bench.trainer.train_loop: its own position, window and
stops, each engine's ``state_dict``, each writer's position in metrics.csv, the global random state);
this module only decides when one is due and writes it atomically (a temp file, then a rename), so a
kill during the write leaves the previous checkpoint intact.

``trainer.checkpoint_every``: an integer number of steps, a duration such as ``10min`` or ``30s``, or
null (never; an interrupted run then restarts from scratch).
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import torch

FILE = "checkpoint.pt"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|min|m|h)\s*$")


def parse_every(every) -> tuple[int | None, float | None]:
    """(steps, seconds) from a checkpoint_every setting; raises ValueError naming what is valid."""
    if every is None:
        return None, None
    if isinstance(every, int) and not isinstance(every, bool) and every >= 1:
        return every, None
    match = _DURATION.match(str(every)) if isinstance(every, str) else None
    if match and float(match.group(1)) > 0:
        value, unit = float(match.group(1)), match.group(2)
        return None, value * {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}[unit]
    raise ValueError(f"trainer.checkpoint_every={every!r}: give a number of steps >= 1, a duration such as "
                     f"'10min', '30s' or '2h', or null (never)")


class Checkpointer:
    def __init__(self, folder: Path | str, every, meta: dict | None = None, writes: bool = True):
        """``meta``: saved with every checkpoint (the run's resolved config, to refuse resuming another);
        ``writes``: False for the processes of a DDP run other than rank 0 (they read, never write)."""
        self.path = Path(folder) / FILE
        self.writes = writes
        self.steps, self.seconds = parse_every(every)
        self.meta = dict(meta or {})
        self.last = time.monotonic()

    @property
    def enabled(self) -> bool:
        return self.steps is not None or self.seconds is not None

    def due(self, step: int) -> bool:
        if self.steps is not None:
            return step % self.steps == 0
        return self.seconds is not None and time.monotonic() - self.last >= self.seconds

    def save(self, state: dict):
        if not self.writes:
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save({**self.meta, **state}, tmp)
        os.replace(tmp, self.path)
        self.last = time.monotonic()

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=False)

    def remove(self):
        self.path.unlink(missing_ok=True)
