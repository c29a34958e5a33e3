"""``fa-run``: the Hydra entry point (docs/contracts.md §1).

What a user sees: a finished single run prints its outcome, final metrics and folder; a bad config, a
data problem or a busy run folder prints one line (no traceback) and exits 1 (in a sweep, that job is
recorded as failed and the sweep goes on); SIGINT/SIGTERM end the run cleanly (fa_bench.interrupts)
with one line and exit 130/143.
"""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from fa_bench.config import conf_dir  # also registers the run_key resolver the run folders use
from fa_bench.data.errors import DataConfigError, DataCorruptError, DataFileNotFoundError
from fa_bench.distributed import from_environment, shutdown
from fa_bench.errors import ConfigError, RunFolderBusy
from fa_bench.interrupts import RunInterrupted
from fa_bench.run import run, run_seeds
from fa_bench.validation import check_experiment_yaml

log = logging.getLogger("fa_bench")
USER_ERRORS = (ConfigError, RunFolderBusy, DataFileNotFoundError, DataCorruptError, DataConfigError)
SHOWN = ("test/error", "test/top5_error", "test/nse", "test/loss", "train/error", "train/nse")


def outcome_line(summary: dict, folder) -> str:
    final = summary.get("final") or {}
    shown = ", ".join(f"{k} {final[k]:.4g}" for k in SHOWN if isinstance(final.get(k), (int, float)))
    skipped = " (finished earlier: skipped)" if summary.get("skipped") else ""
    return (f"fa-run: {summary.get('status')}{skipped} after {summary.get('steps')} steps"
            f"{': ' + shown if shown else ''}; run folder {folder}")


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def _main(cfg: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    out_dir = hydra_cfg.runtime.output_dir
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    try:
        summaries = run_seeds(cfg, out_dir) if cfg.get("seeds") is not None else [run(cfg, out_dir)]
    except USER_ERRORS as err:
        log.error("%s", err)
        if sweeping:  # recorded as failed in its folder; the sweep goes on and counts it
            return None
        raise SystemExit(f"fa-run: {err}") from None
    except RunInterrupted as err:
        print(f"fa-run: {err}; metrics and summary written to {out_dir}"
              "; re-run the same command to resume", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    if not sweeping and from_environment().main:
        print(outcome_line(summaries[0], out_dir))
    # a sweeper that optimises (optuna, ...) reads the return value
    final = summaries[0].get("final") or {}
    return final.get("test/error", final.get("test/nse"))


@contextlib.contextmanager
def _mode_errors_reported():
    """Hydra first composes the config once to read hydra.mode, and swallows any error there
    (Hydra.get_mode: ``except Exception: return None``); it then falls back to a single run, where a
    sweep (seed=range(3)) stops with "requires --multirun" instead of the override that broke the
    composition (hydra.launcher.n_jobs=1 where the experiment's launcher has no n_jobs). So the error
    of that first composition is the one reported, as one line."""
    from hydra._internal.hydra import Hydra
    from hydra.errors import ConfigCompositionException

    swallowing = Hydra.get_mode

    def get_mode(self, config_name, overrides):
        try:
            cfg = self.compose_config(config_name=config_name, overrides=overrides, with_log_configuration=False,
                                      run_mode=RunMode.MULTIRUN, validate_sweep_overrides=False)
        except ConfigCompositionException as err:
            cause = f"\n{err.__cause__}" if err.__cause__ is not None else ""  # as Hydra prints it
            raise SystemExit(f"fa-run: {err}{cause}") from None
        except Exception:
            return swallowing(self, config_name, overrides)  # Hydra's own handling of anything else
        return cfg.hydra.mode

    Hydra.get_mode = get_mode
    try:
        yield
    finally:
        Hydra.get_mode = swallowing


def main():
    """fa-run: a YAML error in a config file the command names is reported as file:line before Hydra
    composes anything (Hydra's own report of it is a traceback)."""
    try:
        check_experiment_yaml(sys.argv[1:])
    except ConfigError as err:
        raise SystemExit(f"fa-run: {err}") from None
    try:
        with _mode_errors_reported():
            return _main()
    finally:
        shutdown()


def entry():
    """The ``fa-run`` command: ``main``, then out without the interpreter's teardown, which with torch
    imported takes ~0.5 s on this machine (a twentieth of a Lillicrap Fig. 2 sweep): the atexit handlers
    still run and every stream and log file is flushed first. An unexpected error keeps the ordinary
    exit, so its traceback prints as always."""
    try:
        main()
        code = 0
    except SystemExit as err:
        code = err.code
        if isinstance(code, str):  # SystemExit("fa-run: ...") prints its message and exits 1
            print(code, file=sys.stderr)
            code = 1
        code = 0 if code is None else code
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
