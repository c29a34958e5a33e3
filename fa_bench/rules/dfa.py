"""Direct feedback alignment (Nøkland 2016): the output error reaches every hidden layer directly."""
import math
from typing import ClassVar

from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback


@register
class DFA(Rule):
    """Every converted layer sends e·B to its input, where e is the output error.

    How the output error arrives: e is whatever gradient reaches the output layer's pre-activation,
    i.e. ∂L/∂a_out of the loss you call ``backward`` on (y − t for softmax cross-entropy, or for
    sigmoid outputs with binary cross-entropy). The output layer's backward runs first, stores e on
    this rule, and sends e·B_out to its input exactly as FA would. Every other layer ignores what
    arrives from above for its input gradient and sends e·B_l instead. The gradient delivered to a
    layer's *input* is the DFA signal of the layer below, so it then passes through that layer's
    nonlinearity (and any pooling between them), giving δa_l = (B_l e) ∘ f'(a_l) as in the paper;
    for convnets the injection point is the output of the pooling layer, as in Nøkland's CONV net.

    ``layer.feedback_weight`` has shape (n_outputs, numel of one input example): for the output layer
    that is W's shape, so on a network with one hidden layer DFA and FA coincide.

    ``direct``: null sends the output error straight to every layer; a list of converted layers
    (names, or indices in module order) sends it only to those (through the layer just above each),
    and every other layer passes exact backprop down (Nøkland Fig. 2 left: the first layer learns by
    DFA while the layers above go on with BP).
    """

    name = "dfa"
    layerwise = False
    needs_input_shapes = True  # a conv layer's feedback is sized by its input's spatial extent
    options: ClassVar[dict] = {"init": "kaiming_uniform", "scale": None, "direct": None}

    def bind(self, layers, seeds=None):
        self.error = None
        super().bind(layers, seeds)
        self.senders = None  # None: every layer sends e·B down
        if self.opts["direct"] is not None:
            names = [n for n, _ in self.layers]
            self.senders = set()
            for ref in self.opts["direct"]:
                if isinstance(ref, int) and -len(names) <= ref < len(names):
                    i = ref % len(names)
                elif str(ref) in names:
                    i = names.index(str(ref))
                else:
                    raise ValueError(f"dfa direct: no converted layer {ref!r}; converted layers: {names}")
                if i == len(names) - 1:
                    raise ValueError(f"dfa direct: {names[i]!r} is the output layer, which gets e itself")
                self.senders.add(id(self.layers[i + 1][1]))  # the layer above delivers the error

    def init_layer(self, layer, generator, input_shape):
        n_out = self.output_layer.weight.shape[0]
        if layer.is_output:
            shape = tuple(layer.weight.shape)
        elif hasattr(layer, "in_features"):
            shape = (n_out, layer.in_features)
        else:  # a conv layer: convert() measured its input (it refuses a convnet without example_input)
            shape = (n_out, math.prod(layer.padded_input_shape(input_shape)))
        set_feedback(layer, draw_feedback(shape, self.opts["init"], self.opts["scale"], generator))

    def error_to_input(self, layer, grad_out, feedback, x):
        if layer.is_output:
            self.error = grad_out
        if self.senders is not None and id(layer) not in self.senders:
            return layer.propagate(grad_out, layer.weight.detach(), x)  # exact backprop through this one
        if layer.is_output:
            return layer.propagate(grad_out, feedback, x)
        e = self.error
        if e is None:
            raise RuntimeError("dfa: a hidden layer ran its backward before the output layer; "
                               "the output layer must be downstream of every converted layer")
        if e.shape[:-1] == x.shape[:-1]:  # Linear on (batch, ..., features): e per position
            return e @ feedback
        if e.shape[0] != x.shape[0] or e[0].numel() != feedback.shape[0] or x[0].numel() != feedback.shape[1]:
            raise RuntimeError(f"dfa: cannot send an output error of shape {tuple(e.shape)} to an input of shape "
                               f"{tuple(x.shape)} through B {tuple(feedback.shape)}; DFA needs one output "
                               f"error vector per example (or per position, for token models)")
        return (e.reshape(x.shape[0], -1) @ feedback).view(x.shape)

    def compute_gradients(self, model, x, target, loss_fn):
        self.error = None
        try:
            return super().compute_gradients(model, x, target, loss_fn)
        finally:
            self.error = None  # don't hold the batch's error (and its memory) between steps
