"""``hydra/sweeper=seed_batching`` (fa-run's default): Hydra's basic sweeper, with the jobs that differ
only in ``seed`` merged into one job per group that trains those seeds together (``seeds=[...]``,
fa_bench.run.run_seeds), one ordinary run folder per seed inside the group's job folder.

Jobs that fail do not stop the sweep (each records ``failed`` and its error in its folder); when all
have run, one line counts the outcomes, and the sweep's job folders are listed in
``<sweep dir>/sweep.json`` (``jobs``, newest sweep only) for the collector, so runs of an earlier,
different sweep of the same experiment are never mixed in.

A group is merged only when its composed config can be seed-batched (fa_bench.run.batch_refusal);
otherwise its jobs stay separate, so a launcher can still spread them over processes, and one log line
says why. ``hydra.sweeper.seed_batching=false`` keeps every job separate.
"""
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


@dataclass
class SeedBatchingSweeperConf:
    _target_: str = "hydra_plugins.fa_bench_sweeper.seed_batching_sweeper.SeedBatchingSweeper"
    max_batch_size: Any = None
    params: Any = None
    seed_batching: bool = True


ConfigStore.instance().store(group="hydra/sweeper", name="seed_batching", node=SeedBatchingSweeperConf,
                             provider="fa_bench")


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


class SeedBatchingSweeper(BasicSweeper):
    def __init__(self, max_batch_size=None, params=None, seed_batching: bool = True):
        super().__init__(max_batch_size=max_batch_size, params=dict(params or {}))
        self.seed_batching = seed_batching
        self.composed: set = set()

    def sweep(self, arguments):
        """BasicSweeper.sweep, except that a failed job is counted instead of ending the sweep."""
        params_conf = self._parse_config()
        params_conf.extend(arguments)
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        self.overrides = self.split_arguments(parser.parse_overrides(params_conf), self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, job_index = [], 0
        self.started = time.time()  # a run whose summary is older was finished before: skipped
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)
            results = self.launcher.launch(batch, initial_job_idx=job_index)
            job_index += len(batch)
            returns.append(results)
        self.report([r for results in returns for r in results], sweep_dir)
        return returns

    def report(self, results, sweep_dir: Path):
        jobs, counts, failed = [], {}, []
        for r in results:
            folder = Path(r.hydra_cfg.hydra.runtime.output_dir) if r.hydra_cfg is not None else None
            jobs.append(None if folder is None else str(folder))
            if r.status == JobStatus.FAILED:
                counts["failed"] = counts.get("failed", 0) + 1
                failed.append(f"{folder}: {type(r._return_value).__name__}: {r._return_value}")
                continue
            for summary, written in _summaries(folder):
                skipped = written is not None and written < self.started
                key = summary.get("status", "missing") + (" (skipped)" if skipped else "")
                counts[key] = counts.get(key, 0) + 1
        manifest = {"jobs": jobs, "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "counts": counts}
        tmp = sweep_dir / f".sweep.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp, sweep_dir / "sweep.json")
        log.info("sweep: %s", ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no runs")
        for line in failed:
            log.error("job failed: %s", line)

    def get_job_batch(self):
        self.composed = set()  # merged jobs whose group's config _refusal has just composed
        batch = super().get_job_batch()
        return self.group_seeds(batch) if self.seed_batching else batch

    def validate_batch_is_legal(self, batch):
        """Hydra composes every job once here to fail early; a merged job's group was just composed by
        ``_refusal`` (the same overrides but ``seeds=[...]``, a plain key), so only the others are (a
        tenth of a second each: half of a small sweep's start-up)."""
        super().validate_batch_is_legal([job for job in batch if tuple(job) not in self.composed])

    def group_seeds(self, batch):
        groups = {}
        for overrides in batch:
            rest = tuple(o for o in overrides if _key(o) != "seed")
            seeds = [o.split("=", 1)[1] for o in overrides if _key(o) == "seed"]
            groups.setdefault(rest, []).append((list(overrides), seeds[0] if seeds else None))
        jobs = []
        for rest, members in groups.items():
            seeds = [s for _, s in members]
            reason = None if len(members) > 1 and None not in seeds else "one job"
            if reason is None:
                reason = self._refusal(members[0][0])
            if reason is not None:
                if len(members) > 1:
                    log.info("seed batching off for %s (%s): %d separate jobs", " ".join(rest) or "the sweep",
                             reason, len(members))
                jobs += [overrides for overrides, _ in members]
            else:
                jobs.append([*rest, f"seed={seeds[0]}", f"seeds=[{','.join(seeds)}]"])
                self.composed.add(tuple(jobs[-1]))
        return jobs

    def _refusal(self, overrides) -> str | None:
        from fa_bench.run import ConfigError, batch_refusal, resolve_config

        cfg = self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                 sweep_overrides=list(overrides))
        try:
            return batch_refusal(resolve_config(cfg))
        except ConfigError as err:  # the job will fail with this message itself; keep it on its own
            return f"bad config: {err}"


def _summaries(folder):
    """(summary, when it was written) for each run of a job: its own, or one per seed of a seed group
    (a missing one counts too)."""
    if folder is None:
        return [({"status": "missing"}, None)]
    seeds = sorted(p for p in folder.glob("seed*/") if p.is_dir())
    out = []
    for run_dir in seeds or [folder]:
        path = run_dir / "summary.json"
        out.append((json.loads(path.read_text()), path.stat().st_mtime) if path.is_file()
                   else ({"status": "missing"}, None))
    return out
