"""``hydra/sweeper=seed_batching`` (fa-run's default): Hydra's basic sweeper, with the jobs that differ
only in ``seed`` merged into one job per group that trains those seeds together (``seeds=[...]``,
fa_bench.run.run_seeds), one ordinary run folder per seed inside the group's job folder.

A group is merged only when its composed config can be seed-batched (fa_bench.run.batch_refusal);
otherwise its jobs stay separate, so a launcher can still spread them over processes, and one log line
says why. ``hydra.sweeper.seed_batching=false`` keeps every job separate.
"""
import logging
from dataclasses import dataclass
from typing import Any, Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore

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

    def get_job_batch(self):
        batch = super().get_job_batch()
        return self.group_seeds(batch) if self.seed_batching else batch

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
        return jobs

    def _refusal(self, overrides) -> Optional[str]:
        from fa_bench.run import ConfigError, batch_refusal, resolve_config

        cfg = self.hydra_context.config_loader.load_sweep_config(master_config=self.config,
                                                                 sweep_overrides=list(overrides))
        try:
            return batch_refusal(resolve_config(cfg))
        except ConfigError as err:  # the job will fail with this message itself; keep it on its own
            return f"bad config: {err}"
