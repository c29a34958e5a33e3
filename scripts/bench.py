"""The speed targets of issue 13, measured on fa_bench's own code paths in one process, with pass/fail.

fa_bench runs as ``fa-run`` runs it: Hydra composes the config, fa_bench.run builds model, loss and
optimizer (a seed group stacked as run.py stacks it), a step is RuleEngine.begin_step + train_step + the
window statistics train_loop adds, epochs are train_loop itself. Only the references are written here:
plain nn.Modules under loss.backward() + SGD, and BioTorch's BioModule when biotorch is importable.

step: every rule against the plain BP step on STEP_MODELS in blocks taking turns (round robin: a busy
machine's drifts hit all alike), ratio = median over rounds of rule block / plain block. metrics: one
epoch of train_loop at the default cadence, the probe timed where the loop calls it. small: Lansdell's
784-50-20-10 at batch 32, plain / 1 seed / 10 seeds stacked. fig2: ``fa-run experiment=lillicrap_fig2``
in a fresh sweep folder, beside its start-up (``--cfg job``), the jobs' wall times and the figure alone.

    python scripts/bench.py --threads 1 --out results/bench     # make bench
    python scripts/bench.py --quick --out /tmp/b                # every path, numbers meaningless
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from fa_bench import run as R
from fa_bench.config import compose_config
from fa_bench.engines.autograd import RuleEngine
from fa_bench.losses import get_loss
from fa_bench.models import build_model
from fa_bench.records import MetricsWriter, git_info
from fa_bench.rules import RULES
from fa_bench.seeding import generator
from fa_bench.stacking import seed_axis_loss, stack_models
from fa_bench.trainer import Window, train_loop

STEP_MODELS = ("mlp_784_1000_10", "nokland_2x800_tanh", "moskovitz_mnist")
STEP_TARGETS = {"fa": 1.03, "dfa": 0.95, "usf": 1.05, "frsf": 1.05, "usf_init": 1.05, "usf_sn": 1.05,
                "matched": 1.10, "brsf": 1.30, "np_feedback": 2.2}
BIOTORCH_MODES = ("fa", "dfa", "usf", "brsf", "frsf")  # rules BioTorch has too: fa_bench must be faster
METRICS_TARGET, FIG2_TARGET, FIG2_RUNS = 0.05, 10.0, 3  # probe time / rest of the epoch; s and runs, fa-run lillicrap_fig2
SMALL_MODEL, SMALL_BATCH, SMALL_SEEDS, SEEDS_TARGET = "lansdell_784_50_20_10", 32, 10, 5.0
SECTIONS = {"step": "Step (ratio to plain PyTorch BP)", "metrics": "Alignment metrics at the default cadence",
            "small": "Small nets", "fig2": "Lillicrap Fig. 2 end to end"}
COLUMNS = ["section", "model", "rule", "measure", "value", "unit", "reference", "ratio", "target", "passed", "note",
           "threads", "torch_version", "git_commit", "git_dirty", "load_average", "device"]


OVERRIDES: list[str] = []  # --set: on every config (the GPU check's trainer.precision=bf16, ...)


def cfg_of(model, rule, batch_size, *extra):
    """The resolved config fa-run would train (Hydra composes conf/), progress bar off."""
    cfg = compose_config([f"model={model}", f"rule={rule}", "dataset=mnist", f"trainer.batch_size={batch_size}",
                          "trainer.progress=false", *extra, *OVERRIDES])
    return R.resolve_config(cfg, command_line=[])


def engine_of(cfg, data, device, seeds=None):
    """A RuleEngine as fa_bench.run builds it: one seed, or ``seeds`` stacked (run._train_stacked)."""
    tcfg, model = R._train_config(cfg), None if seeds else R.build_model_on(cfg, data, device)
    if seeds is None:
        return RuleEngine(model, data, get_loss(cfg.loss), R.build_optimizer(cfg, model), tcfg, seeds=[int(cfg.seed)],
                          orders=[generator(int(cfg.seed), "order")])
    configs = R.seed_configs(cfg, seeds)
    model = stack_models([R.build_model_on(c, data, device) for c in configs], seeds)
    return RuleEngine(model, data, seed_axis_loss(get_loss(cfg.loss)), R.build_optimizer(cfg, model), tcfg,
                      seeds=list(seeds), orders=[generator(s, "order") for s in seeds])


def engine_step(engine):
    """The loop's step: begin_step, train_step, and the window statistics train_loop adds per step."""
    window, counter = Window(engine.task), iter(range(10**12))

    def step(batch):
        engine.begin_step(next(counter), 0)
        window.add_seeds(**engine.train_step(batch))
    return step


