"""Benchmark fa_bench's training step and epoch against plain PyTorch, in one process (issue 5).

For each model and each rule in the registry (rules that cannot apply are skipped with the reason):

- step: median time of one training step on the fa_bench path (convert + rule.compute_gradients +
  optimizer.step, what fa_bench.trainer does per step) beside the same model as ordinary nn.Modules
  trained with loss.backward() + SGD, same batches of real MNIST, same device; timed in blocks that
  take turns (round robin), the ratio being the median over rounds of rule block / reference block.
  MLPs also get the floor: the forward, backward-input and weight-gradient matmuls run bare.
- epoch: fa_bench.trainer.train on MNIST with the alignment metrics off and at the default cadence
  (conf/metrics/default.yaml), beside a plain PyTorch epoch loop that evaluates at the same steps; for
  the 784-1000-10 MLP also the floor epoch (bare matmuls of every step and every evaluation).
  Long models run a partial epoch (``epoch_examples``) with a test set cut in proportion, so that
  evaluation weighs on it as on a full epoch; the full epoch is projected from it.
- seeds: S seeds trained in one seed-batched run (fa_bench.batched) against S separate fa_bench runs.

    python scripts/bench.py                      # CPU, plus CUDA when available: results/bench/
    python scripts/bench.py --quick --out /tmp/b # a smoke run in well under a minute

Writes <out>/bench.csv (one row per measurement, with device, threads, torch version, commit, batch size
and repeats) and <out>/bench.md (the tables, ratios and a pass/fail column per target).
"""
from __future__ import annotations

import argparse
import csv
import math
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

import fa_bench
from fa_bench.config import conf_dir
from fa_bench.data import DataBundle, batches, load_dataset
from fa_bench.engines.autograd import RuleEngine, train
from fa_bench.losses import get_loss
from fa_bench.models import build_model
from fa_bench.optim import build_optimizer
from fa_bench.probe import AlignmentProbe
from fa_bench.records import MetricsWriter, git_info
from fa_bench.rules import RULES
from fa_bench.seeding import derive_seed, generator
from fa_bench.stacking import seed_axis_loss, stack_models
from fa_bench.trainer import TrainConfig, train_loop

BATCHED_RULES = tuple(name for name, cls in RULES.items() if cls.seed_batchable)

LR = 0.01
EVAL_BATCH = 10000  # TrainConfig's default eval_batch_size
EVAL_EVERY = TrainConfig.eval_every
FULL_EPOCH = 60000  # MNIST training examples

# the targets: (median) ratio to the plain-PyTorch BP step, metrics overhead, floor, seed batching
STEP_TARGETS = {"fa": 1.05, "usf": 1.05, "matched": 1.05, "dfa": 1.0}
METRICS_TARGET = 1.10  # epoch with metrics at the default cadence / epoch without
FLOOR_TARGETS = {"mlp_784_1000_10": 1.3}  # epoch / bare-matmul floor epoch
SEED_TARGET = 0.5  # our reading of "well under S separate runs" (S = 5, 20, small MLP)

COLUMNS = ["device", "threads", "torch_version", "git_commit", "git_dirty", "batch_size", "repeats", "steps",
           "model", "rule", "measure", "seeds", "examples", "value", "unit", "reference", "ratio", "target",
           "passed", "note"]


@dataclass
class Model:
    """A benchmarked model: fa_bench's own builder arguments, and how much of an epoch to time."""

    name: str
    build: dict  # build_model(**build)
    epoch_examples: int = FULL_EPOCH
    step_scale: float = 1.0  # fraction of --steps per timing block (the convnet is ~15x an MLP step)

    @property
    def mlp_sizes(self):
        return list(self.build["sizes"]) if self.build["name"] == "mlp" else None


