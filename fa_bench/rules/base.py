"""The Rule base class and the registry every rule module adds itself to."""
from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from fa_bench.chain import ChainPass
from fa_bench.layers import LayerBackward
from fa_bench.seeding import DeviceStreams
from fa_bench.seeding import generator as seeded_generator

RULES: dict[str, type[Rule]] = {}


def register(cls):
    """Class decorator: make a rule reachable by name from convert(), configs and tests."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} needs a name")
    if cls.name in RULES:
        raise ValueError(f"rule {cls.name!r} registered twice")
    RULES[cls.name] = cls
    return cls


def get_rule(name: str, **options) -> Rule:
    if name not in RULES:
        raise ValueError(f"unknown rule {name!r}; valid rules: {', '.join(sorted(RULES))}")
    return RULES[name](**options)


FEEDBACK_INITS = ("uniform", "normal", "kaiming_uniform", "fan_out_uniform")


def draw_feedback(shape, init: str, scale: float | None, generator: torch.Generator) -> torch.Tensor:
    """Draw a feedback tensor on the generator's device (CPU generators make B device-independent).

    fan_in / fan_out follow torch's convention for a weight of this shape: dim 1 × receptive field,
    dim 0 × receptive field.
    """
    receptive = math.prod(shape[2:]) if len(shape) > 2 else 1
    fan_in, fan_out = shape[1] * receptive, shape[0] * receptive
    mult = 1.0 if scale is None else float(scale)
    if init == "normal":
        R = torch.randn(shape, generator=generator, device=generator.device)
        return R if scale is None else R.mul_(mult)  # in place: brsf draws a B's worth every step
    bounds = {"uniform": mult,  # U[-scale, scale]: Lillicrap's B
              "kaiming_uniform": mult / math.sqrt(fan_in),  # nn.Linear's own W: U(±1/√fan_in)
              "fan_out_uniform": mult / math.sqrt(fan_out)}  # Nøkland 2016: U(±1/√fan_out)
    if init not in bounds:
        raise ValueError(f"unknown feedback init {init!r}; valid: {', '.join(FEEDBACK_INITS)}")
    return torch.rand(shape, generator=generator, device=generator.device).mul_(2).sub_(1).mul_(bounds[init])


def set_feedback(layer: nn.Module, value: torch.Tensor, learn: bool = False, name: str = "feedback_weight"):
    """(Re)bind a layer's feedback tensor as a buffer, or as a Parameter when the rule learns it."""
    value = value.to(device=layer.weight.device, dtype=layer.weight.dtype)
    if name in layer._parameters:
        del layer._parameters[name]
    if name in layer._buffers:
        del layer._buffers[name]
    if learn:
        layer.register_parameter(name, nn.Parameter(value))
    else:
        layer.register_buffer(name, value)


