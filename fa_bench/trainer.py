"""The one training loop every engine plugs into.

``train_loop`` owns the schedule: the step budget (epochs, max_steps), the evaluation and probe
cadence, training phases, early stops (divergence, trainer.stop_train_error), the training window,
the records and the progress bar. An engine (``Engine``: fa_bench.engines) owns what a step, an
evaluation and a probe are: a model under a rule (one seed, or S seeds stacked along a leading axis),
or Lillicrap's spiking network. Every engine trains S >= 1 seeds at once, each with its own writer,
status and stop, so one seed-batched job writes exactly the records S separate runs would.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

import torch
from tqdm.auto import tqdm

from fa_bench import metrics as M
from fa_bench.adversarial import FGSM
from fa_bench.checkpoint import Checkpointer, parse_every
from fa_bench.constraints import check_schedule
from fa_bench.interrupts import RunInterrupted, graceful, requested
from fa_bench.records import MetricsWriter
from fa_bench.seeding import global_rng_states, set_global_rng_states

log = logging.getLogger(__name__)


PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    epochs: int = 1
    max_steps: int | None = None  # stop early after this many steps (tiny budgets, tests)
    batch_size: int = 64
    shuffle: bool = True
    eval_every: int = 500  # steps between evaluations (and train-window summaries); examples for the spiking net
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
    # steps (int) or a duration ('10min') between checkpoints (fa_bench.checkpoint); None: never
    checkpoint_every: int | str | None = None
    # fa_bench.constraints: a step learning-rate schedule by epochs, the Const. norm, the E/I sign freeze
    lr_schedule: dict | None = None
    const_norm: bool = False
    freeze_signs_at: float | None = None
    # opt-in device speed-ups, for fixed shapes (the GPU check, scripts/gpu_check.sh): bf16 autocast of the
    # forward pass and the rule's backward ("bf16"; parameters, optimizer and gradients stay fp32),
    # channels_last activations and weights for convnets, torch.compile of the model's forward. The
    # first two need CUDA (RuleEngine refuses them on the CPU, where bf16 is slower and the layout moot).
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

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
        parse_every(self.checkpoint_every)
        check_schedule(self.lr_schedule)
        if not isinstance(self.const_norm, bool):
            raise ValueError(f"trainer.const_norm={self.const_norm!r}: true or false")
        # null in conf/trainer (so that adding these left every earlier run's key alone): the default
        self.precision = "fp32" if self.precision is None else self.precision
        self.channels_last = False if self.channels_last is None else self.channels_last
        self.compile = False if self.compile is None else self.compile
        if self.precision not in PRECISIONS:
            raise ValueError(f"trainer.precision={self.precision!r}: one of {', '.join(PRECISIONS)}")
        for key in ("channels_last", "compile"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"trainer.{key}={getattr(self, key)!r}: true or false")
        f = self.freeze_signs_at
        if f is not None and not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1):
            raise ValueError(f"trainer.freeze_signs_at={f!r}: a fraction of training in (0, 1), or null")

    def active_options(self) -> dict:
        """The options that ask for something (the probe on, phases, ...): what an engine must honour or refuse."""
        off = {"metrics_every": 0}  # the probe is on by default, but an engine without one may be asked for none
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) != off.get(f.name, f.default)}

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's step budget: every epoch, cut at max_steps."""
        total = steps_per_epoch * self.epochs
        return total if self.max_steps is None else min(total, self.max_steps)

    def phase_at(self, step: int) -> int:
        """Index of the phase that ``step`` (0-based) belongs to; len(phases) once they are over."""
        end = 0
        for i, phase in enumerate(self.phases or []):
            end += phase["steps"]
            if step < end:
                return i
        return len(self.phases or [])


@dataclass
class TrainResult:
    status: str  # completed | diverged
    steps: int
    examples: int
    epochs_run: int
    wall_time: float
    final: dict = field(default_factory=dict)
    stop_reason: str = ""  # why training ended: the budget, divergence, or trainer.stop_train_error