@dataclass
class SeedModel:
    name: str
    build: dict  # build_model(**build), an MLP
    dataset: dict  # load_dataset(**dataset)
    loss: str
    rules: tuple | None = None  # None: every rule seed batching supports
    seeds: tuple = (1, 5, 20)
    targets: bool = False  # the "S seeds of a small MLP" targets apply


def model_conf(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(Path(conf_dir()) / "model" / f"{name}.yaml"))


MODELS = {
    "mlp_784_1000_10": Model("mlp_784_1000_10", model_conf("mlp_784_1000_10")),
    "tanh_784_800_800_10": Model("tanh_784_800_800_10", {"name": "mlp", "sizes": [784, 800, 800, 10],
                                                         "hidden_activation": "tanh"}, epoch_examples=19200),
    "moskovitz_mnist": Model("moskovitz_mnist", model_conf("moskovitz_mnist"), epoch_examples=6400,
                             step_scale=0.2),
}
SEED_MODELS = {
    # Lillicrap Fig. 2's learner on its linear teacher
    "seeds_small_mlp": SeedModel("seeds_small_mlp", model_conf("tanh_30_20_10"), {"name": "linear_teacher"}, "sse",
                                 targets=True),
    # the big MLPs are compute-bound, so batching gains little there: timed for fa only unless --seed-rules
    "seeds_mlp_784_1000_10": SeedModel("seeds_mlp_784_1000_10", MODELS["mlp_784_1000_10"].build, {"name": "mnist"},
                                       "cross_entropy", rules=("fa",)),
    "seeds_tanh_784_800_800_10": SeedModel("seeds_tanh_784_800_800_10", MODELS["tanh_784_800_800_10"].build,
                                           {"name": "mnist"}, "cross_entropy", rules=("fa",)),
}


