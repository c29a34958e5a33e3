"""Data sets as tensors on the training device (DataBundle), or streamed from disk in batches
(StreamingData: image trees too large for memory). Adding one: a loader under @register here (or in a
module imported below), plus conf/dataset/<name>.yaml whose keys are its arguments."""
from fa_bench.data import imagefolder, synthetic, vision  # noqa: F401  (register)
from fa_bench.data.registry import (  # noqa: F401
    DATASETS,
    DataBundle,
    StreamingData,
    batches,
    default_root,
    load_dataset,
    register,
)
