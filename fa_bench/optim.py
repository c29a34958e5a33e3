"""Optimizers by name."""
import torch


def _unwrapped(method):
    """torch.optim's own method without its torch._disable_dynamo wrapper (functools.wraps keeps it)."""
    return getattr(method, "__wrapped__", method)


class SGD(torch.optim.SGD):
    """torch.optim.SGD, stepped without torch.optim's per-call machinery where its plain loop applies.

    The arithmetic is torch's single-tensor SGD op for op (weight decay, momentum, dampening, Nesterov,
    maximize), so the numbers and the state_dict are bitwise torch.optim.SGD's (tests/test_optim.py
    checks trajectories and checkpoints against it). What is left out is the wrapper every torch.optim
    step runs: a profiler record and two torch._dynamo graph breaks per step (tens of µs: a few % of a
    small MLP's step) and, at the first step, the import of torch._dynamo (1-2 s in every process,
    so in every joblib worker of a sweep). Anything the plain loop does not cover (a closure, foreach
    or fused kernels, which torch picks by default for CUDA tensors, a tensor lr, a GradScaler's
    grad_scale, differentiable=True, step hooks) goes to torch's own step. Building it,
    checkpointing it and zeroing it likewise skip the torch._disable_dynamo wrappers, whose first call
    is that import: nothing here runs under torch.compile."""

    def add_param_group(self, param_group):
        return _unwrapped(torch.optim.Optimizer.add_param_group)(self, param_group)

    def state_dict(self):
        return _unwrapped(torch.optim.Optimizer.state_dict)(self)

    def load_state_dict(self, state_dict):
        return _unwrapped(torch.optim.Optimizer.load_state_dict)(self, state_dict)

    def zero_grad(self, set_to_none: bool = True):
        return _unwrapped(torch.optim.Optimizer.zero_grad)(self, set_to_none)

    def step(self, closure=None):
        if closure is not None or not self._plain_loop():
            return super().step(closure)
        with torch.no_grad():
            for group in self.param_groups:
                lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
                for p in group["params"]:
                    if p.grad is None:
                        continue
                    grad = p.grad if not group["maximize"] else -p.grad
                    if decay != 0:
                        grad = grad.add(p, alpha=decay)
                    if momentum != 0:
                        state = self.state[p]
                        buf = state.get("momentum_buffer")
                        if buf is None:
                            buf = state["momentum_buffer"] = grad.detach().clone()
                        else:
                            buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
                        grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                    p.add_(grad, alpha=-lr)
        return None

    step.hooked = True  # Optimizer.__init__ wraps a step without this mark in its profiler record

    def _plain_loop(self) -> bool:
        # read every step (hooks, lr or devices may change), so a few lookups per group, not per parameter
        if self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks or \
                getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            return False
        for group in self.param_groups:
            if group["foreach"] or group["fused"] or group["differentiable"] or isinstance(group["lr"], torch.Tensor):
                return False
            params = group["params"]
            if params and group["foreach"] is None and params[0].device.type != "cpu":
                return False  # torch defaults to foreach kernels off the CPU: its own step then
        return True


OPTIMIZERS = {"sgd": SGD, "adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def build_optimizer(model, name="sgd", lr=0.01, **kwargs):
    """Every parameter, learned feedback (``matched``) included, so B gets W's step under any optimizer."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; valid optimizers: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name](model.parameters(), lr=lr, **kwargs)