# ---------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------
class Clock:
    """perf_counter that waits for the device at the edges of a timed block (never inside a step)."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()


def round_robin(contestants: dict, batch_list, warmup, steps, repeats, clock) -> dict[str, list[float]]:
    """Seconds per step of each contestant, one value per round; contestants take turns in blocks of
    ``steps`` so slow drifts of a busy machine hit all of them alike."""
    for fn in contestants.values():
        for i in range(warmup):
            fn(batch_list[i % len(batch_list)])
    names = list(contestants)
    times = {k: [] for k in names}
    for r in range(repeats):
        shift = r % len(names)  # rotate who goes first: nobody always follows the same neighbour
        for k in names[shift:] + names[:shift]:
            start = clock()
            for i in range(steps):
                contestants[k](batch_list[(r * steps + i) % len(batch_list)])
            times[k].append((clock() - start) / steps)
    return times


def paired_ratio(a: list[float], b: list[float]) -> float:
    return statistics.median(x / y for x, y in zip(a, b))


# ---------------------------------------------------------------------------------------------------
# what is timed
# ---------------------------------------------------------------------------------------------------
def build(spec: Model, device, seed=0):
    kwargs = dict(spec.build)
    return build_model(kwargs.pop("name"), seed=seed, **kwargs).to(device)


def converted(spec: Model, rule: str, data: DataBundle, device, seed=0):
    """(model, rule object, optimizer) as fa_bench.run.build makes them."""
    model = fa_bench.convert(build(spec, device, seed), rule, example_input=data.x_train[:2], seed=seed)
    return model, fa_bench.rule_of(model), build_optimizer(model, "sgd", lr=LR)


def fa_step(spec, rule, data, device):
    model, rule_obj, optimizer = converted(spec, rule, data, device)
    loss_fn = get_loss("cross_entropy")

    def step(idx):
        xb, yb = data.x_train[idx], data.y_train[idx]
        optimizer.zero_grad(set_to_none=True)
        rule_obj.compute_gradients(model, xb, yb, loss_fn)
        optimizer.step()

    return step


def plain_step(spec, data, device):
    model = build(spec, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def step(idx):
        xb, yb = data.x_train[idx], data.y_train[idx]
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        optimizer.step()

    return step


def floor_step(sizes, data, device):
    """The matrix products of one MLP step, bare: an addmm per layer forward, then top down each layer's
    weight gradient δᵀh and (above the first layer) the error sent down, δW. Nothing else: no
    nonlinearity, loss, bias gradient or update."""
    g = generator(0, "bench_floor")
    Ws = [torch.randn(o, i, generator=g).to(device) * 0.01 for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [torch.zeros(o, device=device) for o in sizes[1:]]

    def step(idx):
        h = data.x_train[idx].flatten(1)
        inputs = []
        for W, b in zip(Ws, bs):
            inputs.append(h)
            h = torch.addmm(b, h, W.t())
        delta = h
        for layer in reversed(range(len(Ws))):
            torch.mm(delta.t(), inputs[layer])
            if layer:
                delta = torch.mm(delta, Ws[layer])

    def evaluate(x):
        for chunk in x.split(EVAL_BATCH):
            h = chunk.flatten(1)
            for W, b in zip(Ws, bs):
                h = torch.addmm(b, h, W.t())

    return step, evaluate


def n_evals(total_steps):
    """How many test evaluations fa_bench.trainer.train runs in ``total_steps`` steps."""
    return 1 + (total_steps - 1) // EVAL_EVERY + 1


def fa_epoch(spec, rule, data, steps, batch_size, metrics_every, device, clock):
    model, rule_obj, optimizer = converted(spec, rule, data, device)
    cfg = TrainConfig(epochs=1, max_steps=steps, batch_size=batch_size, metrics_every=metrics_every, progress=False)
    torch.manual_seed(derive_seed(0, "global"))
    start = clock()
    result = train(model, rule_obj, data, get_loss("cross_entropy"), optimizer, cfg, MetricsWriter(None),
                   generator(0, "order"), seed=0)
    return clock() - start, result, model


def plain_epoch(spec, data, steps, batch_size, device, clock):
    """An ordinary PyTorch loop over the same batches, evaluating at the trainer's steps (no per-step stats)."""
    model = build(spec, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)

    def evaluate():
        model.eval()
        with torch.no_grad():
            out = torch.cat([model(x) for x in data.x_test.split(EVAL_BATCH)])
            F.cross_entropy(out, data.y_test).item()
            (out.argmax(1) != data.y_test).float().mean().item()
        model.train()

    start = clock()
    evaluate()
    step = 0
    for idx in batches(data.x_train.shape[0], batch_size, generator(0, "order"), device):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
        optimizer.step()
        step += 1
        if step % EVAL_EVERY == 0 or step == steps:
            evaluate()
        if step == steps:
            break
    return clock() - start


def probe_time(model, data, batch_size, clock, repeats):
    probe = AlignmentProbe(model, get_loss("cross_entropy"))
    xb, yb = data.x_train[:batch_size], data.y_train[:batch_size]
    probe.measure(xb, yb)
    times = []
    for _ in range(repeats):
        start = clock()
        probe.measure(xb, yb)
        times.append(clock() - start)
    return statistics.median(times)


def separate_runs(spec: SeedModel, rule, data, seeds, steps, batch_size, device, clock):
    """S fa_bench runs one after the other, as a multirun would (model build included)."""
    kwargs = dict(spec.build)
    name = kwargs.pop("name")
    loss_fn = get_loss(spec.loss)
    statuses = []
    start = clock()
    for seed in seeds:
        model = fa_bench.convert(build_model(name, seed=seed, **kwargs).to(device), rule, seed=seed)
        optimizer = build_optimizer(model, "sgd", lr=LR)
        torch.manual_seed(derive_seed(seed, "global"))
        cfg = TrainConfig(max_steps=steps, batch_size=batch_size, eval_every=10**9, metrics_every=0, progress=False)
        statuses.append(train(model, fa_bench.rule_of(model), data, loss_fn, optimizer, cfg, MetricsWriter(None),
                              generator(seed, "order"), seed=seed).status)
    return clock() - start, statuses


