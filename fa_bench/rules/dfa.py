"""Direct feedback alignment (Nøkland 2016): the output error reaches every hidden layer directly."""
import math

from fa_bench.rules.base import Rule, draw_feedback, register, set_feedback


@register
class DFA(Rule):
    """Every converted layer sends B·e to its input, where e is the output error.

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
    """

    name = "dfa"
    layerwise = False
    options = {"init": "kaiming_uniform"}

    def attach(self, layers, input_shapes=None):
        self.error = None
        by_name = dict(layers)
        out_name = self.opts["output_layer"] or list(by_name)[-1]
        if out_name not in by_name:
            raise ValueError(f"output_layer {out_name!r} is not a converted layer; converted: {list(by_name)}")
        self.n_out = by_name[out_name].weight.shape[0]
        super().attach(layers, input_shapes)

    def init_layer(self, layer, generator, input_shape):
        if layer.is_output:
            shape = tuple(layer.weight.shape)
        elif hasattr(layer, "in_features"):
            shape = (self.n_out, layer.in_features)
        elif input_shape is not None:
            shape = (self.n_out, math.prod(input_shape))
        else:
            raise ValueError("dfa on a model with Conv2d layers needs the input shape of each layer: "
                             "pass example_input=<one batch> to fa_bench.convert")
        set_feedback(layer, draw_feedback(shape, self.opts["init"], self.opts["scale"], generator))

    def error_to_input(self, layer, grad_out, feedback, x):
        if layer.is_output:
            self.error = grad_out
            return layer.propagate(grad_out, feedback, x)
        if self.error is None:
            raise RuntimeError("dfa: a hidden layer ran its backward before the output layer; "
                               "the output layer must be downstream of every converted layer")
        if self.error.shape[:-1] == x.shape[:-1]:  # Linear on (batch, ..., features): e per position
            return self.error @ feedback
        e = self.error.reshape(x.shape[0], -1)
        return (e @ feedback).view(x.shape)

    def compute_gradients(self, model, x, target, loss_fn):
        self.error = None
        try:
            return super().compute_gradients(model, x, target, loss_fn)
        finally:
            self.error = None  # don't hold the batch's error (and its memory) between steps


