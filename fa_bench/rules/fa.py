"""Feedback alignment (Lillicrap et al. 2016): a fixed random B in place of W in the backward pass."""
from typing import ClassVar

from fa_bench.rules.base import Rule, register


@register
class FA(Rule):
    """δ_{l-1} = (B_l δ_l) ∘ f'(a_{l-1}); B_l fixed, drawn once from ``init`` and ``scale``."""

    name = "fa"
    options: ClassVar[dict] = {"init": "kaiming_uniform", "scale": None}