def batched_run(spec: SeedModel, rule, data, seeds, steps, batch_size, clock):
    """S seeds stacked into one model (fa_bench.stacking) under the trainer's own loop."""
    kwargs = dict(spec.build)
    name = kwargs.pop("name")
    start = clock()
    device = data.x_train.device
    models = [fa_bench.convert(build_model(name, seed=s, **kwargs).to(device), rule, seed=s) for s in seeds]
    model = stack_models(models, list(seeds))
    cfg = TrainConfig(max_steps=steps, batch_size=batch_size, eval_every=10**9, metrics_every=0, progress=False)
    engine = RuleEngine(model, data, seed_axis_loss(get_loss(spec.loss)), build_optimizer(model, "sgd", lr=LR), cfg,
                        seeds=list(seeds), orders=[generator(s, "order") for s in seeds])
    results = train_loop(engine, cfg, [MetricsWriter(None) for _ in seeds])
    return clock() - start, [r.status for r in results]


# ---------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------
@dataclass
class Bench:
    args: argparse.Namespace
    device: torch.device
    meta: dict
    rows: list  # shared by every device's Bench

    def row(self, model, rule, measure, value, unit="s", reference=None, ratio=None, target=None, seeds=None,
            examples=None, steps=None, note=""):
        passed = "" if target is None or ratio is None else bool(ratio <= target)
        self.rows.append({**self.meta, "device": str(self.device), "steps": steps if steps is not None else "",
                          "model": model, "rule": rule, "measure": measure, "seeds": seeds or "",
                          "examples": examples or "", "value": value, "unit": unit,
                          "reference": "" if reference is None else reference, "ratio": "" if ratio is None else ratio,
                          "target": "" if target is None else f"<={target}", "passed": passed, "note": note})
        verdict = "" if passed == "" else f" (target <= {target}: {'pass' if passed else 'FAIL'})"
        shown = f"{ratio:.3f}x" if ratio is not None else ""
        print(f"  {self.device} {model} {rule or '-'} {measure}{f' S={seeds}' if seeds else ''}: "
              f"{value:.4g} {unit} {shown}{verdict} {note}".rstrip(), flush=True)


def applicable_rules(args, bench: Bench, model: str) -> list[str]:
    rules = []
    for name in sorted(RULES, key=lambda n: (n != "bp", n)):  # bp first: the reference rule
        if args.rules and name not in args.rules:
            continue
        if not RULES[name].uses_backward:
            reason = "learns without a backward pass: nothing to compare with autograd's step"
            print(f"  skip {name} on {model}: {reason}")
            bench.row(model, name, "skipped", math.nan, unit="", note=reason)
            continue
        rules.append(name)
    return rules


