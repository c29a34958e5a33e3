"""The engine for any model under a rule: forward, the rule's gradients, an optimizer step.

One class serves a single run and a seed-stacked job (fa_bench.stacking): a stacked model's tensors
carry the seeds along their leading axis, so this engine only has to draw each seed's batch order from
that seed's own generator, gather its batches, and read each seed's slice of the outputs. The rule,
the optimizer, the probe and the phases are the same objects either way.
"""
from __future__ import annotations

import contextlib
import functools
import logging

import torch

from fa_bench.adversarial import FGSM
from fa_bench.constraints import ConstNorm, LRSchedule, SignFreeze
from fa_bench.convert import convert, converted_layers, rule_of
from fa_bench.data import DataBundle, StreamingData, batches
from fa_bench.data.augment import centre_crop, crop_at, epoch_offsets
from fa_bench.distributed import Dist
from fa_bench.errors import ConfigError
from fa_bench.noise import TrainingNoise
from fa_bench.probe import AlignmentProbe
from fa_bench.records import MetricsWriter
from fa_bench.rules import get_rule
from fa_bench.seeding import generator as seeded_generator
from fa_bench.sparsity import masked_layers, reapply
from fa_bench.trainer import Engine, TrainConfig, TrainResult, Window, metrics_of, train_loop

log = logging.getLogger(__name__)


class PhaseSchedule:
    """Which parameters each training phase holds fixed, and the rule each phase switches to. Built
    before training, so a layer that does not exist fails the run before its first step, naming the
    converted layers."""

    def __init__(self, model, phases):
        layers = converted_layers(model)
        names = [n for n, _ in layers]
        self.frozen, self.switches = [], {}
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
            self.frozen.append(params)

    def frozen_in(self, phase: int) -> list:
        return self.frozen[phase] if phase < len(self.frozen) else []


def switch_rule(model, spec: dict, example_input, seed: int):
    """Re-convert ``model`` in place to the rule ``spec`` names: the same parameters (so the optimizer
    and its state carry over), a fresh rule with its feedback drawn from the run's seed."""
    spec = dict(spec)
    convert(model, spec.pop("name"), example_input=example_input, seed=seed, **spec)
    log.info("%s", model.fa_report)
    return rule_of(model)


