"""One tight training loop for every rule, model and data set (data on the device, no DataLoader)."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from fa_bench import metrics as M
from fa_bench.adversarial import FGSM
from fa_bench.convert import convert, rule_of
from fa_bench.data import DataBundle, batches
from fa_bench.probe import AlignmentProbe
from fa_bench.records import MetricsWriter
from fa_bench.rules import get_rule
from fa_bench.seeding import generator as seeded_generator
from fa_bench.sparsity import masked_layers, reapply

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 1
    max_steps: int | None = None  # stop early after this many steps (tiny budgets, tests)
    batch_size: int = 64
    shuffle: bool = True
    eval_every: int = 500  # steps between evaluations (and train-window summaries)
    eval_batch_size: int = 10000
    metrics_every: int = 100  # steps between alignment probes; 0 turns the probe off
    metrics_batch_size: int | None = None  # None: probe the current training batch
    metrics_neuron_sample: int = 0  # hidden units per layer whose own neuron_angle is logged too
    divergence_loss: float = 1e6  # a train-window loss above this (or non-finite) ends the run as diverged
    progress: bool = True
    # [{steps: N, freeze: [layer, ...], rule: {name: ..., ...}}, ...]: consecutive phases, each holding
    # the listed converted layers (module names, or indices in module order: 0 the first, -1 the output
    # layer) fixed, and optionally switching the model to another rule from its first step on (the
    # switch stays after the phase); after the last phase nothing is frozen (Lillicrap Fig. 5c,
    # Nøkland Fig. 2 left)
    phases: list | None = None
    # stop once a train window's classification error (%) is at or below this (Nøkland: 0.01); None: never
    stop_train_error: float | None = None
    # FGSM adversarial training, {epsilon, alpha, input_grad} (fa_bench.adversarial.FGSM); None: off
    adversarial: dict | None = None

    def __post_init__(self):
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_every": self.eval_every,
                    "eval_batch_size": self.eval_batch_size}
        if self.max_steps is not None:
            positive["max_steps"] = self.max_steps
        if self.metrics_batch_size is not None:
            positive["metrics_batch_size"] = self.metrics_batch_size
        bad = {k: v for k, v in positive.items() if not (isinstance(v, int) and v >= 1)}
        if bad:
            raise ValueError(f"trainer settings must be integers >= 1: {bad}")
        for i, phase in enumerate(self.phases or []):
            if not (isinstance(phase, dict) and set(phase) <= {"steps", "freeze", "rule"}
                    and isinstance(phase.get("steps"), int) and phase["steps"] >= 1
                    and isinstance(phase.get("freeze", []), (list, tuple))
                    and (phase.get("rule") is None or (isinstance(phase["rule"], dict) and "name" in phase["rule"]))):
                raise ValueError(f"trainer.phases[{i}] must be {{steps: int >= 1, freeze: [layer, ...], "
                                 f"rule: {{name: <rule>, <option>: ...}} (optional)}}, got {phase!r}")
        if not (isinstance(self.metrics_neuron_sample, int) and self.metrics_neuron_sample >= 0):
            raise ValueError(f"metrics.neuron_sample must be an integer >= 0, got {self.metrics_neuron_sample!r}")
        if not (isinstance(self.metrics_every, int) and self.metrics_every >= 0):
            raise ValueError("metrics.every must be an integer >= 0 (0 turns the probe off), "
                             f"got {self.metrics_every!r}")
        stop = self.stop_train_error
        if stop is not None and not (isinstance(stop, (int, float)) and not isinstance(stop, bool) and stop >= 0):
            raise ValueError(f"trainer.stop_train_error is a training error in % (>= 0) or null, got {stop!r}")
        FGSM.from_config(self.adversarial)  # a bad setting fails here, before any training


@dataclass
class TrainResult:
    status: str  # completed | diverged
    steps: int
    examples: int
    epochs_run: int
    wall_time: float
    final: dict = field(default_factory=dict)
    stop_reason: str = ""  # why training ended: the budget, divergence, or trainer.stop_train_error


class PhaseSchedule:
    """Which parameters each training phase holds fixed. Built before training, so a layer that does
    not exist fails the run before its first step, naming the converted layers."""

    def __init__(self, model, phases):
        from fa_bench.convert import converted_layers

        layers = converted_layers(model)
        names = [n for n, _ in layers]
        self.ends, self.frozen, self.switches = [], [], {}
        end = 0
        for phase in phases or []:
            if phase.get("rule") is not None:  # checked now, applied at the phase's first step
                spec = dict(phase["rule"])
                rule = get_rule(spec.pop("name"), **spec)
                if rule.learns_feedback:
                    raise ValueError(f"trainer.phases: switching to {rule.name!r} mid-run is not supported: its "
                                     f"feedback is a parameter the optimizer was not built with")
                self.switches[end] = dict(phase["rule"])
            params = []
            for ref in phase.get("freeze", []):
                if isinstance(ref, int) and -len(layers) <= ref < len(layers):
                    layer = layers[ref][1]
                elif str(ref) in names:
                    layer = layers[names.index(str(ref))][1]
                else:
                    raise ValueError(f"trainer.phases: no converted layer {ref!r}; converted layers: "
                                     f"{names} (or their indices 0..{len(names) - 1}, -1 the last)")
                params += list(layer.parameters())
            end += phase["steps"]
            self.ends.append(end)
            self.frozen.append(params)

    def phase(self, step: int) -> int:
        """Index of the phase that ``step`` (0-based) belongs to; len(phases) once they are over."""
        for i, end in enumerate(self.ends):
            if step < end:
                return i
        return len(self.ends)

    def frozen_at(self, step: int) -> list:
        i = self.phase(step)
        return self.frozen[i] if i < len(self.frozen) else []


def switch_rule(model, spec: dict, example_input, seed: int):
    """Re-convert ``model`` in place to the rule ``spec`` names: the same parameters (so the optimizer
    and its state carry over), a fresh rule with its feedback drawn from the run's seed."""
    spec = dict(spec)
    convert(model, spec.pop("name"), example_input=example_input, seed=seed, **spec)
    log.info("%s", model.fa_report)
    return rule_of(model)


