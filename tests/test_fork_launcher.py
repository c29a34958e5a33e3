"""hydra/launcher=fork (hydra_plugins/fa_bench_sweeper/fork_launcher.py): jobs in forked workers give what
the same jobs give in-process, a worker that dies is a failed job and not a stopped sweep, and bad
settings are refused with the key and the valid values."""
import os
import subprocess
import sys

import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from hydra_plugins.fa_bench_sweeper import fork_launcher
from hydra_plugins.fa_bench_sweeper.fork_launcher import ForkLauncher

TINY = ["dataset=linear_teacher", "model=linear_30_20_10", "dataset.n_train=64", "dataset.n_test=32",
        "device=cpu", "trainer.progress=false", "trainer.max_steps=6", "trainer.batch_size=8", "trainer.eval_every=3", "metrics.every=3"]


def sweep(tmp_path, name, launcher):
    proc = subprocess.run([sys.executable, "-m", "fa_bench.cli", "-m", "rule=fa,bp,node_perturbation", "seed=range(2)",
                           *TINY, f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}/{name}",
                           f"results_dir={tmp_path}/{name}_results"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def metrics(folder):
    return {p.relative_to(folder).parts[0].rsplit("_", 1)[0] + "/" + p.parent.name: p.read_text()
            for p in sorted(folder.glob("*/seed*/metrics.csv"))}


def test_forked_jobs_write_what_in_process_jobs_write(tmp_path):
    forked_log = sweep(tmp_path, "forked", "fork")
    basic_log = sweep(tmp_path, "basic", "basic")
    assert "in 2 forked worker(s)" in forked_log and "forked worker" not in basic_log
    forked, basic = metrics(tmp_path / "forked"), metrics(tmp_path / "basic")
    assert len(forked) == 6 and forked == basic  # 3 rules x 2 seeds, every row of every run identical


def _job(idx, overrides):
    """A stand-in for the launcher's job: the second one's worker dies without a word."""
    if idx == 1:
        os._exit(7)
    return JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED, _return_value=os.getpid())


def test_a_dead_worker_is_a_failed_job_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.setattr(fork_launcher, "_run_job", _job)
    launcher = ForkLauncher(n_jobs=2)
    launcher.config = OmegaConf.create({"hydra": {"hydra_logging": None, "verbose": False,
                                                  "sweep": {"dir": str(tmp_path)}}})
    runs = launcher.launch([["a=0"], ["a=1"], ["a=2"]], initial_job_idx=0)
    assert [r.overrides for r in runs] == [["a=0"], ["a=1"], ["a=2"]]
    assert runs[1].status == JobStatus.FAILED and "ended without a result" in str(runs[1]._return_value)
    # the jobs before the death ran in a worker, not in this process
    assert runs[0].status == JobStatus.COMPLETED and runs[0].return_value != os.getpid()


@pytest.mark.parametrize("bad", [0, -2, "2"])
def test_bad_n_jobs_is_refused_with_the_valid_values(bad):
    with pytest.raises(ValueError, match=r"hydra.launcher.n_jobs must be -1 .* or a positive integer"):
        ForkLauncher(n_jobs=bad)


def test_an_initialised_cuda_keeps_the_jobs_in_process(monkeypatch):
    assert ForkLauncher(n_jobs=2).workers(4) == 2 and ForkLauncher(n_jobs=8).workers(3) == 3
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert ForkLauncher(n_jobs=2).workers(4) == 1