class Rule(LayerBackward):
    """How one learning rule trains a converted layer.

    A rule instance belongs to one converted model (it may hold per-model state, such as DFA's
    output error). Layers call it from their forward pass and from their backward Function:

    - ``feedback_matrix(layer)``: the matrix the backward pass uses in place of W (called in forward);
    - ``error_to_input(layer, grad_out, feedback, x)``: what the layer sends downstream;
    - ``weight_grads(layer, grad_out, x)``: the weight and bias gradients it reports;
    - ``feedback_grad(layer, grad_w)``: the gradient of B, for rules whose B learns.

    ``compute_gradients`` is the whole step (forward, loss, gradients); rules that do not learn by a
    backward pass (node perturbation) override it.
    """

    name: str = ""
    has_feedback = True  # layers carry layer.feedback_weight
    layerwise = True  # feedback_weight has W's shape
    learns_feedback = False
    uses_backward = True  # gradients come from one backward pass, so the alignment probe applies
    needs_input_shapes = False  # convert() must run one forward pass to size the feedback (on a convnet)
    supports_conv = True  # False: the rule is undefined on Conv2d layers and convert refuses them (ifa)
    conv_refusal = "it is not defined on convolutions"  # why, for convert's message
    random_stream: str | None = None  # names the rule's own random stream, if it draws while training
    seed_batchable = True  # its algebra runs unchanged on seed-stacked layers (fa_bench.stacking)
    # on a chain (an MLP) its backward calls may be made by hand, without autograd's graph (fa_bench.chain);
    # False keeps autograd (a rule whose feedback_matrix builds a graph of its own would need that)
    chain_backward = True
    # Options, merged down the class hierarchy; a rule accepts exactly these (no silently ignored ones).
    options: ClassVar[dict] = {"seed": 0, "output_layer": None}

    def __init__(self, **options):
        valid = {}
        for klass in reversed(type(self).__mro__):
            valid.update(klass.__dict__.get("options", {}))
        unknown = set(options) - set(valid)
        if unknown:
            raise TypeError(f"rule {self.name!r} got unknown option(s) {sorted(unknown)}; "
                            f"valid options: {', '.join(sorted(valid))}")
        self.opts = {**valid, **options}
        if "init" in self.opts and self.opts["init"] not in FEEDBACK_INITS:
            raise ValueError(f"rule {self.name!r}: unknown feedback init {self.opts['init']!r}; "
                             f"valid: {', '.join(FEEDBACK_INITS)}")
        self.layers: list[tuple[str, nn.Module]] = []
        self.output_name: str | None = None
        self.output_layer: nn.Module | None = None
        self.streams: DeviceStreams | None = None
        # seed-stacked models (fa_bench.stacking): the seeds along the layers' leading axis, one stream each
        self.seeds: list[int] | None = None
        self.seed_streams: list[DeviceStreams] | None = None

    def __repr__(self):
        return f"{type(self).__name__}({self.opts})"

    # --- set-up --------------------------------------------------------------------------------
    def attach(self, layers, input_shapes=None):
        """Bind to the model's converted layers (in module order) and create their feedback."""
        self.bind(layers)
        generator = seeded_generator(self.opts["seed"], "feedback")
        for name, layer in self.layers:
            self.init_layer(layer, generator, None if input_shapes is None else input_shapes.get(name))

    def bind(self, layers, seeds=None):
        """Take charge of ``layers`` whose feedback already exists (attach draws it first). ``seeds``:
        the layers are seed-stacked (fa_bench.stacking), seed i along their leading axis, and every
        per-step draw comes from that seed's own stream, as in the seed's own run."""
        self.layers = list(layers)
        names = [n for n, _ in self.layers]
        wanted = self.opts["output_layer"]
        if wanted is not None and wanted not in names:
            raise ValueError(f"output_layer {wanted!r} is not a converted layer; converted: {names}")
        self.output_name = wanted if wanted is not None else names[-1]
        self.output_layer = dict(self.layers)[self.output_name]
        # per-step draws happen on the layers' device, from a stream of the rule's own (not the global one)
        self.seeds = None if seeds is None else [int(s) for s in seeds]
        self.streams = self.seed_streams = None
        if self.random_stream and self.seeds is None:
            self.streams = DeviceStreams(self.opts["seed"], self.random_stream)
        elif self.random_stream:
            self.seed_streams = [DeviceStreams(s, self.random_stream) for s in self.seeds]
        for name, layer in self.layers:
            layer.rule = self
            layer.is_output = name == self.output_name

    def random_tensor(self, draw, shape, device, streams=None):
        """``draw(shape, generator)`` from the rule's own stream on ``device``. Seed-stacked, each seed's
        slice ``shape[1:]`` comes from that seed's stream, so seed s draws what its own run draws.
        ``streams``: other streams of the same layout (one, or one per seed) in place of the rule's."""
        if streams is None:
            streams = self.streams if self.seed_streams is None else self.seed_streams
        if self.seeds is None:
            return draw(tuple(shape), streams(device))
        return torch.stack([draw(tuple(shape[1:]), s(device)) for s in streams])

    def init_layer(self, layer, generator, input_shape):
        if self.has_feedback:
            B = draw_feedback(tuple(layer.weight.shape), self.opts["init"], self.opts["scale"], generator)
            set_feedback(layer, B, learn=self.learns_feedback)

    def rng_state(self):
        """The state of the random streams the rule draws from while training (None: it draws none).
        The probe saves it and puts it back, so measuring never shifts what training draws."""
        if self.seed_streams is not None:
            return [streams.get_state() for streams in self.seed_streams]
        return None if self.streams is None else self.streams.get_state()

    def set_rng_state(self, state):
        if self.seed_streams is not None:
            for streams, st in zip(self.seed_streams, state):
                streams.set_state(st)
        elif self.streams is not None:
            self.streams.set_state(state)

    def refresh(self, layer):
        """Bring ``layer.feedback_weight`` up to date with the current W, for rules whose B follows W
        (read by the probe, which runs before the step's forward pass)."""

    # --- the backward contract (forward, error_to_input, weight_grads, feedback_grad: LayerBackward's) ---
    def feedback_matrix(self, layer):
        return layer.feedback_weight.detach() if self.has_feedback else None

    # --- one training step's gradients -----------------------------------------------------------
    def compute_gradients(self, model, x, target, loss_fn):
        """Forward, loss, and gradients into ``.grad``; returns (per-example loss, output), detached.

        The loss is the batch mean per seed: per_example is (batch,), or (seeds, batch) on a
        seed-stacked model, whose seeds' gradients then stay each their own. On a chain (an MLP, stacked
        or not) the backward is made by hand, the same calls without autograd's graph (fa_bench.chain)."""
        chain = ChainPass.of(model, self, x)
        if chain is not None:
            return chain.gradients(x, target, loss_fn)
        out = model(x)
        per_example = loss_fn(out, target)
        loss = per_example.mean(-1)
        (loss.sum() if loss.dim() else loss).backward()  # one seed: the mean is already the scalar
        return per_example.detach(), out.detach()