@torch.no_grad()
def evaluate(model, x, y, loss_fn, task, batch_size) -> dict[str, float]:
    was_training = model.training
    model.eval()
    outs = torch.cat([model(xb) for xb in x.split(batch_size)])
    model.train(was_training)
    result = {"loss": float(loss_fn(outs, y).mean())}
    if task == "regression":
        result["nse"] = M.nse(outs, y)
    else:
        result["error"] = M.error(outs, y)
        if outs.shape[1] > 5:
            result["top5_error"] = M.top5_error(outs, y)
    return result


class _Window:
    """Training statistics accumulated on the device between evaluations (no host sync per step), per
    seed along a leading axis: the trainer's one model is one seed, fa_bench.batched's S seeds are S."""

    def __init__(self, task):
        self.task = task
        self.reset()

    def reset(self):
        self.n = 0
        self.loss = self.sse = self.t_sum = self.t_sq = self.wrong = 0

    def add(self, per_example_loss, out, y):
        """One model's batch: (batch,), (batch, ...), (batch[, ...])."""
        self.add_seeds(per_example_loss[None], out[None], y[None])

    def add_seeds(self, per_example_loss, out, y):
        """S seeds' batches: (S, batch), (S, batch, ...), (S, batch[, ...])."""
        self.n += y.shape[1]
        self.loss = self.loss + per_example_loss.sum(1)
        if self.task == "regression":
            self.sse = self.sse + (out - y).pow(2).flatten(2).sum(2).sum(1)
            self.t_sum = self.t_sum + y.sum(1)
            self.t_sq = self.t_sq + y.pow(2).sum(1)
        else:
            self.wrong = self.wrong + (out.argmax(2) != y).sum(1)

    def summary(self) -> dict[str, float]:
        return self.summaries()[0]

    def summaries(self) -> list[dict[str, float]]:
        """Each seed's window loss and nse (Lillicrap eq. 4: against the sample-mean predictor over the
        same window) or error in %; one host sync for every seed."""
        loss = self.loss.tolist()
        if self.task == "regression":
            baseline = (self.t_sq - self.t_sum.pow(2) / self.n).flatten(1).sum(1)
            nse = (self.sse / baseline).tolist()
            return [{"loss": lo / self.n, "nse": v} for lo, v in zip(loss, nse)]
        wrong = self.wrong.tolist()
        return [{"loss": lo / self.n, "error": 100.0 * w / self.n} for lo, w in zip(loss, wrong)]