def run_model(bench: Bench, spec: Model, data: DataBundle):
    args, device, clock = bench.args, bench.device, Clock(bench.device)
    bs = args.batch_size
    g = generator(0, "bench_batches")
    n = data.x_train.shape[0]
    batch_list = [i.to(device) for i in torch.randperm(n, generator=g)[: 64 * bs].split(bs)]
    steps = max(1, round(args.steps * spec.step_scale))
    contestants = {"reference": plain_step(spec, data, device)}
    rules = []
    for rule in applicable_rules(args, bench, spec.name):
        try:
            contestants[rule] = fa_step(spec, rule, data, device)
        except (ValueError, TypeError) as err:  # convert refuses a rule that cannot apply to this model
            print(f"  skip {rule} on {spec.name}: {err}")
            bench.row(spec.name, rule, "skipped", math.nan, unit="", note=str(err))
            continue
        rules.append(rule)
    floor_eval = None
    if spec.mlp_sizes:
        contestants["floor"], floor_eval = floor_step(spec.mlp_sizes, data, device)
    times = round_robin(contestants, batch_list, args.warmup, steps, args.repeats, clock)
    ref = times["reference"]
    bench.row(spec.name, "", "step_reference", statistics.median(ref), steps=steps, note="plain nn.Module + autograd")
    if "floor" in times:
        bench.row(spec.name, "", "step_floor", statistics.median(times["floor"]), reference=statistics.median(ref),
                  ratio=paired_ratio(times["floor"], ref), steps=steps, note="bare matmuls; ratio to reference")
    for rule in rules:
        bench.row(spec.name, rule, "step", statistics.median(times[rule]), reference=statistics.median(ref),
                  ratio=paired_ratio(times[rule], ref), target=STEP_TARGETS.get(rule), steps=steps,
                  note="ratio: median over rounds of fa_bench / plain step")
        if "floor" in times:
            bench.row(spec.name, rule, "step_vs_floor", statistics.median(times[rule]),
                      reference=statistics.median(times["floor"]), ratio=paired_ratio(times[rule], times["floor"]),
                      steps=steps)
    if args.epoch_examples == 0:
        return
    floor_step_time = statistics.median(times["floor"]) if "floor" in times else None
    run_epochs(bench, spec, data, rules, floor_step_time, floor_eval)


def run_epochs(bench: Bench, spec: Model, data: DataBundle, rules, floor_step_time, floor_eval):
    args, device, clock = bench.args, bench.device, Clock(bench.device)
    bs = args.batch_size
    examples = min(args.epoch_examples or spec.epoch_examples, data.x_train.shape[0])
    steps = math.ceil(examples / bs)
    full_steps = math.ceil(data.x_train.shape[0] / bs)
    # a partial epoch evaluates on a test set cut so that evaluation is the same share of it as of a full epoch
    test_share = (n_evals(full_steps) * data.x_test.shape[0]) * (steps / full_steps) / n_evals(steps)
    n_test = max(1, min(data.x_test.shape[0], round(test_share)))
    sub = DataBundle(data.x_train, data.y_train, data.x_test[:n_test], data.y_test[:n_test], data.task, data.n_outputs)
    project = full_steps / steps
    every = int(OmegaConf.load(Path(conf_dir()) / "metrics" / "default.yaml").every)

    def probes(n_steps):  # the trainer probes at steps 0, every, 2·every, … and once more at the end
        return math.ceil(n_steps / every) + 1

    note = "" if steps == full_steps else f"partial epoch ({examples} examples, {n_test} test): full ≈ ×{project:.2f}"
    ref = statistics.median(plain_epoch(spec, sub, steps, bs, device, clock) for _ in range(args.epoch_repeats))
    bench.row(spec.name, "", "epoch_reference", ref, examples=examples, steps=steps, note=note)
    floor = None
    if floor_step_time is not None:
        floor_eval(sub.x_test)  # warm-up
        start = clock()
        floor_eval(sub.x_test)
        eval_time = clock() - start
        floor = floor_step_time * steps + eval_time * n_evals(steps)
        bench.row(spec.name, "", "epoch_floor", floor, examples=examples, steps=steps,
                  note="bare matmuls: every step's and every evaluation's")
    for rule in rules:
        off, on = [], []
        for _ in range(args.epoch_repeats):
            t_off, result, _ = fa_epoch(spec, rule, sub, steps, bs, 0, device, clock)
            t_on, _, model = fa_epoch(spec, rule, sub, steps, bs, every, device, clock)
            off.append(t_off)
            on.append(t_on)
        t_off, t_on = statistics.median(off), statistics.median(on)
        status = "" if result.status == "completed" else f"run {result.status}; "
        bench.row(spec.name, rule, "epoch", t_off, reference=ref, ratio=t_off / ref, examples=examples, steps=steps,
                  note=status + "metrics off; ratio to the plain PyTorch epoch")
        # a partial epoch holds more probes per step than a full one (the one at the end): scale the measured
        # cost of its probes to a full epoch's count (on a full epoch this is plain on / off)
        overhead = (t_on - t_off) / probes(steps) * probes(full_steps) / (t_off * project)
        bench.row(spec.name, rule, "epoch_metrics", t_on, reference=t_off, ratio=1 + overhead, target=METRICS_TARGET,
                  examples=examples, steps=steps,
                  note=f"metrics every {every} steps; ratio: 1 + (on - off) per probe × {probes(full_steps)} probes "
                       f"/ full epoch off ({probes(steps)} probes measured)"),
        t_probe = probe_time(model, sub, bs, clock, args.probe_repeats)
        estimate = 1 + probes(full_steps) * t_probe / (t_off * project)
        bench.row(spec.name, rule, "probe", t_probe, reference=t_off * project, ratio=estimate, examples=FULL_EPOCH,
                  note=f"one probe; ratio: 1 + {probes(full_steps)} probes / full epoch (metrics off)")
        if floor is not None:
            bench.row(spec.name, rule, "epoch_vs_floor", t_off, reference=floor, ratio=t_off / floor,
                      target=FLOOR_TARGETS.get(spec.name), examples=examples, steps=steps)


