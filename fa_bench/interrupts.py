"""SIGINT and SIGTERM (Ctrl-C, `timeout`, SLURM's pre-emption), and SIGUSR2 (the warning submitit gives a
SLURM job before its time limit) end a run cleanly at the next step.

``graceful()`` installs handlers that only record the signal; the training loop polls ``requested()``
once per step (a Python attribute read, no device sync), then writes its checkpoint, metrics and an
``interrupted`` summary, and raises ``RunInterrupted``. fa-run prints one line and exits with the
conventional code 128 + signal number (130 for SIGINT, 143 for SIGTERM). A second signal while the
run is winding down falls through to Python's default behaviour, so a stuck run can still be killed.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

_received: list[int] = []


class RunInterrupted(Exception):
    """Raised by the training loop after it has saved what it could."""

    def __init__(self, signum: int, step: int):
        self.signum, self.step = signum, step
        super().__init__(f"interrupted by {signal.Signals(signum).name} at step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def requested() -> int | None:
    """The signal received since ``graceful()`` began, if any."""
    return _received[0] if _received else None


@contextmanager
def graceful():
    """Record SIGINT/SIGTERM/SIGUSR2 instead of dying mid-step (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if _received:  # the second one: stop waiting
            signal.signal(signum, previous.get(signum) or signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        _received.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGUSR2", None)):
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        _received.clear()
