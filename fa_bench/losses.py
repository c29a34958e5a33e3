"""Per-example losses. Rules that learn from a scalar per example (node perturbation) need the vector."""
import torch
import torch.nn.functional as F


def _as_targets(out, target):
    # classification targets arrive as class indices; squared-error losses want one-hot rows
    if target.dtype in (torch.int64, torch.int32) and out.dim() == 2 and target.dim() == 1:
        return F.one_hot(target, out.shape[1]).to(out.dtype)
    return target


def sse(out, target):
    """½‖y − t‖² per example: the gradient at the output is e = y − t (Lillicrap's update rules)."""
    return 0.5 * (out - _as_targets(out, target)).pow(2).flatten(1).sum(1)


def mse(out, target):
    return (out - _as_targets(out, target)).pow(2).flatten(1).mean(1)


def cross_entropy(out, target):
    return F.cross_entropy(out, target, reduction="none")


def bce(out, target):
    """Binary cross-entropy on logistic outputs (Nøkland 2016); ``out`` are the logits."""
    t = _as_targets(out, target)
    return F.binary_cross_entropy_with_logits(out, t, reduction="none").flatten(1).sum(1)


LOSSES = {"sse": sse, "mse": mse, "cross_entropy": cross_entropy, "bce": bce}


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