def plain_step(cfg, data, device, mode=None):
    """The same architecture as plain nn.Modules under loss.backward() + SGD; ``mode``: BioTorch's rule."""
    model = build_model(cfg.model.name, seed=int(cfg.seed), **R._kwargs(cfg.model)).to(device)
    if mode is not None:
        from biotorch.module.biomodule import BioModule
        with contextlib.redirect_stdout(io.StringIO()):  # its conversion report
            model = BioModule(model, mode=mode, output_dim=data.n_outputs).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=float(cfg.optimizer.lr))
    layout = torch.channels_last if cfg.trainer.get("channels_last") else torch.contiguous_format
    model.to(memory_format=layout).train()
    bf16 = cfg.trainer.get("precision") == "bf16"

    def step(idx):
        xb, yb = data.x_train[idx], data.y_train[idx]
        xb = xb.contiguous(memory_format=layout) if xb.dim() == 4 else xb
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(xb, yb, F.cross_entropy) if mode == "dfa" else model(xb)
            loss = F.cross_entropy(out, yb)
        loss.backward()
        optimizer.step()
    return step


def now():  # read at the edges of a timed block only: first waits for the device's queued work
    return (torch.cuda.synchronize() if torch.cuda.is_initialized() else None, time.perf_counter())[1]


def round_robin(contestants: dict, batches, warmup, steps, repeats, clock=now):
    """Seconds per step of each contestant, one value per round, blocks of ``steps`` taking turns."""
    for fn, i in ((fn, i) for fn in contestants.values() for i in range(warmup)):
        fn(batches[i % len(batches)])
    names, times = list(contestants), {k: [] for k in contestants}
    for r in range(repeats):
        shift = r % len(names)  # nobody always follows the same neighbour
        for k in names[shift:] + names[:shift]:
            start = clock()
            for i in range(steps):
                contestants[k](batches[(r * steps + i) % len(batches)])
            times[k].append((clock() - start) / steps)
    return times


def paired_ratio(a, b) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


class Bench:
    def __init__(self, args):
        self.args, self.rows = args, []
        self.meta = {"threads": torch.get_num_threads(), "torch_version": torch.__version__, **git_info(),
                     "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
                     "device": " ".join([args.device, *args.set])}

    def row(self, section, model, rule, measure, value, unit="s", reference="", ratio="", target=None, note="",
            lower_is_better=True):
        passed = "" if target is None else bool(ratio <= target if lower_is_better else ratio >= target)
        self.rows.append({**self.meta, "section": section, "model": model, "rule": rule, "measure": measure,
                          "value": value, "unit": unit, "reference": reference, "ratio": ratio,
                          "target": "" if target is None else f"{'<=' if lower_is_better else '>='}{target}",
                          "passed": passed, "note": note})
        shown = (f"  ratio {ratio:.3f}" if ratio != "" else "") + (
            "" if target is None else f"  target {self.rows[-1]['target']}: {'pass' if passed else 'FAIL'}")
        print(f"[{section}] {model} {rule} {measure}: {value:.4g} {unit}{shown}", note, flush=True)


