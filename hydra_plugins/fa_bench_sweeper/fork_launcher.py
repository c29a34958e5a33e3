"""``hydra/launcher=fork``: a sweep's jobs in forked worker processes, one per core.

Why not joblib's launcher: Hydra's hard-codes joblib's loky backend, whose workers start as fresh
interpreters, so every worker imports torch and fa_bench again (~2.5 s on this machine's cores, most of
a small sweep's wall time: Lillicrap's Fig. 2 trains four 10-seed jobs of 2-4 s each). A forked worker
starts from fa-run's own process, where all of that is already imported and the sweep's config is
already composed, in a few milliseconds.

Each worker runs a job exactly as Hydra's basic launcher runs it in-process (``load_sweep_config``, then
``run_job``), so a job cannot tell the launchers apart; only the job's index and overrides go to the
worker, and only its JobReturn comes back. A job whose worker dies (killed, out of memory) comes back
as a failed JobReturn naming the cause, and the sweep goes on (fa_bench's sweeper counts it). Where
fork is not available (Windows), where this process has already initialised CUDA (a forked child
cannot use it), or where one worker is asked for, the jobs run in-process, one after another.
"""
import logging
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import open_dict

log = logging.getLogger(__name__)


@dataclass
class ForkLauncherConf:
    _target_: str = "hydra_plugins.fa_bench_sweeper.fork_launcher.ForkLauncher"
    n_jobs: int = -1  # workers: -1 one per core (os.cpu_count()), 1 in-process


ConfigStore.instance().store(group="hydra/launcher", name="fork", node=ForkLauncherConf, provider="fa_bench")

_LAUNCHER = None  # the launching process's launcher, inherited by its forked workers


def _run_job(idx: int, overrides: list[str]) -> JobReturn:
    """One job, in whichever process calls it (a forked worker reads the launcher it inherited)."""
    launcher = _LAUNCHER
    sweep_config = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = idx
        sweep_config.hydra.job.num = idx
    return run_job(hydra_context=launcher.hydra_context, task_function=launcher.task_function, config=sweep_config,
                   job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")


def _lost(overrides: list[str], err: BaseException) -> JobReturn:
    """A job whose worker never returned: failed, with the cause, as run_job records a raised error."""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret._return_value = RuntimeError(f"the job's worker process ended without a result: {type(err).__name__}: {err}")
    return ret


class ForkLauncher(Launcher):
    def __init__(self, n_jobs: int = -1) -> None:
        super().__init__()
        if not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1:
            raise ValueError(f"hydra.launcher.n_jobs must be -1 (one worker per core) or a positive integer, "
                             f"got {n_jobs!r}")
        self.n_jobs = n_jobs
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def workers(self, n_jobs_to_run: int) -> int:
        wanted = (os.cpu_count() or 1) if self.n_jobs == -1 else self.n_jobs
        torch = sys.modules.get("torch")
        if "fork" not in multiprocessing.get_all_start_methods() or (
                torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()):
            return 1
        return max(1, min(wanted, n_jobs_to_run))

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        global _LAUNCHER
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        workers = self.workers(len(job_overrides))
        log.info(f"Launching {len(job_overrides)} jobs in {workers} forked worker(s)" if workers > 1
                 else f"Launching {len(job_overrides)} jobs in-process")
        jobs = [(initial_job_idx + i, list(o)) for i, o in enumerate(job_overrides)]
        for idx, overrides in jobs:
            log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        _LAUNCHER = self
        try:
            if workers == 1:
                runs = []
                for idx, overrides in jobs:
                    runs.append(_run_job(idx, overrides))
                    configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
                return runs
            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as pool:
                futures = [pool.submit(_run_job, idx, overrides) for idx, overrides in jobs]
                runs = []
                for future, (_, overrides) in zip(futures, jobs):
                    try:
                        runs.append(future.result())
                    except Exception as err:  # the worker died (killed, out of memory): this job failed
                        log.error(f"job {' '.join(filter_overrides(overrides))}: {err!r}")
                        runs.append(_lost(overrides, err))
            return runs
        finally:
            _LAUNCHER = None
