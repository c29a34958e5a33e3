"""Independent random streams from one run seed.

Every consumer (the teacher and data, the model's weights, the feedback, the batch order, the global
stream used by dropout) draws from its own generator, derived from (seed, purpose). Without this,
two generators seeded with the same integer produce the same numbers: a teacher T and initial
weights W0 drawn from one seed would be copies of each other up to scale.
"""
import zlib

import torch


def derive_seed(seed: int, purpose: str) -> int:
    return (int(seed) * 1_000_003 + zlib.crc32(purpose.encode())) % (2**63 - 1)


def generator(seed: int, purpose: str) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, purpose))


class DeviceStreams:
    """One generator per device for a purpose, so per-step draws happen where the tensors live
    (no host-to-device copy, no sync) and still follow the run seed."""

    def __init__(self, seed: int, purpose: str):
        self.seed = derive_seed(seed, purpose)
        self.by_device: dict[str, torch.Generator] = {}
        self._as_given: dict = {}  # the same generators under the device as callers pass it (no parsing per draw)

    def __call__(self, device) -> torch.Generator:
        g = self._as_given.get(device)
        if g is None:
            key = str(torch.device(device))
            if key not in self.by_device:
                self.by_device[key] = torch.Generator(device=device).manual_seed(self.seed)
            g = self._as_given[device] = self.by_device[key]
        return g

    def get_state(self) -> dict:
        return {key: g.get_state() for key, g in self.by_device.items()}

    def set_state(self, state: dict):
        """Back to ``state``; a stream first used after it was taken is forgotten (it restarts from
        the seed next time), so a look-ahead such as the probe leaves no trace, and a stream the state
        has but this process has not used yet (a run resumed from a checkpoint) is created with it."""
        self._as_given.clear()
        for key in list(self.by_device):
            if key not in state:
                del self.by_device[key]
        for key, value in state.items():
            self(key).set_state(value)


def global_rng_state():
    """Snapshot the global CPU (and, once initialised, CUDA) random state; returns a restore function."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None

    def restore():
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    return restore


def global_rng_states() -> dict:
    """The global CPU (and, once initialised, CUDA) random states, for a checkpoint."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_global_rng_states(states: dict):
    torch.set_rng_state(states["cpu"])
    if states.get("cuda") is not None:
        torch.cuda.set_rng_state_all(states["cuda"])
