"""Run a queue of experiment sweeps for as long as a budget of minutes lasts, in order (issue 14's GPU
campaign; on a CPU too). Each item is an ordinary fa-run sweep that collects into ``--results``. A
sweep still running when the budget ends gets SIGTERM: its runs checkpoint and say "interrupted", and
the campaign collects what the sweep finished; items the budget never reached are listed as not
started. One line per item goes to stdout and to ``<results>/campaign.log``.

Resuming across machines: a lent GPU is a fresh machine every time, and its runs/ folder is gone with
it. So every finished run folder (completed or diverged; its records, not its checkpoint) is archived
under ``<results>/<experiment>/runs/``, and restored into the sweep folder before the item runs again:
the sweep then skips it ("completed earlier, skipped") and collects it with the new ones. Commit the
archive with the results and the next session, on any machine, goes on where this one stopped. Runs
the budget interrupted start again there, unless ``--park`` is given: then each one is also copied,
checkpoint and all, to ``<results>/<experiment>/parked/`` and put back into the sweep folder before
the item runs again, so it resumes where it stopped (checkpoints are large: 7-24 MB for the 3-seed
Table 2a job, more for the deep Table 1 nets, so parking is asked for, not done by default).

    python scripts/campaign.py --minutes 8 --results results        # a lent GPU: the committed results
    python scripts/campaign.py --minutes 8 --mirror "$OUT" device=cuda  # the device tool: what comes back
    python scripts/campaign.py --minutes 170 --park --results results   # a CPU session; commit parked/ too
    python scripts/campaign.py --queue scripts/paper_budget_queue.yaml --minutes 600 --dry-run
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from fa_bench.checkpoint import FILE as CHECKPOINT
from fa_bench.collect import find_runs
from fa_bench.run_folder import RunFolder

REPO = Path(__file__).resolve().parents[1]
GRACE_S = 60  # default --grace: after SIGTERM, time for the runs to write their checkpoints and summaries
NOT_ARCHIVED = ("checkpoint", ".lock")  # name prefixes left behind: machine-local, large or transient


def load_queue(path: Path) -> list[dict]:
    items = yaml.safe_load(Path(path).read_text()) or []
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("experiment"), str)
                and isinstance(item.get("minutes", 0), (int, float))):
            raise SystemExit(f"{path}: item {i} must be {{experiment: <name>, overrides: [...], minutes: N}}, "
                             f"got {item!r}")
        item.setdefault("overrides", [])
    return items


def sweep_dir_of(item: dict, runs: Path) -> tuple[Path, list[str]]:
    """The item's sweep folder (its own ``hydra.sweep.dir=`` override, else ``runs/<experiment>``), and
    the override that puts it there (none when the item sets it)."""
    for override in item["overrides"]:
        if override.startswith("hydra.sweep.dir="):
            return Path(override.split("=", 1)[1]), []
    folder = runs / item["experiment"]
    return folder, [f"hydra.sweep.dir={folder}"]


def _finished_runs(root: Path) -> list[Path]:
    """Run folders under ``root`` that a re-run would skip (fa_bench.run_folder: completed or diverged)."""
    return [d for d in find_runs(root) if RunFolder(d).finished()] if root.is_dir() else []


def copy_finished(src: Path, dest: Path) -> int:
    """Copy the finished runs under ``src`` that ``dest`` does not hold finished to the same place under
    ``dest``: their records and Hydra's .hydra/, without checkpoints or locks. Archives a sweep folder's
    runs, and restores an archive into a sweep folder; returns how many runs it copied."""
    copied = 0
    for run in _finished_runs(src):
        target = dest / run.relative_to(src)
        if RunFolder(target).finished():
            continue
        for path in run.rglob("*"):
            rel = path.relative_to(run)
            if path.is_file() and not any(part.startswith(NOT_ARCHIVED) for part in rel.parts):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target / rel)
        copied += 1
    return copied


def checkpointed(root: Path) -> list[Path]:
    """Folders under ``root`` holding a checkpoint: an interrupted run's, or a stacked seed group's (its
    seeds' records in seed*/ below it). Hidden folders (Hydra's .hydra/) are not runs."""
    if not root.is_dir():
        return []
    return sorted(p.parent for p in root.rglob(CHECKPOINT)
                  if not any(part.startswith(".") for part in p.relative_to(root).parts[:-1]))


def park(src: Path, dest: Path) -> int:
    """Copy every run under ``src`` that stopped with a checkpoint to the same place under ``dest``,
    checkpoint and records together (the lock stays behind): what a fresh machine needs to resume it
    where it stopped. A run parked earlier is replaced by its newer state, and one that has finished
    since (it has no checkpoint any more) is removed from ``dest``: its records are archived instead.
    Returns how many runs it parked."""
    for old in checkpointed(dest):
        now = src / old.relative_to(dest)
        if now.is_dir() and not (now / CHECKPOINT).is_file():
            shutil.rmtree(old)
    parked = 0
    for run in checkpointed(src):
        target = dest / run.relative_to(src)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(run, target, ignore=shutil.ignore_patterns(".lock"))
        parked += 1
    return parked


def unpark(parked: Path, dest: Path) -> int:
    """Put the runs parked under ``parked`` back into the sweep folder ``dest`` so that the same command
    resumes them from their checkpoints. A run of which ``dest`` already holds a checkpoint or any
    summary (its own, or a stacked group's seeds') is left as it is: this machine's state is never
    overwritten. Returns how many runs it restored."""
    restored = 0
    for run in checkpointed(parked):
        target = dest / run.relative_to(parked)
        if (target / CHECKPOINT).is_file() or (target.is_dir() and any(target.rglob("summary.json"))):
            continue
        shutil.copytree(run, target, dirs_exist_ok=True)
        restored += 1
    return restored


def collect_stopped(item: dict, sweep_dir: Path, results: Path) -> tuple[str, int]:
    """Collect a sweep the budget stopped, with the experiment's settings: its own collect never ran and
    it listed no jobs (sweep.json comes at a sweep's end), so every run in the campaign's sweep folder
    for this experiment (this sweep's, and the finished ones restored into it) is taken. Returns
    collect_experiment's (status line, exit code); scripts/recollect.py collects an archive this way."""
    from fa_bench.callbacks import collect_experiment
    from fa_bench.config import compose_config

    cfg = compose_config([f"experiment={item['experiment']}"])
    return collect_experiment(cfg.experiment_name, sweep_dir, results, max_points=cfg.collect.max_points,
                              metrics=cfg.collect.metrics, every_run=True)


def run_item(item: dict, results: Path, seconds_left: float, extra: list[str], runs: Path,
             grace: float = GRACE_S, parking: bool = False) -> tuple[str, float]:
    """(outcome, seconds taken) of one sweep, stopped by SIGTERM when the budget runs out; its finished
    runs restored from and archived into ``<results>/<experiment>/runs/``, and with ``parking`` its
    stopped ones into ``<results>/<experiment>/parked/`` (see the module docstring)."""
    sweep_dir, where = sweep_dir_of(item, runs)
    archive = results / item["experiment"] / "runs"
    parked = results / item["experiment"] / "parked"
    restored = copy_finished(archive, sweep_dir)
    resumable = unpark(parked, sweep_dir) if parking else 0
    command = [sys.executable, "-m", "fa_bench.cli", "-m", f"experiment={item['experiment']}",
               f"results_dir={results}", "trainer.progress=false", *where, *item["overrides"], *extra]
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: SIGTERM reaches every worker
    try:
        out, _ = proc.communicate(timeout=max(seconds_left, 1))
        outcome, stopped = ("finished" if proc.returncode == 0 else f"exit {proc.returncode}"), False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        outcome, stopped = "stopped at the budget (checkpointed here; run the queue again to resume)", True
    lines = [line for line in (out or "").splitlines() if "completed" in line or "failed" in line]
    sweep_line = lines[-1].strip() if lines else "no sweep line"
    if stopped:
        sweep_line, _ = collect_stopped(item, sweep_dir, results)
    archived = copy_finished(sweep_dir, archive)
    parking_line = f", unparked {resumable}, parked {park(sweep_dir, parked)}" if parking else ""
    return (f"{outcome}; {sweep_line}; runs restored {restored}, newly archived {archived}{parking_line}",
            time.monotonic() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue", default=str(REPO / "scripts" / "paper_budget_queue.yaml"))
    p.add_argument("--minutes", type=float, required=True, help="the whole campaign's budget")
    p.add_argument("--results", default="results", help="where each sweep collects (results: the committed ones)")
    p.add_argument("--grace", type=float, default=GRACE_S, help="seconds a stopped sweep gets to checkpoint")
    p.add_argument("--runs", default=str(REPO / "runs"), help="sweep folders: <runs>/<experiment> (machine-local)")
    p.add_argument("--mirror", default=None, help="after each item, copy <results>/<experiment>/ (and the log) "
                   "here too: a lent machine's $OUT, the only folder that comes back")
    p.add_argument("--park", action="store_true", help="carry runs the budget stopped, with their checkpoints, "
                   "in <results>/<experiment>/parked/, and resume them from there on the next pass")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("extra", nargs="*", help="overrides for every item (device=cuda, ...)")
    args = p.parse_args(argv)
    results = Path(args.results).resolve()
    deadline = time.monotonic() + args.minutes * 60
    log_lines = []
    planned = 0.0  # --dry-run: the estimates of the items listed so far, as if each took its estimate
    for item in load_queue(Path(args.queue)):
        left = deadline - time.monotonic() - planned
        name = " ".join([item["experiment"], *item["overrides"]])
        if left < 30:
            line = f"{name}: not started (budget spent)"
        elif args.dry_run:
            estimate = float(item.get("minutes", 0)) * 60
            fits = "" if estimate <= left else ", the budget would stop it: its finished runs are collected"
            line = f"{name}: would run (estimate {estimate / 60:g} min of {left / 60:.1f} left{fits})"
            planned += estimate
        else:
            outcome, took = run_item(item, results, left - args.grace, args.extra, Path(args.runs).resolve(),
                                     args.grace, args.park)
            line = f"{name}: {outcome} ({took / 60:.1f} min)"
            if args.mirror and (results / item["experiment"]).is_dir():
                shutil.copytree(results / item["experiment"], Path(args.mirror) / item["experiment"],
                                dirs_exist_ok=True)
        print(line, flush=True)
        log_lines.append(line)
    if not args.dry_run:
        results.mkdir(parents=True, exist_ok=True)
        with open(results / "campaign.log", "a") as f:
            f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, budget {args.minutes} min\n")
            f.write("\n".join(log_lines) + "\n")
        if args.mirror:
            shutil.copy2(results / "campaign.log", Path(args.mirror) / "campaign.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
