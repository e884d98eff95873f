#!/usr/bin/env bash
# The benchmark's rows on one GPU machine without Ray or network (see README.md): 14 local
# worker processes share the GPU, each training one row at a time with the trial code of
# `cotsearch sweep`. Finished rows are appended to ROWS_FILE as they end; no row starts after
# DEADLINE_S seconds. Fashion-MNIST's four .gz files must be in .fmnist/ and cotsearch's
# Python dependencies importable (PYTHONPATH).
set -euo pipefail
rows_file=${1:?usage: run_on_gpu.sh ROWS_FILE [DEADLINE_S]}
deadline=${2:-450}
# CUDA MPS lets the workers' small kernels run side by side instead of taking turns on the
# GPU; where it cannot start, the run goes on without it (slower, not different).
if nvidia-cuda-mps-control -d 2>/dev/null && timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
  echo "CUDA MPS on"
else
  echo quit | nvidia-cuda-mps-control 2>/dev/null || true
  echo "CUDA MPS off"
fi
(while sleep 60; do nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; done) &
trap 'kill $!' EXIT  # the GPU sampler ends with the run
python3 experiments/cot_placement_bench/without_ray.py run "$rows_file" --workers 14 --deadline "$deadline" \
  --data fashion-mnist:.fmnist