def run_seeds(bench: Bench, spec: SeedModel, datasets: dict):
    args, device, clock = bench.args, bench.device, Clock(bench.device)
    data = datasets[spec.dataset["name"]]
    # every run evaluates at its start and end: a 1000-example test set keeps that from swamping 50 steps
    data = DataBundle(data.x_train, data.y_train, data.x_test[:1000], data.y_test[:1000], data.task, data.n_outputs)
    wanted = args.seed_rules or spec.rules or BATCHED_RULES
    rules = [r for r in BATCHED_RULES if r in wanted and (not args.rules or r in args.rules)]
    for name in sorted(RULES):
        if name not in BATCHED_RULES and (not args.rules or name in args.rules):
            reason = f"seed batching supports {', '.join(BATCHED_RULES)}"
            print(f"  skip {name} on {spec.name}: {reason}")
            bench.row(spec.name, name, "skipped", math.nan, unit="", note=reason)
    for rule in rules:
        for S in args.seed_counts or spec.seeds:
            seeds = list(range(S))
            sep, bat, statuses = [], [], set()
            for _ in range(args.seed_repeats):
                t, st = separate_runs(spec, rule, data, seeds, args.seed_steps, args.batch_size, device, clock)
                sep.append(t)
                statuses.update(st)
                t, st = batched_run(spec, rule, data, seeds, args.seed_steps, args.batch_size, clock)
                bat.append(t)
                statuses.update(st)
            t_sep, t_bat = statistics.median(sep), statistics.median(bat)
            target = SEED_TARGET if spec.targets and S >= 5 else None
            note = "" if statuses == {"completed"} else f"statuses {sorted(statuses)}; "
            bench.row(spec.name, rule, "seeds", t_bat, reference=t_sep, ratio=t_bat / t_sep, target=target, seeds=S,
                      steps=args.seed_steps, note=f"{note}one batched run / {S} separate runs")


def write_outputs(rows, meta, out: Path, quick=False):
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (out / "bench.md").write_text(markdown(rows, meta, quick))


def _fmt(v, scale=1.0, digits=3):
    return "" if v in ("", None) or (isinstance(v, float) and math.isnan(v)) else f"{v * scale:.{digits}g}"


def _verdict(row):
    if row is None or row["passed"] == "":
        return ""
    return f"{'pass' if row['passed'] else '**FAIL**'} ({row['target']})"


