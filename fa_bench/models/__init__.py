"""Model registry. Adding a model: a function here (or in a module imported below) under @register,
plus conf/model/<name>.yaml whose keys are its arguments."""
from fa_bench.models import convnets, lansdell, lansdell_cnn, mlp, moskovitz  # noqa: F401  (register)
from fa_bench.models.registry import (  # noqa: F401
    ACTIVATIONS,
    MODELS,
    WEIGHT_INITS,
    activation,
    build_model,
    check_bias_init,
    check_bias_value,
    check_init,
    init_weights,
    register,
)
