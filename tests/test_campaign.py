"""The campaign runner (scripts/campaign.py) on the CPU with a tiny queue: it runs an item, collects it,
skips it when run again, and leaves what the budget does not reach unstarted; a later campaign on a
fresh machine (another runs/ folder) restores the archived finished runs instead of training them again,
and a sweep the budget stops is still collected and its finished runs archived, its stopped runs parked
with their checkpoints; a parked run resumes on another machine bit for bit (scripts/park.py)."""
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def campaign(queue, results, minutes, *flags):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "campaign.py"), "--queue", str(queue),
                           "--minutes", str(minutes), "--results", str(results), *flags, "device=cpu"],
                          capture_output=True, text=True, timeout=300)


TINY_FIG2 = ["dataset.n_train=60", "hydra.launcher.n_jobs=1"]


def test_a_tiny_queue_runs_collects_and_skips_on_the_second_pass(tmp_path):
    queue = tmp_path / "queue.yaml"
    queue.write_text(yaml.safe_dump([
        {"experiment": "lillicrap_fig2", "minutes": 1,
         "overrides": ["dataset.n_train=60", "rule=fa", "seed=range(2)",
                       "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={tmp_path}/sweep"]}]))
    first = campaign(queue, tmp_path / "results", minutes=4)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "lillicrap_fig2" in first.stdout and "finished" in first.stdout, first.stdout
    runs = (tmp_path / "results" / "lillicrap_fig2" / "runs.csv").read_text().splitlines()
    assert len(runs) == 3  # header + 2 seeds
    summaries = sorted((tmp_path / "sweep").rglob("summary.json"))
    stamps = [p.stat().st_mtime_ns for p in summaries]
    second = campaign(queue, tmp_path / "results", minutes=4)
    assert second.returncode == 0 and "finished" in second.stdout
    assert [p.stat().st_mtime_ns for p in summaries] == stamps  # finished runs were skipped, not retrained
    assert all(json.loads(p.read_text())["status"] == "completed" for p in summaries)
    spent = campaign(queue, tmp_path / "results", minutes=0)
    assert "not started (budget spent)" in spent.stdout
    assert (tmp_path / "results" / "campaign.log").read_text().count("# ") == 3


def test_a_fresh_machine_restores_the_archived_runs_instead_of_training_them(tmp_path):
    queue = tmp_path / "queue.yaml"
    queue.write_text(yaml.safe_dump([{"experiment": "lillicrap_fig2", "minutes": 1,
                                      "overrides": [*TINY_FIG2, "rule=fa,bp", "seed=range(2)"]}]))
    results = tmp_path / "results"
    first = campaign(queue, results, 4, "--runs", str(tmp_path / "machine_a"))
    assert first.returncode == 0, first.stderr[-2000:]
    assert "runs restored 0, newly archived 4" in first.stdout, first.stdout
    archive = results / "lillicrap_fig2" / "runs"
    archived = sorted(archive.rglob("summary.json"))
    assert len(archived) == 4 and not list(archive.rglob("checkpoint*")) and not list(archive.rglob(".lock"))
    before = {p.relative_to(archive): p.read_text() for p in archived}

    second = campaign(queue, results, 4, "--runs", str(tmp_path / "machine_b"),  # machine_a is gone
                      "--mirror", str(tmp_path / "out"))
    assert second.returncode == 0, second.stderr[-2000:]
    assert "runs restored 4, newly archived 0" in second.stdout, second.stdout
    swept = tmp_path / "machine_b" / "lillicrap_fig2"
    after = {p.relative_to(swept): p.read_text() for p in sorted(swept.rglob("summary.json"))}
    assert after == before  # skipped as finished: not one summary was rewritten by training
    runs = pd.read_csv(results / "lillicrap_fig2" / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}  # collected with the restored runs
    mirrored = tmp_path / "out" / "lillicrap_fig2"  # what a lent machine hands back
    assert (mirrored / "runs.csv").read_text() == (results / "lillicrap_fig2" / "runs.csv").read_text()
    assert len(list((mirrored / "runs").rglob("summary.json"))) == 4 and (tmp_path / "out" / "campaign.log").is_file()


