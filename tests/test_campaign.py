"""The campaign runner (scripts/campaign.py) on the CPU with a tiny queue: it runs an item, collects it,
skips it when run again, and leaves what the budget does not reach unstarted."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def campaign(queue, results, minutes):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "campaign.py"), "--queue", str(queue),
                           "--minutes", str(minutes), "--results", str(results), "device=cpu"],
                          capture_output=True, text=True, timeout=300)


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
