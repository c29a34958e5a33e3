"""The experiments fa-run knows: conf/experiment/*.yaml, each with a one-line description and its rough
CPU cost, read from the file's own header comments (never a hand-kept copy).

A file's header: `# @package _global_`, then a comment block whose first line names the paper figure
(the description) and a `# cost: ~N CPU-minutes (...)` line. `fa-run --help` lists them through the
`${fa_experiments:}` resolver (registered by fa_bench.config; used in conf/hydra/help/fa_bench.yaml).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

COST = re.compile(r"^cost:\s*(?P<cost>.+)$")
SENTENCE_END = (".", "!", "?", ")")


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str  # the header's first comment line ("…" where the sentence goes on)
    cost: str | None  # the `# cost:` line's text, None where the file has none


def header_comments(text: str) -> list[str]:
    """The comment lines at the top of a YAML file, up to its first line of YAML, without their `#`."""
    lines = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        lines.append(stripped.lstrip("#").strip())
    return lines


def read_experiment(path: str | Path) -> Experiment:
    path = Path(path)
    description, cost = "", None
    for line in header_comments(path.read_text(encoding="utf-8")):
        if line.startswith("@package"):
            continue
        match = COST.match(line)
        if match:
            cost = cost or match["cost"].strip()
        elif line and not description:
            description = line if line.endswith(SENTENCE_END) else line + " …"
    return Experiment(path.stem, description or "(no description)", cost)


def list_experiments(folder: str | Path) -> list[Experiment]:
    """Every experiment of a conf/experiment/ folder (fa_bench.config.conf_dir() / "experiment")."""
    return [read_experiment(p) for p in sorted(Path(folder).glob("*.yaml"))]


def format_experiments(experiments: list[Experiment], indent: int = 2) -> str:
    """One entry per experiment: its name and description, then its cost on the next line."""
    if not experiments:
        return " " * indent + "(none found in conf/experiment/)\n"
    width = max(len(e.name) for e in experiments) + 2
    pad = " " * (indent + width)
    out = []
    for e in experiments:
        out.append(f"{' ' * indent}{e.name:<{width}}{e.description}")
        out.append(f"{pad}cost: {e.cost or 'not estimated'}")
    return "\n".join(out) + "\n"


def help_text(folder: str | Path) -> str:
    """The experiment list for fa-run --help (the ``fa_experiments`` resolver, registered by
    fa_bench.config). Hydra passes the resolved help template through string.Template: a literal $
    must be $$."""
    return format_experiments(list_experiments(folder)).replace("$", "$$")
