#!/usr/bin/env bash
# The prepared GPU run of issue 13 (see benchmarks/gpu_run.py): torch eager, torch.compile and
# JAX jit benchmarks of layer_norm, rms_norm, batch_norm and group_norm in bfloat16 and float32,
# forward and forward+backward, then the CUDA conformance run, all within one time budget.
#   benchmarks/gpu_run.sh [OUT_DIR] [BUDGET_SECONDS]
# Copy OUT_DIR/bench-cuda*.json and OUT_DIR/plots into docs/data/bench/ afterwards.
set -euo pipefail
out="${1:-reports/gpu}"
budget="${2:-540}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python}"
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv || true
# torch and JAX share the GPU inside one `normspec bench`: JAX must not preallocate 75% of it.
export XLA_PYTHON_CLIENT_PREALLOCATE="${XLA_PYTHON_CLIENT_PREALLOCATE:-false}"
echo "XLA_FLAGS=${XLA_FLAGS:-} XLA_PYTHON_CLIENT_PREALLOCATE=$XLA_PYTHON_CLIENT_PREALLOCATE"
exec "$python" "$here/gpu_run.py" "$out" --budget "$budget"
