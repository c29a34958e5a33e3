"""No run lost or mixed up: checkpoints and resume (bit for bit), signals, the run-folder lock, skipping
finished runs, early divergence, and sweeps that only collect their own jobs."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import fa_bench.trainer as trainer_module
from fa_bench.config import compose_config
from fa_bench.errors import RunFolderBusy
from fa_bench.interrupts import RunInterrupted
from fa_bench.run import run, run_seeds
from fa_bench.run_folder import RunFolder

QUIET = ["device=cpu", "trainer.progress=false", "threads=1"]
MLP = ["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=160", "dataset.n_test=50", "rule=fa",
       "trainer.epochs=3", "trainer.batch_size=32", "trainer.eval_every=4", "metrics.every=3",
       "optimizer.momentum=0.9", *QUIET]
CONV = ["model=moskovitz_mnist", "rule=dfa", "dataset.n_train=96", "dataset.n_test=40", "trainer.epochs=2",
        "trainer.batch_size=32", "trainer.eval_every=2", "metrics.every=2", "optimizer=adam",
        "optimizer.lr=1e-3", *QUIET]
SPIKING = ["experiment=lillicrap_fig4", "hydra.mode=RUN", "spiking.sizes=[784,30,20]", "spiking.streams=4",
           "spiking.eval_every=24", "spiking.trace_steps=10", "+spiking.trace_neurons=4", "dataset.n_train=64",
           "dataset.n_test=40", *QUIET]


def read(path):
    return path.read_text() if path.is_file() else None


def interrupt_after(monkeypatch, steps: int):
    """The loop sees SIGTERM after ``steps`` steps, as if it had been sent then."""
    calls = {"n": 0}

    def requested():
        calls["n"] += 1
        return signal.SIGTERM if calls["n"] >= steps else None

    monkeypatch.setattr(trainer_module, "requested", requested)


def interrupted_checkpoint(monkeypatch, folder, overrides=MLP, steps=5):
    """Run ``overrides`` into ``folder`` until SIGTERM after ``steps`` steps; its checkpoint's path and state."""
    with monkeypatch.context() as m:
        interrupt_after(m, steps)
        with pytest.raises(RunInterrupted):
            run(compose_config(overrides), folder)
    path = folder / "checkpoint.pt"
    return path, torch.load(path, weights_only=False)


def records(folder):
    return {name: read(folder / name) for name in ("metrics.csv", "traces.csv")}


@pytest.mark.parametrize("name, overrides, stop_at", [("mlp fa", MLP, 7), ("conv dfa", CONV, 3),
                                                       ("spiking", SPIKING, 7)])
