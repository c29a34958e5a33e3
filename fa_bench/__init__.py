"""fa_bench: learning without weight transport, on any PyTorch model."""
from fa_bench.convert import convert, converted_layers, rule_of
from fa_bench.rules import RULES, get_rule

__version__ = "0.1.0"
__all__ = ["RULES", "__version__", "convert", "converted_layers", "get_rule", "rule_of"]