def run_steps(bench, model_name, data, device):
    a = bench.args
    bs, steps = a.batch_size, max(1, a.steps // (5 if model_name == "moskovitz_mnist" else 1))
    base = cfg_of(model_name, "bp", bs)
    contestants, skipped = {"plain": plain_step(base, data, device)}, {}
    for rule in a.rules or sorted(RULES):
        try:
            engine = engine_of(cfg_of(model_name, rule, bs), data, device)
        except Exception as err:  # noqa: BLE001 - a rule that does not apply: say why, time the rest
            skipped[rule] = str(err).splitlines()[0]
            continue
        contestants[rule] = engine_step(engine)
        batches = list(engine.epoch_batches(0))
    for mode in [m for m in BIOTORCH_MODES if m in contestants] if a.biotorch else []:
        contestants[f"biotorch:{mode}"] = plain_step(base, data, device, mode=mode)
    times = round_robin(contestants, batches, a.warmup, steps, a.repeats)
    ref = statistics.median(times["plain"])
    bench.row("step", model_name, "plain", "step", ref * 1e3, "ms", note=f"plain PyTorch BP, batch {bs}")
    for name in [n for n in contestants if n != "plain" and not n.startswith("biotorch:")]:  # not references
        ratio = paired_ratio(times[name], times["plain"])
        bench.row("step", model_name, name, "step", statistics.median(times[name]) * 1e3, "ms", ref * 1e3, ratio,
                  STEP_TARGETS.get(name), "ratio to the plain PyTorch BP step")
        if f"biotorch:{name}" in times:
            bt = paired_ratio(times[f"biotorch:{name}"], times["plain"])
            bench.row("step", model_name, name, "vs_biotorch", statistics.median(times[f"biotorch:{name}"]) * 1e3,
                      "ms", bt, ratio / bt, 1.0, f"fa_bench / BioTorch {name} (BioTorch's ratio to plain: {bt:.3f})")
    for rule, why in skipped.items():
        bench.row("step", model_name, rule, "skipped", float("nan"), "", note=why)


def run_metrics(bench, model_name, data, device):
    """One epoch of train_loop at the default eval and probe cadence, the probe timed where the loop calls it."""
    a = bench.args
    for rule in a.metrics_rules:
        cfg = cfg_of(model_name, rule, a.batch_size, *([f"trainer.max_steps={a.epoch_steps}"] if a.epoch_steps else []))
        engine = engine_of(cfg, data, device)
        spent = []

        def timed(batch, probe=engine.probe, spent=spent):
            start = time.perf_counter()
            rows = probe(batch)
            spent.append(time.perf_counter() - start)
            return rows
        engine.probe = timed
        total, result = now(), train_loop(engine, R._train_config(cfg), [MetricsWriter(None)])[0]
        total = now() - total
        rest = total - sum(spent)
        bench.row("metrics", model_name, rule, "epoch", total, "s", rest, sum(spent) / rest, METRICS_TARGET,
                  f"{result.steps} steps, {len(spent)} probes (metrics.every={cfg.metrics.every}); "
                  f"ratio: probe time / rest of the loop")


def run_small(bench, data, device):
    a = bench.args
    cfg = cfg_of(SMALL_MODEL, "fa", SMALL_BATCH)
    one = engine_of(cfg, data, device)
    stacked = engine_of(cfg, data, device, seeds=list(range(SMALL_SEEDS)))
    contestants = {"plain": plain_step(cfg, data, device), "fa_bench": engine_step(one)}
    if a.biotorch:
        contestants["biotorch"] = plain_step(cfg, data, device, mode="fa")
    times = {**round_robin(contestants, list(one.epoch_batches(0)), a.warmup, a.steps * 5, a.repeats),
             **round_robin({"stacked": engine_step(stacked)}, list(stacked.epoch_batches(0)), a.warmup, a.steps * 5,
                           a.repeats)}
    rate = {k: 1 / statistics.median(v) for k, v in times.items()}
    for k in contestants:
        bench.row("small", SMALL_MODEL, "fa" if k != "plain" else "plain", f"steps_per_s_{k}", rate[k], "steps/s",
                  note=f"batch {SMALL_BATCH}" + (", BioTorch fa" if k == "biotorch" else ""))
    gain = SMALL_SEEDS * rate["stacked"] / rate["fa_bench"]
    bench.row("small", SMALL_MODEL, "fa", f"seed_steps_per_s_{SMALL_SEEDS}_stacked", SMALL_SEEDS * rate["stacked"],
              "seed-steps/s", rate["fa_bench"], gain, SEEDS_TARGET,
              f"ratio: {SMALL_SEEDS} seeds stacked / {SMALL_SEEDS} separate 1-seed runs (seed-steps per second)",
              lower_is_better=False)


def timed_command(cmd, env=None) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def run_fig2(bench):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                        os.environ.get("PYTHONPATH", "")])}
    totals = []
    for _ in range(bench.args.fig2_runs):  # each in a fresh sweep folder; the median, as every other row
        folder = Path(tempfile.mkdtemp(prefix="bench_fig2_"))
        base = ["fa-run", "experiment=lillicrap_fig2", f"hydra.sweep.dir={folder}", f"results_dir={folder}/results",
                *bench.args.fig2_overrides]
        total, proc = timed_command(base, env)
        if proc.returncode != 0:
            raise SystemExit(f"bench: fig2 failed:\n{proc.stderr[-3000:]}")
        totals.append(total)
    startup, total = timed_command(base + ["--cfg", "job"], env)[0], statistics.median(totals)
    walls = [json.loads(p.read_text())["wall_time"] for p in folder.glob("*/seed0/summary.json")]
    draw = ("import time; t = time.perf_counter(); from fa_bench.figures import make_figure; "
            f"make_figure('lillicrap_fig2', {str(folder / 'results')!r}); print(time.perf_counter() - t)")
    _, fig = timed_command([sys.executable, "-c", draw], env)
    bench.row("fig2", "linear_30_20_10", "", "end_to_end", total, "s", "", total, FIG2_TARGET,
              f"fa-run experiment=lillicrap_fig2: 4 rules x 10 seeds, batch 1, collect and figure; median of "
              f"{', '.join(f'{t:.2f}' for t in totals)} s")
    for measure, value, note in (
            ("startup", startup, "fa-run ... --cfg job: Python, torch, Hydra"),
            ("train_job_max", max(walls), f"longest of {len(walls)} jobs' train wall time (summary.json wall_time)"),
            ("figure", float(fig.stdout.strip() or "nan"), "make_figure alone, fresh process, imports included")):
        bench.row("fig2", "linear_30_20_10", "", measure, value, "s", note=note)


