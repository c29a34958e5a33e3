"""Indirect feedback alignment (Nøkland 2016, Fig. 1d and eq. 9): the output error reaches only the
first hidden layer; every layer above learns from that layer's update direction, propagated forward."""
from __future__ import annotations

import torch

from fa_bench.rules.base import register
from fa_bench.rules.dfa import DFA


@register
class IFA(DFA):
    """Nøkland's eq. 9, for converted layers 0..L (module order, L the output layer) in a chain:

        e     = ∂J/∂a_L                                  (what reaches the output pre-activation)
        δa_0  = (B_1 e) ⊙ f'(a_0)                        the only place e enters the hidden layers
        δa_k  = (W_k δa_{k-1}) ⊙ f'(a_k),  k = 1..L-1    the direction carried forward through W_k
        ΔW_k ∝ −δa_k h_{k-1}ᵀ,  ΔW_L ∝ −e h_{L-1}ᵀ        (eq. 10)

    Signs: every δ is a gradient-like quantity, as the paper's e = ŷ − y; the optimizer steps against
    them. W_k is the forward weight (detached; no bias: a direction is a difference of activations),
    and δa_{k-1} enters it as it stands: f'(a_{k-1}) is applied once, inside δa_{k-1}, exactly as
    eq. 9 writes it (not the Jacobian-vector product W_k (f'(a_{k-1}) ⊙ δh_{k-1})).

    B_1 is the feedback of converted layer 1 (its input is h_0), shaped as DFA's: (n_outputs,
    in_features); with one hidden layer it is the output layer's (W's shape) and IFA is DFA (and FA).
    Every layer carries a DFA-shaped B drawn from the same stream as dfa, so ifa and dfa with one seed
    share B_1; only layer 1's is used by the hidden layers, and layer 0 sends e·B_0 to the network
    input as DFA does (the rule's own input signal, e.g. for an FGSM attack through the rule).

    How it runs in one backward pass: the forward records each layer's input and output. When the
    output layer's backward receives e, the rule computes δa_0..δa_{L-2} with vector-Jacobian products
    through the plain modules between the layers (their Jacobian is f'), then each layer k+1 sends
    W_k δa_{k-1} (layer 1: B_1 e) to its input, so autograd's own pass through the activation hands
    layer k exactly δa_k. The alignment probe therefore sees IFA's real teaching signals.

    Requirements (checked): fully connected layers only, the output layer last. The modules between
    two converted layers must act elementwise (activations, dropout, flatten): their Jacobian is taken
    as the f' of eq. 9. On a convnet the conv output a_k is pooled before the next layer, so δa_k has
    not the shape of W_{k+1}'s input and eq. 9 is undefined: convert refuses it.
    """

    name = "ifa"
    needs_input_shapes = False  # fully connected only: in_features sizes every B
    supports_conv = False

    conv_refusal = ("IFA carries the first hidden layer's update direction forward through the next layer's "
                    "W (Nøkland 2016, eq. 9), and on a convnet pooling between the layers gives that direction a "
                    "different shape from the next layer's input (Nøkland used IFA only on an MLP); use dfa or "
                    "fa for convnets")

    def __init__(self, **options):
        super().__init__(**options)
        if self.opts.get("direct") is not None:
            raise ValueError("ifa sends the output error into the first hidden layer only; `direct` is a dfa option")

    def bind(self, layers, seeds=None):
        self.trace, self.sends = {}, {}
        super().bind(layers, seeds)
        chain = [l for _, l in self.layers]
        if chain[-1] is not self.output_layer:
            raise ValueError(f"ifa: the output layer ({self.output_name!r}) must be the last converted layer "
                             f"in module order, since every hidden layer's direction comes from the one below it")
        self.position = {id(l): i for i, l in enumerate(chain)}

    def forward(self, layer, x):
        out = layer.run_rule(x, self)
        if torch.is_grad_enabled():  # what eq. 9 needs in the backward: h_{k-1} and a_k with their graph
            self.trace[id(layer)] = (x, out)
        return out

    def error_to_input(self, layer, grad_out, feedback, x):
        if layer.is_output:
            self.error = grad_out
            self.sends = self._forward_directions(grad_out)
            self.trace = {}  # the directions are planned: drop the graph references
        if self.position[id(layer)] >= 2:
            return self.sends.pop(id(layer))
        return super().error_to_input(layer, grad_out, feedback, x)  # layers 0 and 1 send e·B as in DFA

    def _forward_directions(self, e):
        """{id(layer k+1): W_k δa_{k-1}} for k = 1..L-1, shaped as layer k+1's input (eq. 9)."""
        chain = [l for _, l in self.layers]
        sends = {}
        if len(chain) < 3:  # at most one hidden layer: IFA is DFA
            return sends
        # B_1 e, sent to layer 1's input exactly as DFA sends it (per position for token inputs); casts
        # follow the layers' backward, which runs in the gradient's dtype under autocast
        B1 = chain[1].feedback_weight.detach().to(e.dtype)
        v = DFA.error_to_input(self, chain[1], e, B1, self._traced(chain[1])[0])
        for k in range(len(chain) - 2):
            a_k = self._traced(chain[k])[1]
            x_next = self._traced(chain[k + 1])[0]
            delta = self._through_activation(a_k, x_next, v, k)  # δa_k = v ⊙ f'(a_k)
            W_next = chain[k + 1].weight.detach().to(delta.dtype)
            v = chain[k + 1].affine(delta.reshape(x_next.shape), W_next, None)  # W_{k+1} δa_k
            target = self._traced(chain[k + 2])[0]
            if v.numel() != target.numel():
                raise RuntimeError(self._not_elementwise(k + 1, v, target))
            sends[id(chain[k + 2])] = v.reshape(target.shape)
        return sends

    def _through_activation(self, a, x_next, v, k):
        """The vector-Jacobian product of the plain modules from a_k to layer k+1's input: v ⊙ f'(a_k)."""
        if v.numel() != x_next.numel() or a.numel() != x_next.numel():
            raise RuntimeError(self._not_elementwise(k, a, x_next))
        (delta,) = torch.autograd.grad(x_next, a, v.reshape(x_next.shape).to(x_next.dtype),
                                       retain_graph=True, allow_unused=True)
        if delta is None:
            names = [n for n, _ in self.layers]
            raise RuntimeError(f"ifa: the input of layer {names[k + 1]!r} does not depend on the output of "
                               f"layer {names[k]!r}; ifa needs the converted layers to form a chain")
        return delta

    def _traced(self, layer):
        if id(layer) not in self.trace:
            raise RuntimeError("ifa: no recorded forward pass for this backward; run the forward with "
                               "gradients enabled through the converted model (not via exact_bp)")
        return self.trace[id(layer)]

    def _not_elementwise(self, k, a, x_next):
        names = [n for n, _ in self.layers]
        return (f"ifa: the output of layer {names[k]!r} ({tuple(a.shape)}) and the input of the next layer "
                f"({tuple(x_next.shape)}) differ in size; eq. 9 needs only elementwise modules between them")

    def compute_gradients(self, model, x, target, loss_fn):
        try:
            return super().compute_gradients(model, x, target, loss_fn)
        finally:
            self.trace, self.sends = {}, {}
