"""FGSM adversarial training (Goodfellow 2015; Nøkland's "+ ADV"), checked against hand computations.

x_adv = x + ε·sign(∇_x J) with ∇_x J from exact backprop (default) or from the rule's own input signal,
and one step on α·J(x) + (1 − α)·J(x_adv). Off (the default) the trainer is bit-identical to a plain
loop of rule steps.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fa_bench
from fa_bench.adversarial import FGSM, input_gradient
from fa_bench.data import DataBundle, batches
from fa_bench.engines.autograd import train
from fa_bench.records import MetricsWriter
from fa_bench.trainer import TrainConfig


def ce(out, target):
    return F.cross_entropy(out, target, reduction="none")


def data(n=6, n_in=5, n_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, n_in, generator=g, dtype=torch.float64),
            torch.randint(0, n_classes, (n,), generator=g))


def tanh_net(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 7), nn.Tanh()] + ([nn.Dropout(dropout)] if dropout else []) + [nn.Linear(7, 3)]
    return nn.Sequential(*layers).double()


def onehot(t, k=3):
    return F.one_hot(t, k).double()


# ------------------------------------------------------------------------------------------------
# the perturbation, by hand
# ------------------------------------------------------------------------------------------------
def test_perturbation_is_epsilon_sign_of_the_hand_input_gradient_softmax_regression():
    torch.manual_seed(0)
    model = fa_bench.convert(nn.Linear(5, 3).double(), "bp")
    x, t = data()
    W, b = model.weight.detach(), model.bias.detach()
    p = torch.softmax(x @ W.t() + b, dim=1)
    g = (p - onehot(t)) @ W / len(x)  # ∂(mean CE)/∂x
    x_adv = FGSM(epsilon=0.1).perturb(model, x, t, ce)
    torch.testing.assert_close(x_adv - x, 0.1 * torch.sign(g), rtol=0, atol=1e-15)
    assert (x_adv != x).all()  # every coordinate moved: the test could see a wrong sign


@pytest.mark.parametrize("source", ["backprop", "rule"])
def test_input_gradient_of_an_fa_net_by_hand(source):
    model = fa_bench.convert(tanh_net(seed=1), "fa", init="uniform", scale=0.5, seed=3)
    x, t = data()
    l0, l1 = model[0], model[2]
    h = torch.tanh(x @ l0.weight.detach().t() + l0.bias.detach())
    p = torch.softmax(h @ l1.weight.detach().t() + l1.bias.detach(), dim=1)
    e = (p - onehot(t)) / len(x)
    if source == "backprop":  # the true gradient goes back through W
        want = ((e @ l1.weight.detach()) * (1 - h ** 2)) @ l0.weight.detach()
    else:  # FA's own input signal goes back through B
        want = ((e @ l1.feedback_weight) * (1 - h ** 2)) @ l0.feedback_weight
    got = input_gradient(model, x, t, ce, source)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)
    eps = 0.05
    x_adv = FGSM(epsilon=eps, input_grad=source).perturb(model, x, t, ce)
    torch.testing.assert_close(x_adv, x + eps * torch.sign(want), rtol=0, atol=1e-15)


def test_backprop_and_rule_attacks_differ_under_fa():
    model = fa_bench.convert(tanh_net(seed=1), "fa", init="uniform", scale=0.5, seed=3)
    x, t = data()
    assert not torch.allclose(input_gradient(model, x, t, ce, "backprop"), input_gradient(model, x, t, ce, "rule"))


def test_shallow_rule_attack_does_not_move_the_input():
    model = fa_bench.convert(tanh_net(), "shallow")
    x, t = data()
    assert torch.equal(FGSM(epsilon=0.3, input_grad="rule").perturb(model, x, t, ce), x)


def test_the_attack_leaves_no_trace():
    # no .grad, requires_grad, exact_bp flags and training mode as they were, no random draw (eval mode)
    model = fa_bench.convert(tanh_net(dropout=0.5), "dfa", seed=1).train()
    x, t = data()
    rng = torch.get_rng_state()
    first = FGSM(epsilon=0.1).perturb(model, x, t, ce)
    second = FGSM(epsilon=0.1).perturb(model, x, t, ce)
    assert torch.equal(first, second)  # no dropout mask: the same attack twice
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training
    for name, p in model.named_parameters():
        assert p.grad is None and p.requires_grad, name
    assert all(not layer.exact_bp for _, layer in fa_bench.converted_layers(model))


# ------------------------------------------------------------------------------------------------
# the training step
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.3, 0.0])
def test_step_gradient_is_goodfellows_mixed_objective(alpha):
    plain = tanh_net(seed=2)
    model = fa_bench.convert(copy.deepcopy(plain), "bp")
    x, t = data()
    attack = FGSM(epsilon=0.2, alpha=alpha)
    x_adv = attack.perturb(model, x, t, ce)
    per_example, out = attack.step(fa_bench.rule_of(model), model, x, t, ce)
    ref = copy.deepcopy(plain)
    (alpha * ce(ref(x), t).mean() + (1 - alpha) * ce(ref(x_adv), t).mean()).backward()
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-13, msg=name)
    # the window sees the clean examples, unweighted
    torch.testing.assert_close(out, plain(x), rtol=1e-12, atol=1e-15)  # batched with x_adv: rounding only
    torch.testing.assert_close(per_example, ce(plain(x), t), rtol=1e-12, atol=1e-15)


def test_epsilon_zero_is_the_clean_step():
    plain = tanh_net(seed=4)
    x, t = data()
    adv = fa_bench.convert(copy.deepcopy(plain), "fa", seed=1)
    clean = fa_bench.convert(copy.deepcopy(plain), "fa", seed=1)
    FGSM(epsilon=0.0, alpha=0.5).step(fa_bench.rule_of(adv), adv, x, t, ce)
    fa_bench.rule_of(clean).compute_gradients(clean, x, t, ce)
    for (name, p), q in zip(adv.named_parameters(), clean.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-15, msg=name)


def _bundle(n=40):
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return DataBundle(x, y, x[:10], y[:10], "classification", 3)


def _trainer_run(model, **cfg):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tc = TrainConfig(epochs=2, batch_size=8, eval_every=3, eval_batch_size=40, metrics_every=0, progress=False,
                     **cfg)
    return train(model, fa_bench.rule_of(model), _bundle(), ce, opt, tc, MetricsWriter(None),
                 torch.Generator().manual_seed(0))


def test_off_by_default_is_bit_identical_to_plain_rule_steps():
    plain = tanh_net(seed=3, dropout=0.3).float()
    trained = fa_bench.convert(copy.deepcopy(plain), "dfa", seed=2)
    torch.manual_seed(7)
    assert TrainConfig().adversarial is None
    _trainer_run(trained)
    # the same steps by hand: same batches, same dropout stream, nothing else drawn or run
    ref = fa_bench.convert(copy.deepcopy(plain), "dfa", seed=2)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    data_ = _bundle()
    torch.manual_seed(7)
    order = torch.Generator().manual_seed(0)
    ref.train()
    for _ in range(2):
        for idx in batches(40, 8, order, "cpu"):
            opt.zero_grad(set_to_none=True)
            fa_bench.rule_of(ref).compute_gradients(ref, data_.x_train[idx], data_.y_train[idx], ce)
            opt.step()
    for (name, p), q in zip(trained.named_parameters(), ref.parameters()):
        assert torch.equal(p, q), name


def test_adversarial_training_changes_the_run():
    plain = tanh_net(seed=3).float()
    a = fa_bench.convert(copy.deepcopy(plain), "fa", seed=2)
    b = fa_bench.convert(copy.deepcopy(plain), "fa", seed=2)
    _trainer_run(a)
    _trainer_run(b, adversarial={"epsilon": 0.25})
    assert not torch.equal(a[0].weight, b[0].weight)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="unknown key.*eps"):
        TrainConfig(adversarial={"eps": 0.1})
    with pytest.raises(ValueError, match="input_grad"):
        TrainConfig(adversarial={"input_grad": "guess"})
    with pytest.raises(ValueError, match="alpha"):
        TrainConfig(adversarial={"alpha": 1.5})
    model = fa_bench.convert(tanh_net().float(), "node_perturbation")
    with pytest.raises(ValueError, match="backward pass"):
        _trainer_run(model, adversarial={"input_grad": "rule"})
