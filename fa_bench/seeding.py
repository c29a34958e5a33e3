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
