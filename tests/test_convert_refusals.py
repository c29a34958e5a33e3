"""Every refusal of fa_bench.convert leaves the caller's model exactly as it was: same classes, same
tensors (parameters and buffers, feedback included), same attributes."""
import pytest
import torch
from torch import nn

import fa_bench


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, 3))


def convnet():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 4))


def normed():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 8), nn.LayerNorm(8), nn.Linear(8, 3))


def state(model):
    """Everything convert could touch: each module's class and attributes, and every tensor by value."""
    modules = {name: (type(m), sorted(k for k in vars(m) if not k.startswith("_")), sorted(m._parameters),
                      sorted(m._buffers)) for name, m in model.named_modules()}
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    return modules, tensors, hasattr(model, "fa_report")


def assert_unchanged(before, model):
    modules, tensors, report = state(model)
    assert modules == before[0]
    assert tensors.keys() == before[1].keys()
    for k, v in tensors.items():
        assert torch.equal(v, before[1][k]), k
    assert report == before[2]


REFUSALS = {
    "nothing to convert": (lambda: nn.Sequential(nn.ReLU()), "fa", {}, "no nn.Linear or nn.Conv2d"),
    "ifa on a convnet": (convnet, "ifa", {}, "only to fully connected nets"),
    "dfa on a convnet without example_input": (convnet, "dfa", {}, "needs the input shape"),
    "node perturbation with other parameters": (normed, "node_perturbation", {}, "other parameters"),
    "unknown output layer": (mlp, "fa", {"output_layer": "9"}, "not a layer convert would convert"),
    "unknown rule option": (mlp, "fa", {"nope": 1}, "unknown option"),
    "dfa direct to an unknown layer": (mlp, "dfa", {"direct": [7]}, "no converted layer 7"),
    "dfa direct to the output layer": (mlp, "dfa", {"direct": [-1]}, "is the output layer"),
    "ifa whose output layer is not last": (mlp, "ifa", {"output_layer": "3"}, "must be the last converted layer"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_conversion_leaves_the_model_as_it_was(case):
    build, rule, options, message = REFUSALS[case]
    model = build()
    before = state(model)
    with pytest.raises((ValueError, TypeError), match=message):
        fa_bench.convert(model, rule, **options)
    assert_unchanged(before, model)


@pytest.mark.parametrize("case", ["dfa direct to an unknown layer", "ifa whose output layer is not last"])
def test_a_refused_reconversion_keeps_the_old_rule_and_its_feedback(case):
    _, rule, options, message = REFUSALS[case]
    model = fa_bench.convert(mlp(), "fa", seed=3)
    before = state(model)
    old_rule = fa_bench.rule_of(model)
    with pytest.raises(ValueError, match=message):
        fa_bench.convert(model, rule, **options)
    assert_unchanged(before, model)
    assert fa_bench.rule_of(model) is old_rule
    x = torch.randn(4, 12)
    model(x).sum().backward()  # still trains under fa
    assert model[1].weight.grad is not None


def test_the_refusals_are_real():
    """The cases above are convertible once the reason is removed (so each test checks its refusal)."""
    fa_bench.convert(convnet(), "dfa", example_input=torch.randn(2, 1, 8, 8))
    fa_bench.convert(mlp(), "dfa", direct=[0])
    fa_bench.convert(mlp(), "ifa")
    fa_bench.convert(nn.Sequential(nn.Linear(12, 3)), "node_perturbation")
