"""Hydra callback: after an experiment's sweep, collect its runs into results/ and draw its figure, then
say in one line what became of the runs, and exit non-zero when any failed.

Hydra 1.3 runs callbacks through ``Callbacks._notify``, which catches every ``Exception`` a callback
raises and turns it into a warning: an ordinary exception from ``on_multirun_end`` would leave the
process's exit status 0. ``SystemExit`` is not an ``Exception`` (it is a ``BaseException``): it passes
``_notify`` and Hydra's ``run_and_report`` (which also catches ``Exception`` only) and ends the
process with its code. So the callback raises ``SystemExit(1)`` after collecting.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger(__name__)

FAILED = ("failed", "missing", "interrupted")  # statuses that make the sweep exit non-zero (diverged does not)


def status_line(status_counts: dict, sweep_dir) -> str:
    """'28 completed, 2 failed: see <sweep dir>', with ', K <status>' for every other status present
    (diverged, interrupted, missing: a job that wrote no summary.json)."""
    counts = {str(k): int(v) for k, v in status_counts.items()}
    parts = [f"{counts.pop('completed', 0)} completed", f"{counts.pop('failed', 0)} failed"]
    parts += [f"{n} {status}" for status, n in sorted(counts.items()) if n]
    return f"{', '.join(parts)}: see {sweep_dir}"


def exit_code(status_counts: dict) -> int:
    return 1 if any(int(status_counts.get(s, 0)) for s in FAILED) else 0


def collect_experiment(name: str, sweep_dir, results_dir, max_points: int = 400, metrics=None,
                       every_run: bool = False) -> tuple[str, int]:
    """Collect the sweep's runs into ``results_dir/<name>/``, write its summary table and figure(s);
    returns (the one status line, the exit code). Nothing here raises: a failing step is logged with its
    traceback and makes the exit code 1, and the steps after it still run. ``every_run``: every run
    folder under ``sweep_dir``, not only the newest sweep's jobs (a sweep stopped before it listed them)."""
    from fa_bench.collect import collect, sweep_jobs
    from fa_bench.figures import make_figure
    from fa_bench.tables import write_summary_table

    dest = Path(results_dir) / name
    jobs = None if every_run else sweep_jobs(sweep_dir)
    try:
        meta = collect(sweep_dir, dest, experiment=name, max_points=max_points, metrics=metrics, jobs=jobs)
    except Exception:
        log.exception("collecting %s into %s failed", sweep_dir, dest)
        return f"0 completed, collecting failed: see {sweep_dir}", 1
    code = exit_code(meta["status_counts"])
    if code:
        _log_failures(sweep_dir, jobs)
    written, broken = [], []
    for step, draw in (("summary table", lambda: [write_summary_table(dest)]),
                       ("figure", lambda: make_figure(name, results_dir))):
        try:
            written += draw()
        except Exception:
            log.exception("drawing the %s of %s failed", step, dest)
            broken.append(step)
    log.info("collected %d runs into %s (%s); written: %s", meta["n_runs"], dest, meta["status_counts"],
             ", ".join(str(p) for p in written) or "none")
    line = status_line(meta["status_counts"], sweep_dir)
    if broken:
        line += f" ({' and '.join(broken)} not drawn: see the log above)"
    return line, max(code, 1 if broken else 0)


def _log_failures(sweep_dir, jobs=None):
    """One warning per run that did not complete: its folder and its error."""
    from fa_bench.collect import _read_summary, _within, find_missing, find_runs

    records = [(d, _read_summary(d)) for d in find_runs(sweep_dir)] + [(d, s) for d, _, s in find_missing(sweep_dir)]
    if jobs is not None:
        jobs = [Path(j).resolve() for j in jobs]
        records = [(d, s) for d, s in records if _within(Path(d).resolve(), jobs)]
    for run_dir, summary in records:
        if summary.get("status") in FAILED:
            log.warning("%s: %s (rule %s, seed %s): %s", run_dir, summary.get("status"), summary.get("rule", "?"),
                        summary.get("seed", "?"), summary.get("error") or "no error recorded")


def _hydra_config_for(config: DictConfig):
    """Hydra 1.3 has no HydraConfig set in the sweep's own process when on_multirun_end runs, so a
    ``${hydra:...}`` interpolation (``results_dir: ${hydra:sweep.dir}/results``) would fail to resolve
    there: set it from the config the callback receives."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized() and "hydra" in config:
        HydraConfig.instance().set_config(config)


def _release_workers():
    """Every job has returned when the sweep ends, so the joblib launcher's idle loky workers are let go
    now, while collect and the figure run, instead of in loky's exit handler after them (about a
    second of a Fig. 2 sweep's wall time, spent waiting for workers to unload torch)."""
    pool = sys.modules.get("joblib.externals.loky.reusable_executor")
    executor = getattr(pool, "_executor", None)  # the one loky made, if any (never create one here)
    if executor is not None:
        executor.shutdown(wait=False)


class CollectResults(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        _release_workers()
        name = config.get("experiment_name")
        if not name:
            return  # an ad-hoc sweep: its run folders are the result
        _hydra_config_for(config)  # results_dir may read the sweep's folder: ${hydra:sweep.dir}/results
        sweep_dir = config.hydra.sweep.dir
        line, code = collect_experiment(name, sweep_dir, config.results_dir, max_points=config.collect.max_points,
                                        metrics=config.collect.metrics)
        (log.error if code else log.info)(line)
        print(line, file=sys.stderr if code else sys.stdout, flush=True)
        if code:
            raise SystemExit(code)  # passes Hydra's callback guard (it catches Exception only): exit status 1
