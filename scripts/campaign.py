"""Run a queue of experiment sweeps for as long as a budget of minutes lasts, in order (issue 14's GPU
campaign; on a CPU too). Each item is an ordinary fa-run sweep that collects into ``--results``. A
sweep still running when the budget ends gets SIGTERM: its runs checkpoint and say "interrupted", so
running the same queue again (on the same machine: checkpoints live in runs/) resumes them and skips
what finished; items the budget never reached are listed as not started. One line per item goes to
stdout and to ``<results>/campaign.log``.

    python scripts/campaign.py --minutes 8 --results results        # a lent GPU: the committed results
    python scripts/campaign.py --queue scripts/paper_budget_queue.yaml --minutes 600 --dry-run
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GRACE_S = 60  # after SIGTERM, time for the runs to write their checkpoints and summaries


def load_queue(path: Path) -> list[dict]:
    items = yaml.safe_load(Path(path).read_text()) or []
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("experiment"), str)
                and isinstance(item.get("minutes", 0), (int, float))):
            raise SystemExit(f"{path}: item {i} must be {{experiment: <name>, overrides: [...], minutes: N}}, "
                             f"got {item!r}")
        item.setdefault("overrides", [])
    return items


def run_item(item: dict, results: Path, seconds_left: float, extra: list[str]) -> tuple[str, float]:
    """(outcome, seconds taken) of one sweep, stopped by SIGTERM when the budget runs out."""
    command = [sys.executable, "-m", "fa_bench.cli", "-m", f"experiment={item['experiment']}",
               f"results_dir={results}", "trainer.progress=false", *item["overrides"], *extra]
    start = time.monotonic()
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group: SIGTERM reaches every worker
    try:
        out, _ = proc.communicate(timeout=max(seconds_left, 1))
        outcome = "finished" if proc.returncode == 0 else f"exit {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        outcome = "stopped at the budget (checkpointed; run the queue again to resume)"
    lines = [line for line in (out or "").splitlines() if "completed" in line or "failed" in line]
    return f"{outcome}; {lines[-1].strip() if lines else 'no sweep line'}", time.monotonic() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue", default=str(REPO / "scripts" / "paper_budget_queue.yaml"))
    p.add_argument("--minutes", type=float, required=True, help="the whole campaign's budget")
    p.add_argument("--results", default="results", help="where each sweep collects (results: the committed ones)")
    p.add_argument("--dry-run", action="store_true", help="list what would run, run nothing")
    p.add_argument("extra", nargs="*", help="overrides for every item (device=cuda, ...)")
    args = p.parse_args(argv)
    results = Path(args.results).resolve()
    deadline = time.monotonic() + args.minutes * 60
    log_lines = []
    for item in load_queue(Path(args.queue)):
        left = deadline - time.monotonic()
        name = " ".join([item["experiment"], *item["overrides"]])
        if left < 30:
            line = f"{name}: not started (budget spent)"
        elif args.dry_run:
            line = f"{name}: would run (estimate {item.get('minutes', '?')} min, {left / 60:.1f} min left)"
        else:
            outcome, took = run_item(item, results, left - GRACE_S, args.extra)
            line = f"{name}: {outcome} ({took / 60:.1f} min)"
        print(line, flush=True)
        log_lines.append(line)
    if not args.dry_run:
        results.mkdir(parents=True, exist_ok=True)
        with open(results / "campaign.log", "a") as f:
            f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}, budget {args.minutes} min\n")
            f.write("\n".join(log_lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