def test_a_sweep_the_budget_stops_is_collected_and_its_finished_runs_archived(tmp_path):
    queue = tmp_path / "queue.yaml"
    # fa finishes at once; node perturbation, run after it (one job at a time), cannot finish in the budget
    queue.write_text(yaml.safe_dump([{"experiment": "lillicrap_fig2", "minutes": 1, "overrides": [
        "hydra.launcher.n_jobs=1", "rule=fa,node_perturbation", "seed=range(1)",
        "+per_rule.fa.dataset.n_train=60", "+per_rule.node_perturbation.trainer.epochs=1000"]}]))
    results = tmp_path / "results"
    out = campaign(queue, results, 1, "--grace", "15", "--runs", str(tmp_path / "runs"), "--park")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "stopped at the budget" in out.stdout and "newly archived 1" in out.stdout, out.stdout
    assert "unparked 0, parked 1" in out.stdout, out.stdout
    parked = [p.parent.name for p in (results / "lillicrap_fig2" / "parked").rglob("checkpoint.pt")]
    assert len(parked) == 1 and parked[0].startswith("node_perturbation_seed0_")  # the stopped run travels
    status = pd.read_csv(results / "lillicrap_fig2" / "runs.csv").set_index("rule")["status"].to_dict()
    assert status == {"fa": "completed", "node_perturbation": "interrupted"}
    archived = [p.parent.name for p in (results / "lillicrap_fig2" / "runs").rglob("summary.json")]
    assert len(archived) == 1 and archived[0].startswith("fa_seed0_")  # the interrupted run stays behind


def test_every_item_of_the_committed_paper_budget_queue_composes_and_validates():
    # a typo in the queue would cost a lent GPU session: each item must be a config fa-run accepts
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from fa_bench.config import compose_config
    from fa_bench.run import resolve_config

    sys.path.insert(0, str(REPO / "scripts"))
    from campaign import load_queue

    items = load_queue(REPO / "scripts" / "paper_budget_queue.yaml")
    assert [i["experiment"] for i in items][:2] == ["nokland_table1", "lillicrap_fig3a"]  # the order
    parser = OverridesParser.create()
    for item in items:
        # sweeps (seed=range(20)) compose as their first value: what each job of the sweep resolves
        plain = []
        for o in parser.parse_overrides(item["overrides"]):
            value = next(iter(o.sweep_iterator())) if o.is_sweep_override() else o.value()
            plain.append(f"{o.key_or_group}={value}")
        cfg = compose_config([f"experiment={item['experiment']}", "hydra.mode=RUN", *plain])
        resolve_config(cfg, command_line=[])
        assert item["minutes"] > 0


def test_a_dry_run_sums_the_estimates_and_says_where_the_budget_ends(tmp_path):
    queue = tmp_path / "queue.yaml"
    queue.write_text(yaml.safe_dump([{"experiment": e, "minutes": 2} for e in ("lillicrap_fig2", "lillicrap_fig5",
                                                                                "lillicrap_fig3d")]))
    out = campaign(queue, tmp_path / "results", 3, "--dry-run")
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "lillicrap_fig2: would run (estimate 2 min of 3.0 left)", out.stdout
    assert lines[1].startswith("lillicrap_fig5: would run (estimate 2 min of 1.0 left, the budget would stop it")
    assert lines[2] == "lillicrap_fig3d: not started (budget spent)"
    assert not (tmp_path / "results").exists()  # nothing ran, nothing written


