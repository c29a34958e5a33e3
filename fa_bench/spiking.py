"""Lillicrap, Cownden, Tweed & Akerman 2016, Fig. 4: a deep network of stochastic binary neurons that
integrate their input learns MNIST by feedback alignment, with forward activity, feedback activity and
plasticity all running at every time step (Methods, "A deep network that integrates its activity and
spikes", eqs. 5-8).

Per time step t, for every image stream (in this order, all from that step's values):

* forward, bottom-up (eq. 5): V^l(t) = (1-τ) V^l(t-1) + τ (W^l φ_h(V^{l-1}(t)) + b^l); a neuron spikes
  with probability sigmoid(V); an input neuron spikes with probability min(pixel, 0.95);
* feedback, top-down: error neurons (eq. 7) U^m(t) = (1-τ) U^m(t-1) + τ (φ_h(V^m(t)) - φ*(t)), hidden
  feedback neurons (eq. 6) U^l(t) = (1-τ) U^l(t-1) + τ B^l φ_δ(U^{l+1}(t));
* plasticity (eq. 8): ΔW^l_ji = -η φ_δ(U^l_j) φ_h(V^{l-1}_i) Ψ(V^l_j) - ηγ W^l_ji, and the same for b^l
  with a presynaptic factor of 1.

Readings of what the paper leaves open (each a named constant or argument below):

* φ_δ, "a simple sigmoidal function centred on 0", is tanh: unit slope at 0, so a small error reaches
  the synapse unscaled (the output layer's rule is then the delta rule e·Ψ·h of the rate network).
* The sign: the error neuron is spikes minus target (eq. 7), so the rule carries a minus: an output
  neuron that fires too much loses drive from the neurons that made it fire. The same minus serves the
  hidden layers (B is random; feedback alignment makes its sign right).
* Biases are learned by the same three-factor rule with presynaptic activity 1, and decay like the
  weights ("weight decay ... for all forward weights and biases").
* Weight decay is the standard L2 term inside the learning rate: W <- W - η(γW + ...). Its per-step
  factor 1 - ηγ = 1 - 1e-11 rounds to 1 in float32, so the factor is accumulated (in float64) and applied
  once it reaches 1e-6; the applied decay per image matches the paper's to within that.
* Test guess: the class whose group of output neurons has the most spikes at the last of the M = 5 time
  steps of a test image ("after M = 5 time steps"); ``readout="sum"`` counts spikes over all M steps.
  Ties go to the lower class (argmax).
* Testing runs identical forward dynamics with plasticity off and no reset between test images; the
  feedback path is skipped then, as it cannot reach the forward path or the guess.

Speed: ``streams`` independent image streams run side by side as a batch dimension, each with its own
state and its own images; the weight change per time step is the sum of each stream's own three-factor
change (and decay), so every stream's synapses see exactly the paper's update and ``streams=1`` is the
paper's single stream.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from fa_bench.data import DataBundle
from fa_bench.records import MetricsWriter
from fa_bench.seeding import DeviceStreams, derive_seed
from fa_bench.seeding import generator as seeded_generator
from fa_bench.trainer import Engine, TrainConfig, TrainResult, train_loop

RULE = "fa"  # the plasticity of eq. 8 is feedback alignment's: the only rule this engine trains by
INPUT_MAX_P = 0.95  # input spike probability saturates here (Methods)
DECAY_FLUSH = 1e-6  # apply accumulated weight decay once it is this large (well above float32 resolution)
EVAL_STREAMS = 1000  # test images run this many at a time (no plasticity, so streams do not interact)
TRACE_COLUMNS = ["phase", "examples", "t", "kind", "layer", "neuron", "value"]


def phi_delta(u: torch.Tensor) -> torch.Tensor:
    """Feedback neurons' output: a sigmoid centred on 0 (tanh), so negative errors can be signalled."""
    return torch.tanh(u)


def psi(v: torch.Tensor) -> torch.Tensor:
    """Postsynaptic weighting: the logistic derivative at the neuron's PSP."""
    s = torch.sigmoid(v)
    return s * (1 - s)


def layer_names(n_layers: int) -> list[str]:
    """'1'..'m-1' for the hidden layers, 'out' for the output layer."""
    return [str(l) for l in range(1, n_layers)] + ["out"]