def markdown(rows, meta, quick=False) -> str:
    lines = ["# fa_bench benchmark", "",
             f"torch {meta['torch_version']}, commit {meta['git_commit'][:12]}"
             f"{' (dirty tree)' if meta['git_dirty'] else ''}, batch size {meta['batch_size']}, "
             f"{meta['repeats']} timing rounds, Python {platform.python_version()}. "
             "Ratios are fa_bench / reference; medians. Written by scripts/bench.py.", ""]
    if quick:
        lines += ["**Smoke run (--quick): tiny counts, the numbers and verdicts mean nothing.**", ""]
    for device in dict.fromkeys(r["device"] for r in rows):
        rs = [r for r in rows if r["device"] == device]
        threads = rs[0]["threads"]

        def find(model, rule, measure, seeds=None, rs=rs):
            hits = [r for r in rs if r["model"] == model and r["rule"] == rule and r["measure"] == measure
                    and (seeds is None or r["seeds"] == seeds)]
            return hits[0] if hits else None

        lines += [f"## {device} ({threads} threads)", "", "### Step", "",
                  "| model | rule | fa_bench ms | plain PyTorch ms | ratio | target | floor ratio |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for r in (r for r in rs if r["measure"] == "step"):
            fl = find(r["model"], r["rule"], "step_vs_floor")
            lines.append(f"| {r['model']} | {r['rule']} | {_fmt(r['value'], 1e3)} | {_fmt(r['reference'], 1e3)} | "
                         f"{_fmt(r['ratio'])} | {_verdict(r)} | {_fmt(fl['ratio']) if fl else ''} |")
        floors = [r for r in rs if r["measure"] == "step_floor"]
        if floors:
            lines += ["", "Bare-matmul floor per step: " + "; ".join(
                f"{r['model']} {_fmt(r['value'], 1e3)} ms ({_fmt(r['ratio'])}x the plain step)" for r in floors)
                + ". Floor ratio: fa_bench step / floor step."]
        epochs = [r for r in rs if r["measure"] == "epoch"]
        if epochs:
            lines += ["", "### Epoch", "",
                      "| model | rule | examples | metrics off s | vs plain | metrics on s | metrics overhead | "
                      "target | probe estimate | vs floor | target |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            for r in epochs:
                on, probe = find(r["model"], r["rule"], "epoch_metrics"), find(r["model"], r["rule"], "probe")
                fl = find(r["model"], r["rule"], "epoch_vs_floor")
                overhead = f"{(on['ratio'] - 1) * 100:+.1f}%" if on else ""
                estimate = f"{(probe['ratio'] - 1) * 100:+.1f}%" if probe else ""
                lines.append(f"| {r['model']} | {r['rule']} | {r['examples']} | {_fmt(r['value'])} | "
                             f"{_fmt(r['ratio'])} | {_fmt(on['value']) if on else ''} | {overhead} | {_verdict(on)} | "
                             f"{estimate} | {_fmt(fl['ratio']) if fl else ''} | {_verdict(fl)} |")
            notes = [f"{r['model']}: plain epoch {_fmt(r['value'])} s" + (f"; {r['note']}" if r["note"] else "")
                     for r in rs if r["measure"] == "epoch_reference"]
            notes += [f"{r['model']}: floor epoch {_fmt(r['value'])} s" for r in rs if r["measure"] == "epoch_floor"]
            lines += [""] + [f"- {n}" for n in notes]
            lines += ["- metrics overhead: the epoch with the alignment probe at the default cadence against the "
                      "epoch without it, the probes' cost scaled to a full epoch's count; probe estimate: one "
                      "probe's time × a full epoch's probes / the full epoch (steadier on a busy machine)."]
        seeds = [r for r in rs if r["measure"] == "seeds"]
        if seeds:
            lines += ["", "### Seed batching", "",
                      "| model | rule | S | batched s | S separate runs s | ratio | target |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            lines += [f"| {r['model']} | {r['rule']} | {r['seeds']} | {_fmt(r['value'])} | {_fmt(r['reference'])} | "
                      f"{_fmt(r['ratio'])} | {_verdict(r)} |" for r in seeds]
        skipped = [r for r in rs if r["measure"] == "skipped"]
        if skipped:
            lines += ["", "### Skipped", ""] + [f"- {r['model']} / {r['rule']}: {r['note']}" for r in skipped]
        lines.append("")
    return "\n".join(lines)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu, cuda, or auto (CPU always, CUDA too when available)")
    p.add_argument("--models", nargs="+", choices=[*MODELS, *SEED_MODELS], default=None)
    p.add_argument("--rules", nargs="+", default=None, help="limit to these rules (default: every registered rule)")
    p.add_argument("--repeats", type=int, default=7, help="timing rounds per step measurement (median taken)")
    p.add_argument("--steps", type=int, default=20, help="steps per timing block (the convnet runs a fifth)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps per contestant first")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--epoch-examples", type=int, default=None,
                   help="examples per timed epoch for every model (default: per model; 0 skips epochs)")
    p.add_argument("--epoch-repeats", type=int, default=1)
    p.add_argument("--seed-counts", nargs="+", type=int, default=None, help="S values (default 1 5 20)")
    p.add_argument("--seed-rules", nargs="+", default=None,
                   help="rules for seed batching (default: all it supports on the small MLP, fa on the big ones)")
    p.add_argument("--seed-steps", type=int, default=50)
    p.add_argument("--seed-repeats", type=int, default=2)
    p.add_argument("--out", default="results/bench")
    p.add_argument("--quick", action="store_true", help="a tiny smoke run: every code path, no meaningful numbers")
    args = p.parse_args(argv)
    for option in ("rules", "seed_rules"):
        unknown = sorted(set(getattr(args, option) or ()) - set(RULES))
        if unknown:
            p.error(f"--{option.replace('_', '-')}: unknown rule(s) {unknown}; valid: {', '.join(sorted(RULES))}")
    args.probe_repeats = 3
    if args.quick:
        args.batch_size, args.repeats, args.steps, args.warmup, args.probe_repeats = 8, 2, 1, 1, 1
        # one thread: a smoke run on a busy machine (a test suite running beside it) stalls in thread barriers
        args.threads = args.threads or 1
        args.epoch_examples = args.epoch_examples if args.epoch_examples is not None else 4 * 8
        args.seed_counts, args.seed_steps, args.seed_repeats = args.seed_counts or [1, 2], 2, 1
    return args


def main(argv=None):
    args = parse(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ([torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
               if args.device == "auto" else [torch.device(args.device)])
    if any(d.type == "cuda" for d in devices) and not torch.cuda.is_available():
        raise SystemExit(f"bench: --device {args.device} but CUDA is not available here; use cpu or auto")
    wanted = args.models or [*MODELS, *SEED_MODELS]
    info = git_info()
    meta = {"threads": torch.get_num_threads(), "torch_version": torch.__version__, "git_commit": info["git_commit"],
            "git_dirty": info["git_dirty"], "batch_size": args.batch_size, "repeats": args.repeats}
    started = time.perf_counter()
    rows = []
    for device in devices:
        bench = Bench(args, device, meta, rows)
        mnist = load_dataset("mnist", device=device)
        datasets = {"mnist": mnist}
        if args.quick:  # the smoke run evaluates on a sliver of the test set
            mnist.x_test, mnist.y_test = mnist.x_test[:64], mnist.y_test[:64]
        for name in wanted:
            if name in MODELS:
                print(f"{device}: {name}", flush=True)
                run_model(bench, MODELS[name], mnist)
            else:
                spec = SEED_MODELS[name]
                if spec.dataset["name"] not in datasets:
                    datasets[spec.dataset["name"]] = load_dataset(device=device, **spec.dataset)
                print(f"{device}: {name}", flush=True)
                run_seeds(bench, spec, datasets)
    write_outputs(rows, meta, Path(args.out), args.quick)
    print(f"wrote {Path(args.out) / 'bench.csv'} and bench.md in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