def recollect(*args):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "recollect.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_recollect_rebuilds_the_results_from_the_archive_alone(tmp_path):
    # a sweep collects its own results; its finished runs archived, the machine's runs/ folder deleted,
    # recollect must give the same runs.csv from the archive, and follow a run folder moved out of it
    sweep = tmp_path / "machine" / "lillicrap_fig2"
    done = subprocess.run(["fa-run", "experiment=lillicrap_fig2", *TINY_FIG2, "rule=fa,bp", "seed=range(2)",
                           f"hydra.sweep.dir={sweep}", f"results_dir={tmp_path / 'own'}", "device=cpu"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    results = tmp_path / "results"
    made = recollect("lillicrap_fig2", "--results", results, "--add", sweep)
    assert made.returncode == 0, made.stderr[-2000:]
    assert "4 finished run(s) archived" in made.stdout and "4 completed" in made.stdout, made.stdout
    archive = results / "lillicrap_fig2" / "runs"
    assert not list(archive.rglob("checkpoint*")) and not list(archive.rglob(".lock"))
    shutil.rmtree(tmp_path / "machine")
    own = pd.read_csv(tmp_path / "own" / "lillicrap_fig2" / "runs.csv")
    again = recollect("lillicrap_fig2", "--results", results)
    assert again.returncode == 0, again.stderr[-2000:]
    rebuilt = pd.read_csv(results / "lillicrap_fig2" / "runs.csv")
    key = ["rule", "seed"]
    pd.testing.assert_frame_equal(rebuilt.sort_values(key).reset_index(drop=True),
                                  own.sort_values(key).reset_index(drop=True)[rebuilt.columns])
    assert (results / "lillicrap_fig2" / "fig2.png").is_file()  # an experiment's own folder: its figure too
    # a check's folder: its own archive, tables without the figure
    check = results / "lillicrap_fig2" / "some_check"
    moved = next(p for p in archive.iterdir() if p.name.startswith("bp_"))
    (check / "runs").mkdir(parents=True)
    moved.rename(check / "runs" / moved.name)
    assert recollect("lillicrap_fig2", "--results", results).returncode == 0
    assert recollect("lillicrap_fig2", "--results", results, "--dest", check).returncode == 0
    left, checked = (pd.read_csv(f / "runs.csv") for f in (results / "lillicrap_fig2", check))
    assert len(left) + len(checked) == 4 and "bp" in set(checked["rule"]) and not (check / "fig2.png").exists()


def test_a_parked_stacked_group_resumes_on_a_fresh_machine_bit_for_bit(tmp_path, monkeypatch):
    """park -> a new sweep folder (the next session's machine) -> unpark -> the same job resumes from the
    checkpoint that travelled and ends with the records of a run never stopped; once it has finished,
    parking again drops its copy, and unparking never overwrites what a machine already holds."""
    sys.path.insert(0, str(REPO / "scripts"))
    import fa_bench.trainer as trainer_module
    from campaign import park, unpark
    from fa_bench.config import compose_config
    from fa_bench.interrupts import RunInterrupted
    from fa_bench.run import run_seeds

    cfg = compose_config(["dataset=teacher_net", "model=tanh_30_20_10_10", "dataset.n_train=160",
                          "dataset.n_test=50", "rule=fa", "trainer.epochs=3", "trainer.batch_size=32",
                          "trainer.eval_every=4", "optimizer.momentum=0.9", "device=cpu",
                          "trainer.progress=false", "threads=1", "seeds=[0,1]"])
    run_seeds(cfg, tmp_path / "straight" / "job")
    calls = {"n": 0}

    def sigterm_after_five_steps():
        calls["n"] += 1
        return signal.SIGTERM if calls["n"] >= 5 else None

    with monkeypatch.context() as m:
        m.setattr(trainer_module, "requested", sigterm_after_five_steps)
        with pytest.raises(RunInterrupted):
            run_seeds(cfg, tmp_path / "old_machine" / "job")
    assert park(tmp_path / "old_machine", tmp_path / "parked") == 1
    assert (tmp_path / "parked" / "job" / "checkpoint.pt").is_file()
    assert not (tmp_path / "parked" / "job" / ".lock").exists()
    shutil.rmtree(tmp_path / "old_machine")

    assert unpark(tmp_path / "parked", tmp_path / "new_machine") == 1
    resumed = run_seeds(cfg, tmp_path / "new_machine" / "job")
    assert [s["resumed_from_step"] for s in resumed] == [5, 5]
    for seed in ("seed0", "seed1"):
        assert ((tmp_path / "new_machine" / "job" / seed / "metrics.csv").read_text()
                == (tmp_path / "straight" / "job" / seed / "metrics.csv").read_text())
    assert park(tmp_path / "new_machine", tmp_path / "parked") == 0
    assert not (tmp_path / "parked" / "job").exists()  # finished: its records are archived, not parked

    stale = tmp_path / "stale"
    (stale / "job").mkdir(parents=True)
    (stale / "job" / "checkpoint.pt").write_bytes(b"an older state")
    assert unpark(stale, tmp_path / "new_machine") == 0  # a finished run is never overwritten