@dataclass
class SpikingState:
    """PSPs of one batch of streams: forward V^l and feedback U^l for l = 1..m, each (streams, n_l)."""

    v: list[torch.Tensor]
    u: list[torch.Tensor]

    def narrow(self, n: int) -> SpikingState:
        """The first n streams, as views: steps on it update this state in place."""
        return SpikingState([v[:n] for v in self.v], [u[:n] for u in self.u])

    def finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self.v + self.u)


@dataclass
class StepOut:
    spikes: list[torch.Tensor]  # input layer, then layers 1..m
    modulators: list[torch.Tensor] | None  # φ_δ(U^l) for l = 1..m; None when plasticity is off


class SpikingNet:
    """Forward weights W^l (n_l, n_{l-1}), biases b^l, fixed feedback B^l (n_l, n_{l+1}) for hidden l."""

    def __init__(self, sizes=(784, 1500, 1500, 1500, 1000), n_classes=10, *, seed=0, tau=0.9, lr=1e-3,
                 weight_decay=1e-8, w_scale=0.05, b_scale=0.1, device=None):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must be at least (inputs, outputs), all >= 1; got {sizes}")
        if sizes[-1] % n_classes:
            raise ValueError(f"the output layer ({sizes[-1]} neurons, sizes={sizes}) must split into "
                             f"{n_classes} equal class groups")
        self.sizes, self.n_classes, self.group = sizes, n_classes, sizes[-1] // n_classes
        self.tau, self.lr, self.weight_decay = tau, lr, weight_decay
        self.device = torch.device(device or "cpu")
        fwd, fb = seeded_generator(seed, "spiking/forward"), seeded_generator(seed, "spiking/feedback")
        self.W, self.b = [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.W.append(self._uniform((n_out, n_in), w_scale, fwd))
            self.b.append(self._uniform((n_out,), w_scale, fwd))
        self.B = [self._uniform((n, n_above), b_scale, fb) for n, n_above in zip(sizes[1:-1], sizes[2:])]
        self._decay_factor = 1.0  # decay owed to W and b, not yet applied (float64)

    def _uniform(self, shape, scale, gen):
        # drawn on the CPU so a seed gives the same network on every device
        return ((torch.rand(shape, generator=gen) * 2 - 1) * scale).to(self.device)

    def init_state(self, streams: int) -> SpikingState:
        def zeros():
            return [torch.zeros(streams, n, device=self.device) for n in self.sizes[1:]]
        return SpikingState(zeros(), zeros())

    def spike(self, p: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """Bernoulli(p) spikes, 0/1 floats."""
        return (torch.rand(p.shape, generator=gen, device=p.device) < p).to(p.dtype)

    def target(self, y: torch.Tensor) -> torch.Tensor:
        """φ*: 1 on every output neuron of the presented class's group, 0 elsewhere; (streams, n_out)."""
        groups = torch.arange(self.sizes[-1], device=y.device) // self.group
        return (groups == y[:, None]).float()

    def group_counts(self, out_spikes: torch.Tensor) -> torch.Tensor:
        return out_spikes.view(out_spikes.shape[0], self.n_classes, self.group).sum(-1)

    @torch.no_grad()
    def step(self, state: SpikingState, x: torch.Tensor, target: torch.Tensor | None = None,
             plastic: bool = True, gen: torch.Generator | None = None) -> StepOut:
        """One time step for every stream in ``state`` (updated in place); ``x`` is (streams, n_in) pixels
        in [0, 1]. With ``plastic``, the feedback path runs and the weights change."""
        spikes = [self.spike(x.clamp(max=INPUT_MAX_P), gen)]
        for W, b, v in zip(self.W, self.b, state.v):
            v.mul_(1 - self.tau).add_(torch.addmm(b, spikes[-1], W.t()), alpha=self.tau)
            spikes.append(self.spike(torch.sigmoid(v), gen))
        if not plastic:
            return StepOut(spikes, None)
        if target is None:
            raise ValueError("a plastic step needs the target φ* for the error neurons")
        modulators = self._feedback(state, spikes[-1], target)
        self._plasticity(state, spikes, modulators)
        return StepOut(spikes, modulators)

    def _feedback(self, state, out_spikes, target) -> list[torch.Tensor]:
        error = state.u[-1]
        error.mul_(1 - self.tau).add_(out_spikes - target, alpha=self.tau)  # eq. 7
        modulators = [phi_delta(error)]
        for B, u in zip(reversed(self.B), reversed(state.u[:-1])):  # top-down: uses this step's U^{l+1}
            u.mul_(1 - self.tau).add_(modulators[0] @ B.t(), alpha=self.tau)  # eq. 6
            modulators.insert(0, phi_delta(u))
        return modulators

    def _plasticity(self, state, spikes, modulators):
        streams = spikes[0].shape[0]
        # each stream decays the weights once per step, as in the paper's single stream
        self._decay_factor *= (1.0 - self.lr * self.weight_decay) ** streams
        decay = 1.0
        if 1.0 - self._decay_factor >= DECAY_FLUSH:
            decay, self._decay_factor = self._decay_factor, 1.0
        for W, b, pre, mod, v in zip(self.W, self.b, spikes[:-1], modulators, state.v):
            post = mod * psi(v)  # (streams, n_l): third factor times postsynaptic weighting
            W.addmm_(post.t(), pre, beta=decay, alpha=-self.lr)  # eq. 8, summed over streams
            b.mul_(decay).add_(post.sum(0), alpha=-self.lr)

    def finite(self) -> bool:
        return all(bool(torch.isfinite(t).all()) for t in self.W + self.b)


def present(net: SpikingNet, state: SpikingState, x: torch.Tensor, y: torch.Tensor | None, steps: int,
            plastic: bool, gen, readout: str = "last", on_step=None) -> torch.Tensor:
    """Show one image per stream for ``steps`` time steps; returns the guessed classes.

    ``readout``: 'last' counts each class group's spikes at the last step, 'sum' over all steps.
    ``on_step(k, out)`` sees every step (traces).
    """
    target = net.target(y) if plastic else None
    counts = 0
    for k in range(steps):
        out = net.step(state, x, target, plastic, gen)
        if on_step is not None:
            on_step(k, out)
        if readout == "sum" or k == steps - 1:
            counts = counts + net.group_counts(out.spikes[-1])
    return counts.argmax(1)


@torch.no_grad()
def evaluate_spiking(net: SpikingNet, x: torch.Tensor, y: torch.Tensor, *, steps: int, readout: str,
                     seed: int, streams: int = EVAL_STREAMS) -> float:
    """Test error (%) with plasticity off. Each stream shows its test images one after the other with no
    reset; the spike draws restart from the seed at every evaluation (same noise, comparable points)."""
    n = x.shape[0]
    state = net.init_state(min(streams, n))
    gen = torch.Generator(device=net.device).manual_seed(derive_seed(seed, "spiking/eval"))
    wrong = 0
    for idx in torch.arange(n, device=x.device).split(streams):
        guess = present(net, state.narrow(len(idx)), x[idx], None, steps, False, gen, readout)
        wrong = wrong + (guess != y[idx]).sum()
    return 100.0 * float(wrong) / n


class TraceRecorder:
    """Records stream 0 over windows of training time steps: spike rasters of sampled neurons of every
    layer, and one hidden neuron's PSP V and modulator φ_δ(U)."""

    def __init__(self, net: SpikingNet, seed: int, phases, total_steps: int, steps_per_image: int,
                 trace_steps: int, n_neurons: int):
        gen = seeded_generator(seed, "spiking/trace")
        hidden = [torch.randperm(n, generator=gen)[:n_neurons].sort().values for n in net.sizes[1:-1]]
        # output: the same number from every class group, so the raster shows the groups
        per_class = max(1, n_neurons // net.n_classes)
        out = torch.cat([c * net.group + torch.randperm(net.group, generator=gen)[:per_class].sort().values
                         for c in range(net.n_classes)])
        self.sampled = [ix.to(net.device) for ix in hidden + [out]]
        self.names = layer_names(len(self.sampled))
        self.neuron = int(self.sampled[0][0])  # the PSP/modulator neuron: hidden layer 1
        self.trace_steps = trace_steps
        last_start = max(0, total_steps - trace_steps)
        # windows start at an image onset
        self.starts = {p: (round(p * last_start) // steps_per_image) * steps_per_image for p in phases}
        self.examples_at: dict[float, int] = {}  # training images seen when each window opened
        self.rows: list[list] = []

    def active(self, step: int) -> list[float]:
        return [p for p, s in self.starts.items() if s <= step < s + self.trace_steps]

    def hook(self, step: int, steps: int, examples: int, state: SpikingState, y: torch.Tensor):
        """The ``on_step`` for an image shown from time step ``step`` on; None outside every window."""
        if not any(self.active(step + k) for k in range(steps)):
            return None
        label = int(y[0])

        def on_step(k, out):
            self.record(step + k, examples, out, state, label if k == 0 else None)
        return on_step

    def record(self, step: int, examples: int, out: StepOut, state: SpikingState, label: int | None):
        for phase in self.active(step):
            t = step - self.starts[phase]
            self.examples_at.setdefault(phase, examples)
            base = [phase, self.examples_at[phase], t]
            if label is not None:
                self.rows.append(base + ["label", "", "", label])
            for name, ix, s in zip(self.names, self.sampled, out.spikes[1:]):
                self.rows += [base + ["spike", name, n, v] for n, v in zip(ix.tolist(), s[0, ix].tolist())]
            self.rows.append(base + ["psp", self.names[0], self.neuron, float(state.v[0][0, self.neuron])])
            self.rows.append(base + ["modulator", self.names[0], self.neuron,
                                     float(out.modulators[0][0, self.neuron])])

    def write(self, path: Path | str):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(TRACE_COLUMNS)
            w.writerows(self.rows)


def _check_args(data: DataBundle, sizes, n_classes, streams, steps_per_image, test_steps, epochs,
                eval_every, readout, trace_at, trace_steps):
    if data.task != "classification":
        raise ValueError(f"the spiking network classifies; data task is {data.task!r}")
    n_in = math.prod(data.x_train.shape[1:])
    if sizes[0] != n_in:
        raise ValueError(f"sizes[0]={sizes[0]} but the images have {n_in} pixels (sizes={tuple(sizes)})")
    if data.n_outputs != n_classes:
        raise ValueError(f"n_classes={n_classes} but the data have {data.n_outputs} classes")
    counts = {"streams": streams, "steps_per_image": steps_per_image, "test_steps": test_steps,
              "epochs": epochs, "eval_every": eval_every, "trace_steps": trace_steps}
    bad = {k: v for k, v in counts.items() if not (isinstance(v, int) and v >= 1)}
    if bad:
        raise ValueError(f"spiking settings must be integers >= 1: {bad}")
    if readout not in ("last", "sum"):
        raise ValueError(f"readout must be 'last' or 'sum', got {readout!r}")
    if any(not 0.0 <= float(p) <= 1.0 for p in trace_at):
        raise ValueError(f"trace_at are fractions of training in [0, 1], got {tuple(trace_at)}")


class SpikingEngine(Engine):
    """Lillicrap's Fig. 4 network under the one training loop: a batch is one image per stream, shown
    for ``steps_per_image`` time steps with plasticity on (the `step` column counts time steps, the
    cadence counts training images). Test error comes with plasticity off; a non-finite state stops
    the run as diverged. The network learns without loss or probe, so it honours no other trainer option."""

    name = "spiking"
    eval_unit = "examples"
    honours = frozenset()

    def __init__(self, data: DataBundle, *, seed, sizes, n_classes, tau, steps_per_image, test_steps, streams,
                 lr, weight_decay, w_scale, b_scale, eval_n, readout, trace_at, trace_steps, trace_neurons,
                 epochs, trace_path, device):
        self.seed, self.streams, self.steps_per_image, self.test_steps = seed, streams, steps_per_image, test_steps
        self.seeds = [seed]
        self.readout, self.trace_path = readout, trace_path
        self.step_size = steps_per_image
        device = torch.device(device) if device is not None else data.x_train.device
        self.net = SpikingNet(sizes, n_classes, seed=seed, tau=tau, lr=lr, weight_decay=weight_decay,
                              w_scale=w_scale, b_scale=b_scale, device=device)
        self.x_train, self.y_train = data.x_train.flatten(1).to(device), data.y_train.to(device)
        self.x_test, self.y_test = data.x_test.flatten(1).to(device), data.y_test.to(device)
        if eval_n is not None:
            self.x_test, self.y_test = self.x_test[:eval_n], self.y_test[:eval_n]
        self.n = self.x_train.shape[0]
        total_steps = epochs * self.steps_per_epoch() * steps_per_image
        self.tracer = TraceRecorder(self.net, seed, [float(p) for p in trace_at], total_steps, steps_per_image,
                                    trace_steps, trace_neurons)
        self.order_gen = seeded_generator(seed, "spiking/order")
        self.spike_gen = DeviceStreams(seed, "spiking/spikes")(device)
        self.state = self.net.init_state(streams)
        self.device = device
        self.time_step = self.examples = 0
        self.epoch_start_order = self.order_gen.get_state()

    def steps_per_epoch(self) -> int:
        return math.ceil(self.n / self.streams)

    def epoch_batches(self, epoch, start=0):
        self.epoch_start_order = self.order_gen.get_state()
        return torch.randperm(self.n, generator=self.order_gen).to(self.device).split(self.streams)[start:]

    def batch_examples(self, idx) -> int:
        return len(idx)

    @torch.no_grad()
    def train_step(self, idx) -> dict:
        xb, yb = self.x_train[idx], self.y_train[idx]
        hook = self.tracer.hook(self.time_step, self.steps_per_image, self.examples, self.state, yb)
        guess = present(self.net, self.state.narrow(len(idx)), xb, yb, self.steps_per_image, True,
                        self.spike_gen, self.readout, on_step=hook)
        self.time_step += self.steps_per_image
        self.examples += len(idx)
        return {"y": yb[None], "pred": guess[None]}

    def broken(self, seeds):
        if seeds and not (self.net.finite() and self.state.finite()):
            return {0: "the network's weights or potentials are not finite"}
        return {}

    def evaluate(self, seeds):
        if not seeds:
            return {}
        return {0: {"error": evaluate_spiking(self.net, self.x_test, self.y_test, steps=self.test_steps,
                                              readout=self.readout, seed=self.seed)}}

    def finish(self):
        if self.trace_path is not None:
            self.tracer.write(self.trace_path)

    def state_dict(self) -> dict:
        net, clone = self.net, lambda ts: [t.clone() for t in ts]  # noqa: E731
        return {"W": clone(net.W), "b": clone(net.b), "B": clone(net.B), "decay_factor": net._decay_factor,
                "v": clone(self.state.v), "u": clone(self.state.u), "order": self.epoch_start_order,
                "spikes": self.spike_gen.get_state(), "time_step": self.time_step, "examples": self.examples,
                "trace_rows": list(self.tracer.rows), "trace_examples_at": dict(self.tracer.examples_at)}

    def load_state_dict(self, state: dict):
        net = self.net
        for mine, saved in ((net.W, state["W"]), (net.b, state["b"]), (net.B, state["B"]),
                            (self.state.v, state["v"]), (self.state.u, state["u"])):
            for t, value in zip(mine, saved):
                t.copy_(value)
        net._decay_factor = state["decay_factor"]
        self.order_gen.set_state(state["order"])
        self.spike_gen.set_state(state["spikes"])
        self.time_step, self.examples = state["time_step"], state["examples"]
        self.tracer.rows, self.tracer.examples_at = list(state["trace_rows"]), dict(state["trace_examples_at"])


def train_spiking(data: DataBundle, writer: MetricsWriter, *, seed=0, sizes=(784, 1500, 1500, 1500, 1000),
                  n_classes=10, tau=0.9, steps_per_image=5, test_steps=5, streams=16, epochs=1, lr=1e-3,
                  weight_decay=1e-8, w_scale=0.05, b_scale=0.1, eval_every=10000, eval_n=None,
                  readout="last", trace_at=(0.0, 0.5, 1.0), trace_steps=50, trace_neurons=40,
                  trace_path=None, progress=True, device=None, checkpoint=None, resume=None) -> TrainResult:
    """Train Lillicrap's Fig. 4 network on ``data`` (images in [0, 1], class labels).

    Logs train/error (guesses at the last step of each training image, over the images since the last
    evaluation) and test/error on the first ``eval_n`` test images (all when None) at the start, every
    ``eval_every`` training images and at the end. ``step`` counts batched time steps (weight updates),
    ``examples`` training images. Traces of stream 0 at the ``trace_at`` fractions of training go to
    ``trace_path`` (CSV, TRACE_COLUMNS). ``checkpoint`` / ``resume``: as for fa_bench.trainer.train_loop.
    """
    _check_args(data, sizes, n_classes, streams, steps_per_image, test_steps, epochs, eval_every, readout,
                trace_at, trace_steps)
    engine = SpikingEngine(data, seed=seed, sizes=sizes, n_classes=n_classes, tau=tau,
                           steps_per_image=steps_per_image, test_steps=test_steps, streams=streams, lr=lr,
                           weight_decay=weight_decay, w_scale=w_scale, b_scale=b_scale, eval_n=eval_n,
                           readout=readout, trace_at=trace_at, trace_steps=trace_steps,
                           trace_neurons=trace_neurons, epochs=epochs, trace_path=trace_path, device=device)
    cfg = TrainConfig(epochs=epochs, batch_size=streams, eval_every=eval_every, metrics_every=0, progress=progress)
    return train_loop(engine, cfg, [writer], desc="spiking", checkpoint=checkpoint, resume=resume)[0]