def test_an_interrupted_and_resumed_run_ends_with_the_same_records(name, overrides, stop_at, tmp_path, monkeypatch):
    run(compose_config(overrides), tmp_path / "straight")
    with monkeypatch.context() as m:
        interrupt_after(m, stop_at)  # mid-epoch, between evaluations
        with pytest.raises(RunInterrupted) as err:
            run(compose_config(overrides), tmp_path / "resumed")
    assert err.value.exit_code == 128 + signal.SIGTERM
    summary = json.loads((tmp_path / "resumed" / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] > 0 and summary["final"]
    assert (tmp_path / "resumed" / "checkpoint.pt").is_file()
    resumed = run(compose_config(overrides), tmp_path / "resumed")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == stop_at
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()  # a finished run needs none
    assert records(tmp_path / "resumed") == records(tmp_path / "straight")  # bit for bit, row for row
    straight = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert resumed["final"] == straight["final"] and resumed["steps"] == straight["steps"]


@pytest.mark.parametrize("earlier", [1e6, None])  # None: a checkpoint from before the count was kept
def test_a_resumed_run_counts_the_wall_time_of_its_earlier_segments(earlier, tmp_path, monkeypatch):
    """summary.json's wall_time is the run's, not only the last segment's: a run parked across sessions
    reports what it cost. The checkpoint's count is set by hand, so a count that is dropped shows."""
    path, state = interrupted_checkpoint(monkeypatch, tmp_path / "r")
    assert 0 < state["wall_time"] < 600  # the first segment's loop seconds
    if earlier is None:
        del state["wall_time"]
    else:
        state["wall_time"] = earlier
    torch.save(state, path)
    started = time.perf_counter()
    resumed = run(compose_config(MLP), tmp_path / "r")
    segment = time.perf_counter() - started
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 5
    assert (earlier or 0.0) < resumed["wall_time"] <= (earlier or 0.0) + segment
    assert resumed.get("wall_time_since_resume_only", False) is (earlier is None)
    assert json.loads((tmp_path / "r" / "summary.json").read_text())["wall_time"] == resumed["wall_time"]


def test_a_crash_resumes_from_the_last_periodic_checkpoint(tmp_path, monkeypatch):
    overrides = [*MLP, "trainer.checkpoint_every=4"]
    run(compose_config(overrides), tmp_path / "straight")
    original = trainer_module.Window.add_seeds
    calls = {"n": 0}

    def crash_on_the_seventh_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise RuntimeError("the machine went away")
        return original(self, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(trainer_module.Window, "add_seeds", crash_on_the_seventh_step)
        with pytest.raises(RuntimeError):
            run(compose_config(overrides), tmp_path / "crashed")
    assert json.loads((tmp_path / "crashed" / "summary.json").read_text())["status"] == "failed"
    resumed = run(compose_config(overrides), tmp_path / "crashed")
    assert resumed["resumed_from_step"] == 4
    assert records(tmp_path / "crashed") == records(tmp_path / "straight")


def test_a_seed_stacked_job_resumes_every_seed(tmp_path, monkeypatch):
    overrides = [*MLP, "seeds=[0,1,2]"]
    run_seeds(compose_config(overrides), tmp_path / "straight")
    with monkeypatch.context() as m:
        interrupt_after(m, 5)
        with pytest.raises(RunInterrupted):
            run_seeds(compose_config(overrides), tmp_path / "resumed")
    assert {json.loads((tmp_path / "resumed" / f"seed{s}" / "summary.json").read_text())["status"]
            for s in range(3)} == {"interrupted"}
    run_seeds(compose_config(overrides), tmp_path / "resumed")
    for s in range(3):
        assert records(tmp_path / "resumed" / f"seed{s}") == records(tmp_path / "straight" / f"seed{s}")


def test_a_finished_run_is_skipped_and_rerun_starts_afresh(tmp_path):
    first = run(compose_config(MLP), tmp_path / "r")
    mtime = (tmp_path / "r" / "metrics.csv").stat().st_mtime_ns
    again = run(compose_config(MLP), tmp_path / "r")
    assert again["skipped"] and again["final"] == first["final"]
    assert (tmp_path / "r" / "metrics.csv").stat().st_mtime_ns == mtime  # untouched
    fresh = run(compose_config([*MLP, "rerun=true"]), tmp_path / "r")
    assert "skipped" not in fresh and fresh["final"] == first["final"]


def test_one_run_folder_never_has_two_writers(tmp_path):
    with RunFolder(tmp_path / "r"):
        with pytest.raises(RunFolderBusy, match=f"being written by another fa-run \\(pid {os.getpid()}\\)"):
            run(compose_config(MLP), tmp_path / "r")
    assert not (tmp_path / "r" / "metrics.csv").exists()
    run(compose_config(MLP), tmp_path / "r")  # the lock is gone with its holder


def test_a_diverging_run_stops_within_100_steps_without_waiting_for_an_evaluation(tmp_path):
    summary = run(compose_config([*MLP, "optimizer.lr=50", "optimizer.momentum=0.99", "trainer.eval_every=10000",
                                  "trainer.epochs=100", "dataset.n_train=3200", "metrics.every=0"]), tmp_path / "r")
    assert summary["status"] == "diverged" and summary["steps"] <= 100, summary
    assert "batch loss" in summary["stop_reason"] or "train-window loss" in summary["stop_reason"]


def _fa_run(args, cwd, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "fa_bench.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


LONG = ["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=20000", "trainer.batch_size=1",
        "trainer.eval_every=500", "metrics.every=0", "rule=fa", "trainer.checkpoint_every=1000", *QUIET]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_run_cleanly_and_the_same_command_resumes(sig, tmp_path):
    proc = _fa_run(LONG, tmp_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.rglob("metrics.csv")):
        time.sleep(0.2)
    metrics = list(tmp_path.rglob("metrics.csv"))
    assert metrics, "the run never started"
    while time.monotonic() < deadline and metrics[0].read_text().count("\n") < 6:
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out
    lines = [line for line in err.splitlines() if line.startswith("fa-run:")]
    assert len(lines) == 1 and f"interrupted by {signal.Signals(sig).name}" in lines[0]
    folder = metrics[0].parent
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["steps"] < 20000
    assert (folder / "checkpoint.pt").is_file()
    proc = _fa_run([*LONG, "dataset.n_train=20000"], tmp_path)  # the same config: the same folder
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    assert f"resumed at step {summary['steps']}" in err + out
    assert json.loads((folder / "summary.json").read_text())["status"] == "completed"


def test_runs_of_one_command_share_a_folder_and_other_configs_do_not(tmp_path):
    short = ["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=64", "rule=fa", *QUIET]
    procs = [_fa_run([*short, f"seed={s}"], tmp_path) for s in (0, 1, 0)]
    outs = [p.communicate(timeout=300) for p in procs]
    folders = sorted(p.parent for p in tmp_path.rglob("summary.json"))
    assert len(folders) == 2  # seed 0 twice: one folder; seed 1: its own
    # the second seed-0 run was either skipped (the first had finished) or refused (it was still running)
    messages = outs[0][0] + outs[0][1] + outs[2][0] + outs[2][1]
    assert "skipped" in messages or "being written by another fa-run" in messages
    for folder in folders:
        rows = (folder / "metrics.csv").read_text().splitlines()
        assert len(rows) == len(set(rows))  # no writer doubled a row


def test_a_sweep_collects_only_its_own_jobs_and_a_rerun_skips_them(tmp_path):
    base = ["experiment=lillicrap_fig2", "rule=fa,bp", "seed=range(2)", "trainer.progress=false",
            f"hydra.sweep.dir={tmp_path}/sweep", f"results_dir={tmp_path}/results", "hydra.launcher.n_jobs=1"]
    for n in (200, 100):  # two different sweeps of one experiment into one sweep folder
        proc = subprocess.run([sys.executable, "-m", "fa_bench.cli", "-m", *base, f"dataset.n_train={n}"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    import pandas as pd

    runs = pd.read_csv(tmp_path / "results" / "lillicrap_fig2" / "runs.csv")
    assert len(runs) == 4 and set(runs["examples"]) == {100}
    proc = subprocess.run([sys.executable, "-m", "fa_bench.cli", "-m", *base, "dataset.n_train=100"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "sweep: 4 completed (skipped)" in proc.stderr + proc.stdout


def test_a_command_line_value_beats_the_experiments_per_rule(tmp_path):
    from fa_bench.run import resolve_config

    overrides = ["experiment=lillicrap_fig2", "hydra.mode=RUN", "rule=fa", "optimizer.lr=0.003"]
    cfg = resolve_config(compose_config(overrides), command_line=overrides)
    assert cfg.optimizer.lr == 0.003 and cfg.rule.scale == 0.5  # the rest of per_rule still applies
    assert resolve_config(compose_config(overrides[:3]), command_line=overrides[:3]).optimizer.lr == 0.01


def test_checkpoints_hold_the_optimizer_and_random_streams(tmp_path, monkeypatch):
    """brsf draws R_t every step from its own stream, dropout from the global one: both resume exactly."""
    overrides = [*MLP, "rule=brsf", "+model.dropout=0.2"]
    run(compose_config(overrides), tmp_path / "straight")
    with monkeypatch.context() as m:
        interrupt_after(m, 6)
        with pytest.raises(RunInterrupted):
            run(compose_config(overrides), tmp_path / "resumed")
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert {"engine", "window", "writers", "rng", "step", "batch_in_epoch"} <= set(state)
    assert state["engine"]["optimizer"]["state"] and state["engine"]["rule_rng"]
    run(compose_config(overrides), tmp_path / "resumed")
    assert records(tmp_path / "resumed") == records(tmp_path / "straight")


def test_a_null_option_added_later_keeps_every_run_key():
    """A run's folder (and its checkpoint) is keyed by its config: a new option whose default is null
    must not move earlier runs, while any set value must."""
    from omegaconf import open_dict

    from fa_bench.config import run_key

    cfg = compose_config(["rule=fa", "seed=3"])
    key = run_key(_root_=cfg)
    with open_dict(cfg):
        cfg.trainer.new_option = None
        cfg.new_group = {"level": None}
    assert run_key(_root_=cfg) == key
    with open_dict(cfg):
        cfg.trainer.new_option = 0.5
    assert run_key(_root_=cfg) != key


def test_a_checkpoint_from_before_a_null_option_existed_still_resumes(tmp_path, monkeypatch):
    """Code that gained an option with a null default must resume the runs an older version checkpointed
    (the run key already ignores nulls); any real change of config is still refused."""
    path, state = interrupted_checkpoint(monkeypatch, tmp_path / "r")
    for config in state["config"]:
        assert config["sparsity"] == 0.0 and config["save_activations"] is None
        del config["save_activations"]  # as a version without that option wrote it
    torch.save(state, path)
    resumed = run(compose_config(MLP), tmp_path / "r")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 5
    with monkeypatch.context() as m:
        interrupt_after(m, 5)
        with pytest.raises(RunInterrupted):
            run(compose_config(MLP), tmp_path / "s")
    with pytest.raises(Exception, match="written by a different config"):
        run(compose_config([*MLP, "optimizer.momentum=0.5"]), tmp_path / "s")


def test_a_checkpoint_resumes_under_another_results_dir_or_data_root(tmp_path, monkeypatch):
    """Where results are collected and where the data files live do not change what trains: the run key
    leaves them out, so the checkpoint must too (a parked run restored on another machine gets another
    data root). A setting that trains differently is still refused."""
    interrupted_checkpoint(monkeypatch, tmp_path / "r", [*MLP, "results_dir=/tmp/a"])
    with pytest.raises(Exception, match="written by a different config"):
        run(compose_config([*MLP, "results_dir=/tmp/b", "trainer.batch_size=16"]), tmp_path / "r")
    resumed = run(compose_config([*MLP, "results_dir=/tmp/b", f"data.root={tmp_path / 'elsewhere'}"]),
                  tmp_path / "r")
    assert resumed["status"] == "completed" and resumed["resumed_from_step"] == 5
