"""`fa-run --help` (conf/hydra/help/fa_bench.yaml): every experiment in conf/experiment/ with its one-line
description and rough CPU cost, generated from the files themselves, and the data root ($FA_DATA)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fa_bench.config import conf_dir
from fa_bench.experiments import format_experiments, list_experiments, read_experiment

EXPERIMENTS = sorted((p.stem, p) for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


def first_comment_line(path):
    """The header's first comment line after `# @package _global_` and the `# cost:` line, read plainly."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if line.startswith("#") and text and not text.startswith(("@package", "cost:")):
            return text
    raise AssertionError(f"{path}: no description comment")


def test_every_experiment_file_has_a_description_and_a_cost():
    assert EXPERIMENTS
    for name, path in EXPERIMENTS:
        exp = read_experiment(path)
        assert exp.name == name
        assert exp.description.rstrip(" …") == first_comment_line(path)
        assert exp.cost and exp.cost.startswith("~") and "CPU-minutes" in exp.cost, (path, exp.cost)
        assert "paper scale" in exp.cost or "as configured" in exp.cost, (path, exp.cost)


def test_the_list_is_read_from_the_files_and_a_dollar_sign_survives(tmp_path):
    (tmp_path / "new_fig.yaml").write_text("# @package _global_\n# cost: ~1 CPU-minutes (reduced)\n"
                                           "# Someone 2030, Fig. 9: costs $5.\n# more text\nseed: 1\n")
    (tmp_path / "bare.yaml").write_text("seed: 2\n# Not a header\n")
    listing = format_experiments(list_experiments(tmp_path))
    assert "new_fig  Someone 2030, Fig. 9: costs $5." in listing
    assert "cost: ~1 CPU-minutes (reduced)" in listing
    assert "bare" in listing and "cost: not estimated" in listing


@pytest.mark.parametrize("module", ["fa_bench.cli", "fa_bench"])  # fa-run's module, and `python -m fa_bench`
def test_fa_run_help_lists_experiments_costs_and_the_data_root(tmp_path, module):
    env = {**os.environ, "FA_DATA": str(tmp_path / "my_data")}
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                          timeout=120, env=env)
    assert "Unsupported interpolation type fa_experiments" not in proc.stderr, \
        "the help resolver is not registered: fa_bench/config.py must `import fa_bench.experiments`"
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    lines = out.splitlines()
    for name, path in EXPERIMENTS:
        (i,) = [i for i, line in enumerate(lines) if line.split()[:1] == [name] and len(line.split()) > 1]
        assert first_comment_line(path) in lines[i], lines[i]
        assert lines[i + 1].strip().startswith("cost: ~") and "CPU-minutes" in lines[i + 1], lines[i + 1]
    assert "$FA_DATA is the data root (default ./data; data.root=<dir> overrides it)" in out
    assert f"This command's data root: {tmp_path / 'my_data'}" in out
    assert "fa-run experiment=<name>" in out and "hydra/launcher=submitit_slurm" in out
    groups = [line for line in lines if line.startswith("experiment: ")]  # Hydra's config groups
    assert groups and "lillicrap_fig2" in groups[0] and "blog_three_layer" in groups[0]
    assert "checkpoint_every: 10min" in out
