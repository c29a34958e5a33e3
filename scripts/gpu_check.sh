#!/usr/bin/env bash
# The GPU check of issue 13, in one call (`make gpu-check`): on a CUDA machine, the CUDA-marked tests, then
# scripts/bench.py on CUDA in fp32, in bf16 autocast, with channels_last on the convnet and with
# torch.compile, each writing its rows under results/bench/cuda/<variant>/. Every step has its own time
# limit so the whole check stays under 8 minutes (the device tool lends ~15 minutes, start-up included);
# a step that fails or runs out is reported and the next one still runs.
#
#   scripts/gpu_check.sh             # on a CUDA machine (refuses, exit 2, without one)
#   scripts/gpu_check.sh --dry-run   # list what it would run, anywhere
set -u
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=${OUT:-results/bench/cuda}
BENCH="$PYTHON scripts/bench.py --device cuda --repeats 7"

# name | seconds allowed | command (fig2 is batch-1 CPU work by design, and the probe's cadence is the CPU's: not here)
STEPS=(
  "tests|60|$PYTHON -m pytest -q -k cuda tests/test_gpu_check.py"
  "fp32|100|$BENCH --sections step small --out $OUT/fp32"
  "bf16|100|$BENCH --sections step small --set trainer.precision=bf16 --out $OUT/bf16"
  "channels_last|60|$BENCH --sections step --models moskovitz_mnist --set trainer.channels_last=true trainer.precision=bf16 --out $OUT/channels_last_bf16"
  "compile|120|$BENCH --sections step --models mlp_784_1000_10 --rules bp fa --no-biotorch --set trainer.compile=true --out $OUT/compile"
)

if [ "${1:-}" = "--dry-run" ]; then
  total=0
  for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit cmd <<<"$step"
    total=$((total + limit))
    echo "$name (${limit} s): $cmd"
  done
  echo "at most ${total} s in all"
  exit 0
fi

if ! $PYTHON -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing run. Use --dry-run to list the steps." >&2
  exit 2
fi

mkdir -p "$OUT"
$PYTHON -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))" | tee "$OUT/device.txt"
if [ ! -d "${FA_DATA:-/nonexistent}/MNIST/raw" ]; then
  # a device machine without the data sets: MNIST-shaped synthetic files (fa_bench.data.fake), for timings only
  export FA_DATA=$(mktemp -d)
  $PYTHON -c "from pathlib import Path; from fa_bench.data import fake; fake.write_mnist_like(Path('$FA_DATA'), 'MNIST', n_train=60000, n_test=10000)"
  echo "data: synthetic MNIST-format files (fa_bench.data.fake, 60000/10000): timings only" | tee -a "$OUT/device.txt"
fi
failed=()
for step in "${STEPS[@]}"; do
  IFS='|' read -r name limit cmd <<<"$step"
  echo "== $name (limit ${limit} s): $cmd"
  start=$(date +%s)
  timeout "$limit" bash -c "$cmd" 2>&1 | tee "$OUT/$name.log"
  rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $(( $(date +%s) - start )) s"
  [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: failed: ${failed[*]}" >&2
  exit 1
fi
echo "gpu_check: every step passed; rows under $OUT/"
