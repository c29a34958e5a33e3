"""Optimizers. Learned feedback (``matched``) gets its own parameter group so its decay can differ."""
import torch

OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def build_optimizer(model, name="sgd", lr=0.01, weight_decay=0.0, feedback_decay=None, **kwargs):
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(sorted(OPTIMIZERS))}")
    forward, feedback = [], []
    for pname, p in model.named_parameters():
        (feedback if pname.endswith("feedback_weight") else forward).append(p)
    groups = [{"params": forward}]
    if feedback:
        groups.append({"params": feedback,
                       "weight_decay": weight_decay if feedback_decay is None else feedback_decay})
    return OPTIMIZERS[name](groups, lr=lr, weight_decay=weight_decay, **kwargs)