def train(model, rule, data: DataBundle, loss_fn, optimizer, cfg: TrainConfig, writer: MetricsWriter,
          generator: torch.Generator, desc: str = "train", seed: int = 0) -> TrainResult:
    """Train in place. ``rule.compute_gradients`` fills ``.grad``; the optimizer steps.

    Logs, every ``eval_every`` steps, the train-window loss (and nse or error) and the test metrics;
    every ``metrics_every`` steps, the alignment probe's layer metrics on the batch about to be used.
    Layers made sparse (fa_bench.sparsity) get their removed weights put back to zero after every step.
    With ``adversarial`` each step trains on the batch and its FGSM perturbation (fa_bench.adversarial);
    the train window then reports the clean examples. Training ends at the budget (epochs, max_steps),
    on divergence, or once a train window's error is at most ``stop_train_error`` %; the reason is
    logged and returned as ``TrainResult.stop_reason``.
    """
    start = time.perf_counter()
    attack = FGSM.from_config(cfg.adversarial)
    if attack is not None:
        attack.check_rule(rule)
    if cfg.stop_train_error is not None and data.task != "classification":
        raise ValueError("trainer.stop_train_error reads the training classification error, but this data set "
                         f"is a {data.task} task")
    n_train = data.x_train.shape[0]
    steps_per_epoch = math.ceil(n_train / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    schedule = PhaseSchedule(model, cfg.phases)
    masked = masked_layers(model)
    probe = AlignmentProbe(model, loss_fn, cfg.metrics_neuron_sample, seed) if cfg.metrics_every else None
    probe_batch = None
    if probe is not None and cfg.metrics_batch_size:
        idx = torch.randperm(n_train, generator=seeded_generator(seed, "probe"))[:cfg.metrics_batch_size]
        idx = idx.to(data.x_train.device)
        probe_batch = (data.x_train[idx], data.y_train[idx])
    window = _Window(data.task)
    step = examples = epoch = 0
    status = "completed"
    stop_reason = ""

    def log_eval():
        nonlocal status, stop_reason
        if window.n:
            summary = window.summary()
            for name, value in summary.items():
                writer.log(step, epoch, examples, "train", name, value)
            if not (math.isfinite(summary["loss"]) and summary["loss"] < cfg.divergence_loss):
                status = "diverged"
                stop_reason = (f"diverged: train-window loss {summary['loss']:.4g} is not finite or exceeds "
                               f"trainer.divergence_loss {cfg.divergence_loss:g}")
            elif cfg.stop_train_error is not None and summary["error"] <= cfg.stop_train_error:
                stop_reason = (f"training error {summary['error']:.4g} % over the last {window.n} examples is at "
                               f"or below trainer.stop_train_error {cfg.stop_train_error:g} %")
            window.reset()
        for name, value in evaluate(model, data.x_test, data.y_test, loss_fn, data.task,
                                    cfg.eval_batch_size).items():
            writer.log(step, epoch, examples, "test", name, value)
        if cfg.phases:
            writer.log(step, epoch, examples, "train", "phase", schedule.phase(max(step - 1, 0)))
        writer.flush()

    def log_probe(xb, yb, at_epoch):
        for name, layer, value in probe.measure(*(probe_batch or (xb, yb))):
            writer.log(step, at_epoch, examples, "train", name, value, layer=layer)

    model.train()
    log_eval()
    bar = tqdm(total=total, desc=desc, disable=not cfg.progress, mininterval=1.0, leave=False)
    while step < total and not stop_reason:
        for idx in batches(n_train, cfg.batch_size, generator, data.x_train.device, cfg.shuffle):
            if step in schedule.switches:
                rule = switch_rule(model, schedule.switches[step], data.x_train[:2], seed)
                if probe is not None:
                    probe = AlignmentProbe(model, loss_fn, cfg.metrics_neuron_sample, seed)
                if attack is not None:
                    attack.check_rule(rule)
            xb, yb = data.x_train[idx], data.y_train[idx]
            if probe is not None and step % cfg.metrics_every == 0:
                log_probe(xb, yb, epoch)
            optimizer.zero_grad(set_to_none=True)
            if attack is None:
                per_example, out = rule.compute_gradients(model, xb, yb, loss_fn)
            else:
                per_example, out = attack.step(rule, model, xb, yb, loss_fn)
            for p in schedule.frozen_at(step):
                p.grad = None  # optimizers skip parameters without a gradient (decay and momentum too)
            optimizer.step()
            if masked:
                reapply(masked)
            window.add(per_example, out, yb)
            step += 1
            examples += yb.shape[0]
            if step % cfg.eval_every == 0 or step == total:
                bar.update(step - bar.n)
                log_eval()
                if stop_reason or step == total:
                    break
        epoch += 1
    bar.close()
    if not stop_reason:
        stop_reason = f"budget: {step} steps ({cfg.epochs} epochs" + (
            f", max_steps {cfg.max_steps})" if cfg.max_steps is not None else ")")
    log.info("training stopped at step %d (epoch %d): %s", step, epoch, stop_reason)
    if probe is not None and status == "completed":
        log_probe(xb, yb, epoch - 1)  # the state training ended in, on the last batch (or the probe batch)
    writer.flush()
    return TrainResult(status, step, examples, epoch, time.perf_counter() - start, writer.final(), stop_reason)