class Engine:
    """What ``train_loop`` drives: S >= 1 seeds trained together (S = 1: one ordinary run).

    An engine lists the TrainConfig options it ``honours``; ``train_loop`` refuses a config that sets
    any other (the schedule basics, epochs to progress, are the loop's own and always honoured).
    """

    name = "engine"
    seeds: tuple[int, ...] | list[int] = (0,)  # the seed number at each stack index (what log lines name)
    task = "classification"
    step_size = 1  # the `step` column advances this much per batch (the spiking net: time steps per image)
    eval_unit = "steps"  # what trainer.eval_every counts: "steps", or "examples" (the spiking net)
    honours: frozenset[str] = frozenset()

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def epoch_batches(self, epoch: int, start: int = 0) -> Iterable:
        """The batches of one epoch, in training order, from batch ``start`` on (a resumed epoch)."""
        raise NotImplementedError

    def batch_examples(self, batch) -> int:
        raise NotImplementedError

    def begin_step(self, step: int, phase: int):
        """Called before every step (and before its probe) with the step's phase index."""

    def train_step(self, batch) -> dict:
        """One update of every running seed; returns Window.add_seeds' arguments, on the device."""
        raise NotImplementedError

    def evaluate(self, seeds: list[int]) -> dict[int, dict[str, float]]:
        """Test metrics of the listed seed indices."""
        raise NotImplementedError

    def reduce_window(self, window: Window) -> Window:
        """The window summed over the processes of a distributed run (fa_bench.distributed): a copy,
        so the local window can be reduced again later."""
        return window

    def reduce_flags(self, flags):
        """Any process's flag, for a distributed run."""
        return flags

    def broken(self, seeds: list[int]) -> dict[int, str]:
        """Seeds whose state is unusable (non-finite), with the reason: they stop as diverged."""
        return {}

    def probe(self, batch) -> list[list[tuple]] | None:
        """Alignment rows (name, layer, value) per seed for ``batch``; None: the engine has no probe."""
        return None

    def stop_seed(self, index: int):
        """Seed ``index`` has stopped: its parameters must not change any more."""

    def finish(self):
        """After the last step (write engine-specific records)."""

    def state_dict(self) -> dict:
        """Everything the engine's next step depends on (parameters, optimizer, its random streams, the
        generator states its current epoch's order was drawn from), for a checkpoint."""
        raise NotImplementedError(f"engine {self.name!r} cannot checkpoint")

    def load_state_dict(self, state: dict):
        raise NotImplementedError(f"engine {self.name!r} cannot resume")


class Window:
    """Training statistics accumulated on the device between evaluations (no host sync per step), per
    seed along a leading axis.

    A step's tensors are held (``pending``) and summed FLUSH steps at a time, in one batched reduction
    instead of half a dozen small ops per step (at batch 1 those were a third of a step's dispatches).
    The flush points are counted from the window's start and ``pending`` is part of ``state()``, so a
    resumed run groups its sums, and rounds them, exactly as an uninterrupted one."""

    FLUSH = 50  # steps held before they are summed
    FLUSH_ELEMENTS = 1 << 22  # or sooner, once the held outputs reach this many elements

    def __init__(self, task):
        self.task = task
        self.reset()

    def reset(self):
        self.n = 0
        self.loss = self.sse = self.t_sum = self.t_sq = self.wrong = 0
        self.has_loss = False
        self.pending, self.held = [], 0

    def state(self) -> dict:
        keys = ("n", "loss", "sse", "t_sum", "t_sq", "wrong", "has_loss", "held")
        return {**{k: getattr(self, k) for k in keys}, "pending": list(self.pending)}

    def load_state(self, state: dict):
        self.pending, self.held = [], 0  # a state written before windows held steps has neither
        for k, v in state.items():
            setattr(self, k, list(v) if k == "pending" else v)

    def add(self, per_example_loss, out, y):
        """One model's batch: (batch,), (batch, ...), (batch[, ...])."""
        self.add_seeds(y[None], per_example_loss[None], out[None])

    def add_seeds(self, y, loss=None, out=None, pred=None):
        """S seeds' batches: targets (S, batch[, ...]), per-example losses (S, batch), outputs (S, batch, ...)
        or, for classification, predicted classes ``pred`` (S, batch) instead of outputs."""
        self.n += y.shape[1]
        self.has_loss = self.has_loss or loss is not None
        self.pending.append((y, loss, out, pred))
        self.held += 0 if out is None else out.numel()
        if len(self.pending) >= self.FLUSH or self.held >= self.FLUSH_ELEMENTS:
            self.reduce()

    def reduce(self):
        """Sum the held steps into the totals (the batch axis of every held tensor, concatenated)."""
        if not self.pending:
            return
        ys, losses, outs, preds = zip(*self.pending)
        self.pending, self.held = [], 0
        y = torch.cat(ys, 1)
        if any(lo is not None for lo in losses):
            self.loss = self.loss + torch.cat([lo for lo in losses if lo is not None], 1).sum(1)
        if self.task == "regression":
            out = torch.cat(outs, 1)
            self.sse = self.sse + (out - y).pow(2).flatten(2).sum(2).sum(1)
            self.t_sum = self.t_sum + y.sum(1)
            self.t_sq = self.t_sq + y.pow(2).sum(1)
        else:
            pred = (torch.cat(outs, 1).argmax(2) if all(p is None for p in preds) else
                    torch.cat([o.argmax(2) if p is None else p for o, p in zip(outs, preds)], 1))
            self.wrong = self.wrong + (pred != y).sum(1)

    def summary(self) -> dict[str, float]:
        return self.summaries()[0]

    def summaries(self) -> list[dict[str, float]]:
        """Each seed's window loss and nse (Lillicrap eq. 4: against the sample-mean predictor over the
        same window) or error in %; one host sync for every seed."""
        self.reduce()
        if self.task == "regression":
            baseline = (self.t_sq - self.t_sum.pow(2) / self.n).flatten(1).sum(1)
            rows = [{"nse": v} for v in (self.sse / baseline).tolist()]
        else:
            rows = [{"error": 100.0 * w / self.n} for w in self.wrong.tolist()]
        if self.has_loss:
            rows = [{"loss": lo / self.n, **row} for lo, row in zip(self.loss.tolist(), rows)]
        return rows


