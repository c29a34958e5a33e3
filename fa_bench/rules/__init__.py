"""Learning rules. Adding one: a module here that subclasses Rule under @register, plus conf/rule/<name>.yaml.

The registry (RULES) drives convert(), config validation, the tests and the benchmark, so a new rule
is picked up everywhere once its module is imported below.
"""
from fa_bench.rules import (  # noqa: F401  (register)
    bp,
    dfa,
    fa,
    ifa,
    matched,
    node_perturbation,
    shallow,
    sign_concordant,
)
from fa_bench.rules.base import FEEDBACK_INITS, RULES, Rule, draw_feedback, get_rule, register, set_feedback

__all__ = ["FEEDBACK_INITS", "RULES", "Rule", "draw_feedback", "get_rule", "register", "set_feedback"]
