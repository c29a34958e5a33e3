"""The graph-free chain pass (fa_bench.chain) is autograd's pass, bit for bit, for every registered rule.

Two copies of one converted chain take the same steps, one by the chain pass and one by autograd (the
rule's ``chain_backward`` set False); every .grad and, after several optimizer steps, every parameter and
buffer must be equal, not close: the chain pass makes the same calls with the same kernels.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fa_bench.chain import ChainPass, chain_plan
from fa_bench.convert import convert, rule_of
from fa_bench.layers import LayerBackward
from fa_bench.losses import LOSSES, loss_and_mean_grad, sse
from fa_bench.rules import RULES
from fa_bench.stacking import seed_axis_loss, stack_models

OPTIONS = {"node_perturbation": {"sigma": 0.1}}


def chain_net(seed=0, bias=True):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 7, bias=bias), nn.Tanh(), nn.Linear(7, 6, bias=bias), nn.ReLU(),
                         nn.Linear(6, 5, bias=bias), nn.Sigmoid(), nn.Linear(5, 4, bias=bias), nn.Identity())


def converted(rule, seed=0, **kw):
    model, reference = (convert(chain_net(seed, **kw), rule, example_input=torch.zeros(2, 3, 4), seed=seed,
                                **OPTIONS.get(rule, {})) for _ in range(2))
    rule_of(reference).chain_backward = False  # the same model and rule; only this one is told to use autograd
    return model, reference


def takes_chain(rule):
    model, _ = converted(rule)
    return ChainPass.of(model, rule_of(model)) is not None


CHAIN_RULES = [r for r in sorted(RULES) if takes_chain(r)]


def test_the_rules_that_take_the_chain_pass_are_those_with_the_layers_own_forward():
    # a rule with a forward of its own (noise in the forward pass, traced directions) stays on autograd
    assert set(RULES) - set(CHAIN_RULES) == {"node_perturbation", "np_feedback", "sg", "ifa"}
    assert {"bp", "fa", "dfa", "shallow", "matched", "usf", "brsf", "frsf", "dense_fa", "bp_noise"} <= set(CHAIN_RULES)


def steps(model, x, targets, loss_fn, lr=0.1):
    rule = rule_of(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    grads = []
    for t in targets:
        opt.zero_grad(set_to_none=True)
        per_example, out = rule.compute_gradients(model, x, t, loss_fn)
        grads.append({n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()})
        opt.step()
    return per_example, out, grads


def assert_identical(model, reference, x, targets, loss_fn):
    a = steps(model, x, targets, loss_fn)
    b = steps(reference, x, targets, loss_fn)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    for step, (ga, gb) in enumerate(zip(a[2], b[2])):
        assert ga.keys() == gb.keys()
        for name in ga:
            if gb[name] is None:
                assert ga[name] is None, (step, name)
            else:
                assert ga[name] is not None and torch.equal(ga[name], gb[name]), (step, name)
    state_a, state_b = model.state_dict(), reference.state_dict()
    for name in state_b:
        assert torch.equal(state_a[name], state_b[name]), name


@pytest.mark.parametrize("rule", CHAIN_RULES)
@pytest.mark.parametrize("loss", ["sse", "cross_entropy", "bce"])
def test_chain_pass_equals_autograd(rule, loss):
    model, reference = converted(rule)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 3, 4, generator=g)
    loss_fn = LOSSES[loss]  # bce: a loss fa_bench.losses does not write out, so autograd on the loss alone
    if loss == "cross_entropy":
        targets = [torch.randint(0, 4, (8,), generator=g) for _ in range(4)]
    else:
        targets = [torch.rand(8, 4, generator=g) for _ in range(4)]
    assert ChainPass.of(model, rule_of(model)) is not None and ChainPass.of(reference, rule_of(reference)) is None
    assert_identical(model, reference, x, targets, loss_fn)
    # the pass really trained: the first layer moved (but under shallow, which leaves hidden layers alone)
    moved = not torch.equal(model[1].weight, chain_net(0)[1].weight)
    assert moved == (rule != "shallow")


@pytest.mark.parametrize("rule", CHAIN_RULES)
def test_seed_stacked_chain_pass_equals_autograd(rule):
    stacked, reference = (stack_models([converted(rule, seed=s)[0] for s in (0, 1)], [0, 1]) for _ in range(2))
    rule_of(reference).chain_backward = False
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 3, 4, generator=g)
    targets = [torch.randn(2, 8, 4, generator=g) for _ in range(3)]
    assert ChainPass.of(stacked, rule_of(stacked)) is not None
    assert_identical(stacked, reference, x, targets, seed_axis_loss(sse))


def test_hand_computed_fa_update_on_a_chain():
    """FA's pass by hand: e = y − t goes down through B, not W, then through tanh's derivative."""
    model, _ = converted("fa", bias=False)
    x, t = torch.randn(3, 12), torch.randn(3, 4)
    rule_of(model).compute_gradients(model, x, t, sse)
    W = [m.weight.detach() for m in model if isinstance(m, nn.Linear)]
    B = [m.feedback_weight for m in model if isinstance(m, nn.Linear)]
    h1 = torch.tanh(x @ W[0].T)
    h2 = torch.relu(h1 @ W[1].T)
    h3 = torch.sigmoid(h2 @ W[2].T)
    e = (h3 @ W[3].T - t) / 3  # the batch mean
    d3 = (e @ B[3]) * h3 * (1 - h3)
    d2 = (d3 @ B[2]) * (h2 > 0)
    d1 = (d2 @ B[1]) * (1 - h1 ** 2)
    for layer, (d, h) in zip([m for m in model if isinstance(m, nn.Linear)], [(d1, x), (d2, h1), (d3, h2), (e, h3)]):
        torch.testing.assert_close(layer.weight.grad, d.T @ h, rtol=1e-5, atol=1e-6)
    # and it is not backprop's: W in place of B gives another first-layer gradient
    bp_d1 = ((((e @ W[3]) * h3 * (1 - h3)) @ W[2]) * (h2 > 0)) @ W[1] * (1 - h1 ** 2)
    assert not torch.allclose(model[1].weight.grad, bp_d1.T @ x, atol=1e-4)


def test_a_frozen_layer_gets_no_gradient_and_the_layers_below_still_learn():
    model, reference = converted("fa")
    for m in (model, reference):
        m[3].weight.requires_grad_(False)
    g = torch.Generator().manual_seed(3)
    x, targets = torch.randn(5, 12, generator=g), [torch.randn(5, 4, generator=g) for _ in range(2)]
    assert_identical(model, reference, x, targets, sse)
    assert model[3].weight.grad is None and model[1].weight.grad is not None


@pytest.mark.parametrize("why", ["hook", "dropout", "exact_bp", "autocast"])
def test_what_the_chain_pass_leaves_to_autograd(why):
    model, _ = converted("fa")
    rule = rule_of(model)
    if why == "hook":
        handle = model[3].register_forward_pre_hook(lambda m, a: None)
        assert ChainPass.of(model, rule) is None
        handle.remove()
        assert ChainPass.of(model, rule) is not None
    elif why == "dropout":
        net = convert(nn.Sequential(nn.Linear(4, 3), nn.Dropout(0.5), nn.Linear(3, 2)), "fa")
        assert chain_plan(net) is None and ChainPass.of(net, rule_of(net)) is None
    elif why == "exact_bp":
        model[3].exact_bp = True
        assert ChainPass.of(model, rule) is None
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert ChainPass.of(model, rule) is None


def test_a_flatten_after_the_first_layer_is_not_a_chain():
    net = convert(nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (2, 3)), nn.Flatten(), nn.Linear(6, 2)), "fa")
    assert chain_plan(net) is None
    x, t = torch.randn(3, 4), torch.randn(3, 2)
    per_example, out = rule_of(net).compute_gradients(net, x, t, sse)  # autograd still trains it
    assert net[0].weight.grad is not None
    assert torch.equal(out, net(x).detach()) and torch.equal(per_example, sse(out, t))


@pytest.mark.parametrize("loss", ["sse", "mse", "cross_entropy"])
@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("batch", [1, 3, 7])
def test_written_out_loss_gradients_are_autograds_bit_for_bit(loss, stacked, batch):
    g = torch.Generator().manual_seed(batch)
    out = torch.randn(*((2,) if stacked else ()), batch, 5, generator=g, dtype=torch.float32)
    target = (torch.randint(0, 5, out.shape[:-1], generator=g) if loss == "cross_entropy"
              else torch.randn(out.shape, generator=g))
    loss_fn = seed_axis_loss(LOSSES[loss]) if stacked else LOSSES[loss]
    leaf = out.clone().requires_grad_()
    per_example = loss_fn(leaf, target)
    mean = per_example.mean(-1)
    (mean.sum() if mean.dim() else mean).backward()
    got_loss, got_grad = loss_and_mean_grad(loss_fn, out, target)
    assert torch.equal(got_loss, per_example.detach()) and torch.equal(got_grad, leaf.grad)
    # and the hand formula: sse's is (y − t) / batch
    if loss == "sse":
        torch.testing.assert_close(got_grad, (out - target) / batch)


def test_a_loss_not_written_out_and_soft_targets_go_to_autograd():
    out = torch.randn(4, 3)
    assert loss_and_mean_grad(LOSSES["bce"], out, torch.rand(4, 3)) is None
    assert loss_and_mean_grad(LOSSES["cross_entropy"], out, torch.softmax(torch.randn(4, 3), 1)) is None


def test_relu_derivative_kernel_is_autograds():
    a, g = torch.randn(6, requires_grad=True), torch.randn(6)
    out = F.relu(a)
    (ga,) = torch.autograd.grad(out, a, g)
    assert torch.equal(torch.ops.aten.threshold_backward(g, out.detach(), 0), ga)


@pytest.mark.parametrize("stacked", [False, True])
def test_node_perturbation_through_the_chain_forward_is_its_step_through_the_model(stacked):
    """Node perturbation's two passes use ChainPass.forward on a chain (no module calls, no global-stream
    snapshot: a chain draws nothing from it): the same noise, losses and .grad as through model(x)."""
    if stacked:
        model, reference = (stack_models([converted("node_perturbation", seed=s)[0] for s in (0, 1)], [0, 1])
                            for _ in range(2))
        x, loss_fn = torch.randn(2, 6, 3, 4), seed_axis_loss(sse)
        targets = [torch.randn(2, 6, 4) for _ in range(3)]
    else:
        model, reference = converted("node_perturbation")
        x, loss_fn, targets = torch.randn(6, 3, 4), sse, [torch.randn(6, 4) for _ in range(3)]
    rule_of(reference).chain_backward = False
    assert ChainPass.of(model, rule_of(model), own_forward=True) is not None
    assert ChainPass.of(reference, rule_of(reference), own_forward=True) is None
    before = model[1].weight.detach().clone()
    assert_identical(model, reference, x, targets, loss_fn)
    assert not torch.equal(model[1].weight, before)  # it learned


# --- the alignment probe's passes on a chain (fa_bench.probe uses ChainPass.teaching_signals) ---

def probe_net(rule, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(30, 40), nn.Tanh(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 5))
    return convert(net, rule, seed=seed, **OPTIONS.get(rule, {}))


PROBED_RULES = [r for r in CHAIN_RULES if RULES[r].uses_backward]


@pytest.mark.parametrize("stacked", [False, True], ids=["one_seed", "stacked"])
@pytest.mark.parametrize("rule", PROBED_RULES)
def test_the_probe_measures_the_same_on_the_chain_as_through_autograd(rule, stacked, monkeypatch):
    """Every metric the probe logs from the chain's passes is the one its autograd passes give: the same
    δ, bit for bit, and the same update angle, which on the wide layers comes from Gram matrices instead
    of the two gradients (float64 there, so it differs from the float32 gradients' angle by their rounding)."""
    from fa_bench import metrics as M
    from fa_bench.probe import AlignmentProbe

    def models():
        if not stacked:
            return probe_net(rule)
        return stack_models([probe_net(rule, s) for s in (0, 1)], [0, 1])
    model, reference = models(), models()
    rule_of(reference).chain_backward = False
    g = torch.Generator().manual_seed(4)
    lead = (2,) if stacked else ()
    x, t = torch.randn(*lead, 4, 30, generator=g), torch.randint(0, 5, (*lead, 4), generator=g)
    loss = seed_axis_loss(LOSSES["cross_entropy"]) if stacked else LOSSES["cross_entropy"]
    gram_calls = []
    real = M.seed_outer_product_angles
    monkeypatch.setattr(M, "seed_outer_product_angles", lambda *a: gram_calls.append(1) or real(*a))
    chain_rows = AlignmentProbe(model, loss).measure_seeds(x, t)
    assert ChainPass.of(model, rule_of(model), x) is not None  # the probe left it usable
    by_gram = len(gram_calls)
    reference_rows = AlignmentProbe(reference, loss).measure_seeds(x, t)
    assert len(gram_calls) == by_gram  # autograd's passes form the gradients
    # 4 examples against 30x40 and 40x40 layers: Gram matrices; against the 40x5 output layer: gradients
    outer = type(rule_of(model)).weight_grads is LayerBackward.weight_grads  # the rule reports δᵀx for W
    for seed_rows, seed_reference in zip(chain_rows, reference_rows):
        assert [(m, n) for m, n, _ in seed_rows] == [(m, n) for m, n, _ in seed_reference]
        for (metric, name, value), (_, _, expected) in zip(seed_rows, seed_reference):
            if metric == "update_angle" and name in ("0", "2") and by_gram:
                assert value == pytest.approx(expected, abs=1e-4), (metric, name)
            else:
                assert value == expected or (value != value and expected != expected), (metric, name)
        assert any(m == "update_angle" for m, _, _ in seed_rows)
    # shallow's hidden layers get no δ: nothing to measure there
    assert by_gram == (2 if outer and rule != "shallow" else 0)


@pytest.mark.parametrize("rule", PROBED_RULES)
def test_the_probe_on_a_chain_leaves_training_as_it_was(rule):
    """A step after a probe is the step without one, bit for bit (the probe's neutrality, chain passes)."""
    from fa_bench.probe import AlignmentProbe
    probed, plain = probe_net(rule), probe_net(rule)
    g = torch.Generator().manual_seed(5)
    x, t = torch.randn(6, 30, generator=g), torch.randint(0, 5, (6,), generator=g)
    loss = LOSSES["cross_entropy"]
    AlignmentProbe(probed, loss).measure(x, t)
    for model in (probed, plain):
        rule_of(model).compute_gradients(model, x, t, loss)
    for (name, a), b in zip(probed.named_parameters(), plain.parameters()):
        assert (a.grad is None) == (b.grad is None) and (a.grad is None or torch.equal(a.grad, b.grad)), name
