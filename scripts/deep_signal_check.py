"""Why BP and FA cannot train Nøkland's 100x240 tanh net and DFA can (Table 1's empty fields).

Builds the net exactly as a Table 1 run does (experiment=nokland_table1 cell=nokland_100x240_tanh
rule=R: the same config resolution, init and conversion), sends one batch of 64 MNIST training
images through it, and prints, per rule:
  - the output's dependence on the input: the std of the logits across the batch over their mean
    magnitude (0 means every image gets the same output);
  - the largest |entry| of the weight gradient of hidden layers 1, 10, 50, 90 and 100 and of the
    output layer (loss bce, the table's), read in float64: a norm taken in float32 squares entries
    below ~1e-19 to zero and would report a tiny gradient as none.
BP starts from U(±1/√fan_in) weights and biases; FA and DFA from zero (the paper's inits, per_rule in
the experiment). Read-only: no training, nothing written.

    FA_DATA=../shared/data python scripts/deep_signal_check.py [--rules bp,fa,dfa] [--seed 0]
"""
import argparse

import torch

from fa_bench.config import compose_config
from fa_bench.convert import converted_layers
from fa_bench.losses import get_loss
from fa_bench.run import build_data, build_model_on, resolve_config


def signal(rule: str, seed: int = 0, batch: int = 64) -> dict:
    """One batch through the net as a Table 1 run of ``rule`` builds it: the logits' relative spread
    across the batch, and each picked layer's largest weight-gradient entry (|g|, float64)."""
    overrides = ["experiment=nokland_table1", "cell=nokland_100x240_tanh", f"rule={rule}", f"seed={seed}",
                 "hydra.mode=RUN"]
    cfg = resolve_config(compose_config(overrides), overrides)
    data = build_data(cfg, torch.device("cpu"))
    model = build_model_on(cfg, data, torch.device("cpu"))
    out = model(data.x_train[:batch])
    get_loss(cfg.loss)(out, data.y_train[:batch]).mean().backward()
    linears = [layer for _, layer in converted_layers(model)]  # every rule here converts all 101 Linears
    picks = {"h1": 0, "h10": 9, "h50": 49, "h90": 89, "h100": 99, "out": len(linears) - 1}
    return {"init": cfg.model.init,
            "spread": (out.std(0).mean() / out.abs().mean().clamp_min(1e-30)).item(),
            "grad": {k: linears[i].weight.grad.double().abs().max().item() for k, i in picks.items()}}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rules", default="bp,fa,dfa")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    for rule in args.rules.split(","):
        s = signal(rule, args.seed)
        grads = "  ".join(f"{k} {v:.2e}" for k, v in s["grad"].items())
        print(f"{rule:4s} init={s['init']:15s} logit spread across the batch {s['spread']:.2e}   max |grad W|: {grads}")


if __name__ == "__main__":
    main()
