"""scripts/bench.py end to end in its smoke mode: it runs and writes its CSV and markdown (speeds untested)."""
import csv
import subprocess
import sys

from fa_bench import RULES

COLUMNS = ["device", "threads", "torch_version", "git_commit", "git_dirty", "batch_size", "repeats", "steps",
           "model", "rule", "measure", "seeds", "examples", "value", "unit", "reference", "ratio", "target",
           "passed", "note"]
MODELS = {"mlp_784_1000_10", "tanh_784_800_800_10", "moskovitz_mnist"}


def test_quick_bench_writes_csv_and_markdown(repo, tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "scripts/bench.py", "--quick", "--out", str(out)], cwd=repo,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out / "bench.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        rows = list(reader)
    assert {r["device"] for r in rows} >= {"cpu"}
    assert all(r["torch_version"] and r["git_commit"] and r["threads"] for r in rows)
    measures = {r["measure"] for r in rows}
    assert measures >= {"step", "step_reference", "step_floor", "epoch", "epoch_metrics", "epoch_reference",
                        "epoch_floor", "epoch_vs_floor", "probe", "seeds", "skipped"}
    # every registered rule is either timed or skipped with a reason, on every model
    for model in MODELS:
        timed = {r["rule"] for r in rows if r["model"] == model and r["measure"] == "step"}
        skipped = {r["rule"]: r["note"] for r in rows if r["model"] == model and r["measure"] == "skipped"}
        assert timed | set(skipped) == set(RULES), model
        assert all(skipped.values())
    step = [r for r in rows if r["measure"] == "step" and r["rule"] == "fa"]
    assert step and all(float(r["value"]) > 0 and float(r["ratio"]) > 0 and r["target"] == "<=1.05" for r in step)
    assert {int(r["seeds"]) for r in rows if r["measure"] == "seeds"} == {1, 2}
    md = (out / "bench.md").read_text()
    for heading in ("### Step", "### Epoch", "### Seed batching", "### Skipped", "Smoke run"):
        assert heading in md
    assert "pass" in md or "FAIL" in md
