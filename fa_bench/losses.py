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


# Each loss here with its gradient written out, for fa_bench.chain, whose pass has no graph to call
# backward on (autograd's fixed cost per backward call is most of a batch-1 step): (per-example loss,
# ∂(batch mean of it)/∂out), with ``n`` the batch the mean is over. The loss is the function's own
# arithmetic, and the gradient repeats the kernels and the order of rounding of autograd's backward of
# it, so both are autograd's bit for bit (tests/test_chain.py).
def _inverse(out, n):
    return torch.ones((), dtype=out.dtype, device=out.device).div_(n)  # mean's backward: 1 / n in out's dtype


def _sse_and_grad(out, target, n):
    d = out - _as_targets(out, target)
    return 0.5 * d.pow(2).flatten(1).sum(1), d * _inverse(out, n)  # autograd's ½ and 2 are exact


def _mse_and_grad(out, target, n):
    d = out - _as_targets(out, target)
    return d.pow(2).flatten(1).mean(1), d.mul(2.0) * _inverse(out, n).div_(out[0].numel())


def _cross_entropy_and_grad(out, target, n):
    if out.dim() != 2 or target.dtype != torch.int64:
        return None  # soft targets, or positions: autograd
    lsm = torch.log_softmax(out, 1)
    per_example = F.nll_loss(lsm, target, reduction="none")
    grad = torch.ops.aten.nll_loss_backward(_inverse(out, n).expand(out.shape[0]), lsm, target, None, 0, -100,
                                            torch.ones((), dtype=out.dtype, device=out.device))
    return per_example, torch.ops.aten._log_softmax_backward_data(grad, lsm, 1, out.dtype)


_WITH_GRAD = {sse: _sse_and_grad, mse: _mse_and_grad, cross_entropy: _cross_entropy_and_grad}


def loss_and_mean_grad(loss_fn, out, target, n=None):
    """(per-example loss, its batch-mean gradient at ``out``) for a loss of this module, or None (a loss
    it does not write out, or a target form it does not cover: use autograd). A seed-axis loss
    (fa_bench.stacking) names its base loss, and its mean is per seed."""
    base = getattr(loss_fn, "base_loss", None)
    if base is not None:
        S, N = out.shape[:2]
        flat = loss_and_mean_grad(base, out.reshape(S * N, *out.shape[2:]),
                                  target.reshape(S * N, *target.shape[2:]), N)
        return None if flat is None else (flat[0].view(S, N), flat[1].view(out.shape))
    with_grad = _WITH_GRAD.get(loss_fn)
    return None if with_grad is None else with_grad(out, target, out.shape[0] if n is None else n)


def get_loss(name: str):
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(sorted(LOSSES))}")
    return LOSSES[name]