def markdown(rows, meta, quick) -> str:
    fmt = lambda v: "" if v in ("", None) else f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    verdict = lambda r: "" if r["passed"] == "" else ("pass" if r["passed"] else "**FAIL**") + f" ({r['target']})"  # noqa: E731
    out = ["# fa_bench speed bench (issue 13)", "",
           f"torch {meta['torch_version']}, {meta['threads']} thread(s), {meta['device']}, commit "
           f"{meta['git_commit'][:12]}{' (dirty tree)' if meta['git_dirty'] else ''}. Written by scripts/bench.py "
           "(`make bench`). Medians; ratios are measured within this one process, so they hold on a busy machine "
           "where the absolute times do not.", "",
           f"**Machine load:** load average {meta['load_average']} at the start and {os.getloadavg()[0]:.2f} at the "
           f"end, on {os.cpu_count()} cores" + (": this run shared the CPU with other jobs, so every absolute time "
           "here (seconds, steps/s) is inflated." if os.getloadavg()[0] > os.cpu_count() else "."), ""]
    out += ["**Smoke run (--quick): tiny counts, the numbers and verdicts mean nothing.**", ""] * quick
    for key, title in SECTIONS.items():
        rs = [r for r in rows if r["section"] == key and r["measure"] != "skipped"]
        out += [f"## {title}", "", "| model | rule | measure | value | unit | ratio | target | note |",
                "| --- | --- | --- | --- | --- | --- | --- | --- |"] * bool(rs) + [
            f"| {r['model']} | {r['rule']} | {r['measure']} | {fmt(r['value'])} | {r['unit']} | {fmt(r['ratio'])} "
            f"| {verdict(r)} | {r['note']} |" for r in rs] + [""] * bool(rs)
    out += ["## Skipped", ""] + [f"- {r['model']} / {r['rule']}: {r['note']}" for r in rows
                                 if r["measure"] == "skipped"]
    targets = [r for r in rows if r["passed"] != ""]
    out += ["", f"Targets: {sum(bool(r['passed']) for r in targets)} of {len(targets)} pass.", ""]
    return "\n".join(out)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--set", nargs="+", default=[], help="overrides for every fa_bench config")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=list(SECTIONS))
    p.add_argument("--models", nargs="+", default=list(STEP_MODELS))
    p.add_argument("--rules", nargs="+", default=None, help="step: these rules (default: every registered rule)")
    p.add_argument("--metrics-rules", nargs="+", default=["bp", "fa", "dfa", "usf", "frsf", "brsf", "matched"])
    p.add_argument("--metrics-model", default="mlp_784_1000_10")
    p.add_argument("--epoch-steps", type=int, default=None, help="metrics: cut the epoch at this many steps")
    for flag, default in (("--batch-size", 64), ("--steps", 20), ("--repeats", 15), ("--warmup", 5)):
        p.add_argument(flag, type=int, default=default)  # steps: per timing block (the convnet: a fifth)
    p.add_argument("--no-biotorch", dest="biotorch", action="store_false")
    p.add_argument("--out", default="results/bench")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    args.fig2_overrides, args.fig2_runs, unknown = [], FIG2_RUNS, sorted((set(args.rules or []) | set(args.metrics_rules)) - set(RULES))
    if unknown:
        p.error(f"unknown rule(s) {unknown}; valid: {', '.join(sorted(RULES))}")
    if args.quick:
        args.steps, args.repeats, args.warmup, args.batch_size = 1, 2, 1, 8
        args.epoch_steps, args.threads = args.epoch_steps or 3, args.threads or 1
        args.fig2_overrides, args.fig2_runs = ["dataset.n_train=30", "seed=range(2)"], 1
    args.biotorch = args.biotorch and importlib.util.find_spec("biotorch") is not None
    return args


