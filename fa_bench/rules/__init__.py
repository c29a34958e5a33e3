"""Learning rules. Adding one: a module here that subclasses Rule under @register, plus conf/rule/<name>.yaml.

Every module of this package is imported below, so a new rule module registers itself with no other
edit; the registry (RULES) then drives convert(), config validation, the tests and the benchmark.
"""
import importlib
import pkgutil

from fa_bench.rules.base import FEEDBACK_INITS, RULES, Rule, draw_feedback, get_rule, register, set_feedback

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

__all__ = ["FEEDBACK_INITS", "RULES", "Rule", "draw_feedback", "get_rule", "register", "set_feedback"]
