"""SLURM through Hydra's submitit launcher, installed with fa_bench (pyproject dependencies): a tiny sweep
runs through hydra/launcher=submitit_local, and hydra/launcher=submitit_slurm composes."""
import json
import subprocess
import sys

from fa_bench.config import compose_config


def test_a_tiny_sweep_through_submitit_local(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "fa_bench.cli", "-m", "hydra/launcher=submitit_local", "rule=fa,bp", "seed=range(2)",
         "dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=64", "trainer.progress=false",
         "device=cpu", "threads=1", f"hydra.sweep.dir={tmp_path}/sweep", "hydra.launcher.timeout_min=5",
         "hydra.launcher.cpus_per_task=1", f"results_dir={tmp_path}/results"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert (tmp_path / "sweep" / ".submitit").is_dir()  # the jobs went through submitit
    summaries = sorted((tmp_path / "sweep").rglob("summary.json"))
    # seed_batching: one job per rule, each holding seed0/ and seed1/ run folders
    assert len(summaries) == 4, summaries
    got = set()
    for path in summaries:
        summary = json.loads(path.read_text())
        assert summary["status"] == "completed", (path, summary.get("status"))
        got.add((summary["rule"], summary["seed"]))
        assert path.parent.name == f"seed{summary['seed']}"
    assert got == {("fa", 0), ("fa", 1), ("bp", 0), ("bp", 1)}


def test_submitit_slurm_composes():
    cfg = compose_config(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                          "hydra.launcher.timeout_min=120", "hydra.launcher.gpus_per_node=1"],
                         return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 120, 1)
    local = compose_config(["hydra/launcher=submitit_local"], return_hydra_config=True).hydra.launcher
    assert local._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