def main(argv=None):
    args = parse(argv)
    OVERRIDES[:] = args.set
    warnings.filterwarnings("ignore", message="Using a non-full backward hook")  # BioTorch's layers
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():  # the CPU times would pass for CUDA ones
        raise SystemExit("bench: --device cuda but CUDA is not available here")
    bench, started = Bench(args), time.perf_counter()
    print(f"bench: load average {bench.meta['load_average']} on {os.cpu_count()} cores; BioTorch: {args.biotorch}")
    data = R.build_data(cfg_of("mlp_784_1000_10", "bp", args.batch_size), device)
    if args.quick:  # a sliver of the test set: the smoke run evaluates too
        data.x_test, data.y_test = data.x_test[:64], data.y_test[:64]
    for name in args.models if "step" in args.sections else []:
        run_steps(bench, name, data, device)
    for section, fn in (("metrics", lambda: run_metrics(bench, args.metrics_model, data, device)),
                        ("small", lambda: run_small(bench, data, device)), ("fig2", lambda: run_fig2(bench))):
        if section in args.sections:
            fn()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        (writer := csv.DictWriter(f, fieldnames=COLUMNS)).writeheader()
        writer.writerows(bench.rows)
    (out / "bench.md").write_text(markdown(bench.rows, bench.meta, args.quick))
    print(f"wrote {out / 'bench.csv'} and bench.md in {time.perf_counter() - started:.0f} s")
    return bench.rows


if __name__ == "__main__":
    main()