def metrics_of(out, y, loss_fn, task) -> dict[str, float]:
    """Test metrics of one seed's outputs: loss, and nse (regression) or error and top-5 error (> 5 classes)."""
    result = {"loss": float(loss_fn(out, y).mean())}
    if task == "regression":
        result["nse"] = M.nse(out, y)
    else:
        result["error"] = M.error(out, y)
        if out.shape[1] > 5:
            result["top5_error"] = M.top5_error(out, y)
    return result


@torch.no_grad()
def evaluate(model, x, y, loss_fn, task, batch_size) -> dict[str, float]:
    was_training = model.training
    model.eval()
    outs = torch.cat([model(xb) for xb in x.split(batch_size)])
    model.train(was_training)
    return metrics_of(outs, y, loss_fn, task)


class _Cadence:
    """When evaluations are due: every ``every`` steps, or every ``every`` examples (the first step at
    or past each multiple)."""

    def __init__(self, every: int, unit: str):
        self.every, self.unit, self.next = every, unit, every

    def due(self, step: int, examples: int) -> bool:
        if self.unit == "steps":
            return step % self.every == 0
        if examples < self.next:
            return False
        self.next += self.every * math.ceil((examples - self.next + 1) / self.every)
        return True


def refuse_unhonoured(engine: Engine, cfg: TrainConfig):
    basics = {"epochs", "max_steps", "batch_size", "eval_every", "progress", "divergence_loss", "checkpoint_every"}
    unhonoured = {k: v for k, v in cfg.active_options().items() if k not in basics | engine.honours}
    if unhonoured:
        key, value = next(iter(unhonoured.items()))
        raise ValueError(f"engine {engine.name!r} does not honour trainer option {key}={value!r}; it honours: "
                         f"{', '.join(sorted(basics | engine.honours))}")


DIVERGENCE_CHECK_EVERY = 50  # steps between reads of the device-side divergence flag (one host sync each)