class RuleEngine(Engine):
    """``model`` (converted; or seed-stacked, its rule bound to ``seeds``) trained by its rule.

    ``data``: one DataBundle all seeds train on, or (stacked) a list with one per seed, whose inputs
    are then stacked. ``orders``: each seed's batch-order generator. ``loss_fn``: per-example losses
    for outputs (batch, ...), or (seeds, batch, ...) on a stacked model (fa_bench.stacking.seed_axis_loss).
    """

    name = "autograd"
    honours = frozenset({"shuffle", "eval_batch_size", "metrics_every", "metrics_batch_size",
                         "metrics_neuron_sample", "phases", "stop_train_error", "adversarial", "lr_schedule",
                         "const_norm", "freeze_signs_at", "precision", "channels_last", "compile"})

    def __init__(self, model, data: DataBundle | StreamingData | list[DataBundle], loss_fn, optimizer,
                 cfg: TrainConfig, seeds: list[int], orders: list[torch.Generator], dist: Dist | None = None,
                 noise: TrainingNoise | None = None):
        self.model, self.loss_fn, self.optimizer, self.cfg = model, loss_fn, optimizer, cfg
        # the optimizer's parameters never change during a run (a phase's rule switch keeps them)
        self.optimized = [p for group in optimizer.param_groups for p in group["params"]]
        self.dist = dist or Dist()
        self.streaming = isinstance(data, StreamingData)
        self.rule = rule_of(model)
        self.stacked = self.rule.seeds is not None
        self.seeds = [int(s) for s in seeds]
        if self.stacked and self.rule.seeds != self.seeds:
            raise ValueError(f"the stacked model's seeds {self.rule.seeds} are not {self.seeds}")
        if not self.stacked and self.n_seeds != 1:
            raise ValueError("an unstacked model trains one seed; stack the seeds' models first (fa_bench.stacking)")
        if self.streaming:
            self._init_streaming(data)
        else:
            self._init_tensors(data)
        self.orders = orders
        self.attack = FGSM.from_config(cfg.adversarial)
        if self.attack is not None:
            if self.stacked:
                raise ValueError("FGSM adversarial training runs one seed at a time (not seed-stacked)")
            self.attack.check_rule(self.rule)
        self.autocast, self.forward_model = self._device_options(cfg)
        self.schedule = PhaseSchedule(model, cfg.phases)
        self.masked = masked_layers(model)
        total = cfg.total_steps(self.steps_per_epoch())
        self.lr_schedule = LRSchedule(optimizer, cfg.lr_schedule, self.steps_per_epoch())
        self.const_norm = ConstNorm(converted_layers(model)) if cfg.const_norm else None
        self.sign_freeze = (SignFreeze(converted_layers(model), cfg.freeze_signs_at, total)
                            if cfg.freeze_signs_at is not None else None)
        self.step = 0
        self.phase = None
        self.switched: list[int] = []  # steps whose phase switched the rule (replayed on resume)
        self.epoch_start_orders = [g.get_state() for g in orders]
        self.frozen_seeds: dict[int, list] = {}  # stopped seeds of a stacked model: their parameters as they stopped
        self.probe_obj = self._new_probe() if cfg.metrics_every else None
        # training-only noise (fa_bench.noise): live inside train_step, so evaluation and the probe stay clean
        self.noise = (noise or TrainingNoise(seeds=self.seeds, stacked=self.stacked)).attach(model)
        self.probe_batch = None
        if self.probe_obj is not None and cfg.metrics_batch_size and not self.streaming:
            n = cfg.metrics_batch_size
            idx = torch.stack([torch.randperm(self.n_train, generator=seeded_generator(s, "probe"))[:n]
                               for s in self.seeds]).to(self.device)
            self.probe_batch = self._gather(idx if self.stacked else idx[0], shard=False)
        model.train()

    def _device_options(self, cfg):
        """trainer.precision, channels_last, compile: the context a training step's passes run in, and
        the module the rule runs forward (the model, or torch.compile of it: the same parameters)."""
        asked = {k: getattr(cfg, k) for k in ("precision", "channels_last")
                 if getattr(cfg, k) != getattr(TrainConfig, k)}
        if asked and self.device.type != "cuda":
            key, value = next(iter(asked.items()))
            raise ConfigError(f"trainer.{key}={value!r} needs a CUDA device, and this run is on {self.device} "
                              f"(CPU bf16 autocast is slower than fp32, and the memory layout is moot there); "
                              f"on the CPU: trainer.precision=fp32, trainer.channels_last=false")
        if cfg.channels_last:
            if not any(p.dim() == 4 for p in self.model.parameters()):
                raise ConfigError("trainer.channels_last=true is for convnets, and this model has no 4-d "
                                  "(convolution) weight; valid here: false")
            self.model.to(memory_format=torch.channels_last)
        autocast = contextlib.nullcontext
        if cfg.precision == "bf16":
            autocast = functools.partial(torch.autocast, self.device.type, dtype=torch.bfloat16)
        return autocast, torch.compile(self.model) if cfg.compile else self.model

    def _init_streaming(self, data: StreamingData):
        if self.stacked:
            raise ValueError("streamed data sets train one seed at a time (not seed-stacked)")
        self.data, self.task, self.device = data, data.task, data.device
        self.n_train, self.per_seed_data = data.n_train, False
        self.crop, self.crop_offsets = None, None  # a streamed set's loader crops (fa_bench.data.imagefolder)

    def _init_tensors(self, data):
        bundles = data if isinstance(data, list) else [data]
        first = bundles[0]
        self.task, self.device = first.task, first.x_train.device
        self.per_seed_data = len(bundles) > 1
        if self.per_seed_data:
            if len(bundles) != self.n_seeds:
                raise ValueError(f"{len(bundles)} data sets for {self.n_seeds} seeds")
            stack = lambda key: torch.stack([getattr(b, key) for b in bundles])  # noqa: E731
            self.x_train, self.y_train, self.x_test, self.y_test = (stack(k) for k in
                                                                    ("x_train", "y_train", "x_test", "y_test"))
        else:
            self.x_train, self.y_train = first.x_train, first.y_train
            self.x_test, self.y_test = first.x_test, first.y_test
        self.n_train = self.x_train.shape[1 if self.per_seed_data else 0]
        self.crop, self.crop_offsets = first.train_crop, None
        self.seed_rows = torch.arange(self.n_seeds, device=self.device).unsqueeze(1)

    def _new_probe(self):
        return AlignmentProbe(self.model, self.loss_fn, self.cfg.metrics_neuron_sample, self.seeds[0])

    # --- batches --------------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        if self.streaming:
            return len(self.data.train_loader(0, self.seeds[0], self._local_batch()))
        return -(-self.n_train // self.cfg.batch_size)

    def _local_batch(self) -> int:
        """trainer.batch_size is the global batch; under DDP each rank's loader takes its share."""
        return -(-self.cfg.batch_size // self.dist.world)

    def epoch_batches(self, epoch, start=0):
        self.epoch_start_orders = [g.get_state() for g in self.orders]  # a resumed epoch redraws from these
        if self.crop is not None:
            self.crop_offsets = epoch_offsets(self.seeds, epoch, self.n_train, self.x_train.shape[-1],
                                              self.crop).to(self.device)
        if self.streaming:  # the order is the loader's own: (seed, epoch), resumable without replaying
            return self.data.train_loader(epoch, self.seeds[0], self._local_batch(), start_batch=start)
        if not self.stacked:
            return batches(self.n_train, self.cfg.batch_size, self.orders[0], self.device, self.cfg.shuffle)[start:]
        # each seed's epoch order from its own generator, drawn exactly as fa_bench.data.batches draws it
        if self.cfg.shuffle:
            order = torch.stack([torch.randperm(self.n_train, generator=g, device="cpu") for g in self.orders])
            order = order.to(self.device)
        else:
            order = torch.arange(self.n_train, device=self.device).expand(self.n_seeds, -1)
        return order.split(self.cfg.batch_size, dim=1)[start:]

    def batch_examples(self, batch) -> int:
        if self.streaming:  # this rank's share times the ranks (DistributedSampler pads the shares equal)
            return batch[1].shape[0] * self.dist.world
        return batch.shape[-1]

    def _gather(self, idx, shard=True):
        """The batch on the device: (x, y) for index tensors (this rank's slice of a global batch under
        DDP), or a streamed batch moved over."""
        if self.streaming:
            x, y = idx
            return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if shard:
            idx = self.dist.shard(idx)
        if self.per_seed_data:
            x, y = self.x_train[self.seed_rows, idx], self.y_train[self.seed_rows, idx]
        else:
            x, y = _take(self.x_train, idx), _take(self.y_train, idx)
        return (x, y) if self.crop is None else (self._crop(x, idx), y)

    # --- one step -------------------------------------------------------------------------------
    def begin_step(self, step, phase):
        if step in self.schedule.switches:
            self._switch(step)
        self.phase, self.step = phase, step
        self.lr_schedule.at_step(step)

    def _switch(self, step):
        if self.stacked:
            raise ValueError("a phase that switches the rule runs one seed at a time (not seed-stacked)")
        self.rule = switch_rule(self.model, self.schedule.switches[step], self.x_test[:2], self.seeds[0])
        self.switched.append(step)
        if self.probe_obj is not None:
            self.probe_obj = self._new_probe()
        if self.attack is not None:
            self.attack.check_rule(self.rule)

    def train_step(self, idx) -> dict:
        xb, yb = self._gather(idx)
        xb = self.noise.noisy_input(xb)
        for p in self.optimized:
            p.grad = None  # zero_grad(set_to_none=True) without its per-call profiler record and dynamo guard
        if self.cfg.channels_last and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with self.noise.training(), self.autocast():
            if self.attack is None:
                per_example, out = self.rule.compute_gradients(self.forward_model, xb, yb, self.loss_fn)
            else:
                per_example, out = self.attack.step(self.rule, self.forward_model, xb, yb, self.loss_fn)
        self.dist.sum_gradients(self.model.parameters(), yb.shape[0])
        for p in self.schedule.frozen_in(self.phase):
            p.grad = None  # optimizers skip parameters without a gradient (decay and momentum too)
        self.optimizer.step()
        if self.masked:
            reapply(self.masked)
        if self.const_norm is not None:
            self.const_norm.apply()
        if self.sign_freeze is not None:
            self.sign_freeze.after_step(self.step + 1)
        if self.frozen_seeds:
            self._hold_stopped_seeds()
        if self.stacked:
            return {"y": yb, "loss": per_example, "out": out}
        return {"y": yb[None], "loss": per_example[None], "out": out[None]}

    def _crop(self, xb, idx):
        """This epoch's window of each example (fa_bench.data.augment); before any epoch has begun (the
        probe's fixed batch, drawn at start-up) the centre windows, the view the test set has."""
        if self.crop_offsets is None:
            return centre_crop(xb, self.crop)
        corners = self.crop_offsets[self.seed_rows, idx] if self.stacked else self.crop_offsets[0][idx]
        return crop_at(xb, corners, self.crop)

    def stop_seed(self, index):
        if self.stacked:
            self.frozen_seeds[index] = [(p, p.detach()[index].clone()) for p in self.model.parameters()]

    @torch.no_grad()
    def _hold_stopped_seeds(self):
        for index, saved in self.frozen_seeds.items():
            for p, value in saved:
                p[index] = value

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "rule_rng": self.rule.rng_state(), "orders": self.epoch_start_orders, "switched": list(self.switched),
                "probe": None if self.probe_obj is None else self.probe_obj.state(),
                "frozen_seeds": {i: [v for _, v in saved] for i, saved in self.frozen_seeds.items()},
                "frozen_signs": None if self.sign_freeze is None else self.sign_freeze.state(),
                "noise": self.noise.state()}

    def load_state_dict(self, state: dict):
        for step in state["switched"]:  # the rule the model had: its buffers are what the state holds
            self._switch(step)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rule.set_rng_state(state["rule_rng"])
        for g, order_state in zip(self.orders, state["orders"]):
            g.set_state(order_state)
        if self.probe_obj is not None:
            self.probe_obj.load_state(state["probe"])
        params = list(self.model.parameters())
        self.frozen_seeds = {i: list(zip(params, values)) for i, values in state["frozen_seeds"].items()}
        if self.sign_freeze is not None:
            self.sign_freeze.load_state(state.get("frozen_signs"))
        self.noise.load_state(state.get("noise"))

    # --- measurements ---------------------------------------------------------------------------
    def reduce_window(self, window):
        if not self.dist.active or not window.n:
            return window
        total = Window(window.task)
        total.load_state(window.state())
        total.reduce()
        for key in ("loss", "sse", "t_sum", "t_sq", "wrong"):
            value = getattr(total, key)
            if isinstance(value, torch.Tensor):
                setattr(total, key, self.dist.sum_(value.clone()))
        total.n = int(self.dist.sum_(torch.tensor(window.n)).item())
        return total

    def reduce_flags(self, flags):
        return self.dist.sum_(flags.to(torch.int64)) > 0 if self.dist.active else flags

    @torch.no_grad()
    def evaluate(self, seeds):
        if not seeds:
            return {}
        was_training = self.model.training
        self.model.eval()
        bs = self.cfg.eval_batch_size
        if self.streaming:  # the whole test split on every rank (outputs gathered on the CPU)
            outs, ys = [], []
            for x, y in self.data.test_loader(bs):
                outs.append(self.model(x.to(self.device, non_blocking=True)).float().cpu())
                ys.append(y)
            self.model.train(was_training)
            return {0: metrics_of(torch.cat(outs), torch.cat(ys), self.loss_fn, self.task)}
        if not self.stacked:
            outs = torch.cat([self.model(xb) for xb in self.x_test.split(bs)])[None]
        elif self.per_seed_data:
            outs = torch.cat([self.model(xb) for xb in self.x_test.split(bs, dim=1)], dim=1)
        else:
            outs = torch.cat([self.model(xb.expand(self.n_seeds, *xb.shape)) for xb in self.x_test.split(bs)], dim=1)
        self.model.train(was_training)
        loss_fn = self.loss_fn
        if self.stacked:  # one seed's outputs at a time: the unstacked loss
            loss_fn = self._unstacked_loss
        return {s: metrics_of(outs[s], self.y_test[s] if self.per_seed_data else self.y_test, loss_fn, self.task)
                for s in seeds}

    def _unstacked_loss(self, out, target):
        return self.loss_fn(out[None], target[None])[0]

    def probe(self, idx):
        if self.probe_obj is None:
            return None
        return self.probe_obj.measure_seeds(*(self.probe_batch or self._gather(idx)))


def _take(t, idx):
    """``t[idx]`` by index_select: rows copied whole (a seed-stacked batch's (S, N) gather by advanced
    indexing was a sixth of a 10-seed step of a 784-50-20-10 MLP)."""
    return t.index_select(0, idx.reshape(-1)).view(*idx.shape, *t.shape[1:])


def train(model, rule, data, loss_fn, optimizer, cfg: TrainConfig, writer: MetricsWriter,
          generator: torch.Generator, desc: str = "train", seed: int = 0) -> TrainResult:
    """Train one converted model in place (the Python API's single run): this engine under the loop.
    ``rule`` is the model's (rule_of(model)); ``rule.compute_gradients`` fills ``.grad``, the optimizer steps."""
    if rule is not rule_of(model):
        raise ValueError("train: rule is not the rule the model was converted with")
    engine = RuleEngine(model, data, loss_fn, optimizer, cfg, seeds=[seed], orders=[generator])
    return train_loop(engine, cfg, [writer], desc=desc)[0]