def train_loop(engine: Engine, cfg: TrainConfig, writers: list[MetricsWriter], desc: str = "train",
               checkpoint: Checkpointer | None = None, resume: dict | None = None) -> list[TrainResult]:
    """Train every seed of ``engine`` under ``cfg``'s schedule; one TrainResult per seed.

    Logs, every ``eval_every`` steps and at the end, each seed's train-window loss (and nse or error) and
    its test metrics; every ``metrics_every`` steps, the probe's layer metrics on the batch about to be
    used, and once more after training on the last batch. A seed stops (its parameters frozen, the others
    going on) when its loss is non-finite or above ``divergence_loss`` (diverged: a device-side flag read
    every DIVERGENCE_CHECK_EVERY steps, and the window loss at every evaluation), when its state is
    broken, or once its window error is at most ``stop_train_error`` %; the reason is logged and
    returned as ``TrainResult.stop_reason``.

    ``checkpoint`` saves the loop's whole state when due and on SIGINT/SIGTERM (fa_bench.interrupts),
    after which the loop raises RunInterrupted; ``resume`` is such a state (``Checkpointer.load()``):
    training continues from it exactly as if it had never stopped (the writers must be resumed from
    ``resume["writers"]`` by the caller).
    """
    refuse_unhonoured(engine, cfg)
    if len(writers) != engine.n_seeds:
        raise ValueError(f"{len(writers)} writers for {engine.n_seeds} seeds")
    if cfg.stop_train_error is not None and engine.task != "classification":
        raise ValueError("trainer.stop_train_error reads the training classification error, but this data set "
                         f"is a {engine.task} task")
    start = time.perf_counter()
    # the loop seconds of the segments before this one (a checkpoint written before this key existed: 0)
    earlier = float(resume.get("wall_time", 0.0)) if resume is not None else 0.0
    S = engine.n_seeds
    total = cfg.total_steps(engine.steps_per_epoch())
    probing = bool(cfg.metrics_every)
    cadence = _Cadence(cfg.eval_every, engine.eval_unit)
    window = Window(engine.task)
    status, reasons = ["completed"] * S, [""] * S
    ended: list[tuple | None] = [None] * S  # (steps, examples, epochs_run) where each seed stopped
    step = examples = epoch = batch_in_epoch = 0
    flagged = None  # per seed, on the device: a loss since the last check was non-finite or exploding
    unchecked = []  # the batch losses not yet folded into ``flagged`` (folded together: fewer ops per step)
    batch = None

    def fold_flags():
        nonlocal flagged
        if not unchecked:
            return
        if all(lo.shape == unchecked[0].shape for lo in unchecked):
            means = torch.stack(unchecked).mean(-1)
        else:  # a short last batch among them
            means = torch.stack([lo.mean(-1) for lo in unchecked])
        unchecked.clear()
        bad = (~(means < cfg.divergence_loss)).any(0)  # NaN and inf compare False
        flagged = bad if flagged is None else flagged | bad

    def running():
        return [s for s in range(S) if ended[s] is None]

    def state() -> dict:
        fold_flags()
        return {"format": 1, "step": step, "examples": examples, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                "status": list(status), "reasons": list(reasons), "ended": list(ended), "cadence_next": cadence.next,
                "window": window.state(), "flagged": flagged, "engine": engine.state_dict(),
                "writers": [w.state() for w in writers], "rng": global_rng_states(),
                "wall_time": earlier + time.perf_counter() - start}

    def log_probe(at_epoch, seeds):
        rows = engine.probe(batch)
        for s in seeds:
            for name, layer, value in rows[s]:
                writers[s].log(step * engine.step_size, at_epoch, examples, "train", name, value, layer=layer)

    def log_eval(only=None):
        """Evaluate every running seed (or ``only`` those, which then stop: the others' window goes on)."""
        live = running() if only is None else [s for s in only if ended[s] is None]
        stopping = {}
        if window.n:
            summaries = engine.reduce_window(window).summaries()
            for s in live:
                summary = summaries[s]
                for name, value in summary.items():
                    writers[s].log(step * engine.step_size, epoch, examples, "train", name, value)
                loss = summary.get("loss")
                if loss is not None and not (math.isfinite(loss) and loss < cfg.divergence_loss):
                    status[s] = "diverged"
                    stopping[s] = (f"diverged: train-window loss {loss:.4g} is not finite or exceeds "
                                   f"trainer.divergence_loss {cfg.divergence_loss:g}")
                elif only is not None:
                    status[s] = "diverged"
                    stopping[s] = (f"diverged: a batch loss since step {step - DIVERGENCE_CHECK_EVERY} was not "
                                   f"finite or exceeded trainer.divergence_loss {cfg.divergence_loss:g}")
                elif cfg.stop_train_error is not None and summary["error"] <= cfg.stop_train_error:
                    stopping[s] = (f"training error {summary['error']:.4g} % over the last {window.n} examples is "
                                   f"at or below trainer.stop_train_error {cfg.stop_train_error:g} %")
            if only is None:
                window.reset()
        broken = engine.broken(live)
        for s, why in broken.items():
            status[s], stopping[s] = "diverged", f"diverged: {why}"
        for s, metrics in engine.evaluate([s for s in live if s not in broken]).items():
            for name, value in metrics.items():
                writers[s].log(step * engine.step_size, epoch, examples, "test", name, value)
        if cfg.phases:
            for s in live:
                writers[s].log(step * engine.step_size, epoch, examples, "train", "phase",
                               cfg.phase_at(max(step - 1, 0)))
        for s in live:
            writers[s].flush()
        for s, why in stopping.items():
            reasons[s] = why
            if probing and status[s] == "completed" and batch is not None:
                log_probe(epoch, [s])  # the state this seed ends in
            ended[s] = (step, examples, epoch + 1)
            engine.stop_seed(s)
            log.info("seed %d stopped at step %d (epoch %d): %s", engine.seeds[s], step, epoch, why)

    if resume is None:
        log_eval()
    else:
        step, examples, epoch, batch_in_epoch = (resume[k] for k in ("step", "examples", "epoch", "batch_in_epoch"))
        status, reasons, ended = list(resume["status"]), list(resume["reasons"]), list(resume["ended"])
        cadence.next, flagged = resume["cadence_next"], resume["flagged"]
        window.load_state(resume["window"])
        engine.load_state_dict(resume["engine"])
        set_global_rng_states(resume["rng"])
        log.info("resumed at step %d (epoch %d)", step * engine.step_size, epoch)
    bar = tqdm(total=total, initial=step, desc=desc, disable=not cfg.progress, mininterval=1.0, leave=False)
    with graceful():
        while step < total and running():
            # a resumed epoch: its own order, from where it stopped (batch_in_epoch is 0 otherwise)
            for i, batch in enumerate(engine.epoch_batches(epoch, batch_in_epoch), start=batch_in_epoch):
                engine.begin_step(step, cfg.phase_at(step))
                if probing and step % cfg.metrics_every == 0:
                    log_probe(epoch, running())
                stats = engine.train_step(batch)
                window.add_seeds(**stats)
                if stats.get("loss") is not None:
                    unchecked.append(stats["loss"])
                step += 1
                batch_in_epoch = i + 1
                examples += engine.batch_examples(batch)
                evaluated = False
                if cadence.due(step, examples) or step == total:
                    bar.update(step - bar.n)
                    log_eval()
                    evaluated = True
                if step % DIVERGENCE_CHECK_EVERY == 0:
                    fold_flags()
                if flagged is not None and step % DIVERGENCE_CHECK_EVERY == 0:
                    hit = [s for s, f in enumerate(engine.reduce_flags(flagged).tolist()) if f and ended[s] is None]
                    if hit and not evaluated:
                        log_eval(only=hit)
                    flagged = torch.zeros_like(flagged)
                signum = requested()  # polled once per step: a Python read, no device sync
                if checkpoint is not None and checkpoint.enabled and (signum or checkpoint.due(step)):
                    checkpoint.save(state())
                if signum:
                    for w in writers:
                        w.flush()
                    bar.close()
                    raise RunInterrupted(signum, step * engine.step_size)
                if not running() or step == total:
                    break
            epoch += 1
            batch_in_epoch = 0
    bar.close()
    budget = f"budget: {step * engine.step_size} steps ({cfg.epochs} epochs" + (
        f", max_steps {cfg.max_steps})" if cfg.max_steps is not None else ")")
    live = running()
    for s in live:
        reasons[s] = budget
        ended[s] = (step, examples, epoch)
    if live:
        log.info("training stopped at step %d (epoch %d): %s", step * engine.step_size, epoch, budget)
    if probing and live and batch is not None:
        log_probe(epoch - 1, live)  # the state training ended in, on the last batch (or the probe batch)
    engine.finish()
    for w in writers:
        w.flush()
    wall = earlier + time.perf_counter() - start
    return [TrainResult(status[s], ended[s][0] * engine.step_size, ended[s][1], ended[s][2], wall,
                        writers[s].final(), reasons[s]) for s in range(S)]
