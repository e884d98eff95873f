#!/usr/bin/env bash
# A plan's rows (experiments/without_ray.py) on one GPU machine without Ray or network: local
# worker processes share the GPU, each training one row at a time with the trial code of
# `cotsearch sweep`. Finished rows are appended to ROWS_FILE as they end; no row starts after
# DEADLINE_S seconds. DATA is the data source (e.g. fashion-mnist:DIR with Fashion-MNIST's four
# .gz files); cotsearch's Python dependencies must be importable (PYTHONPATH).
set -euo pipefail
plan=${1:?usage: run_on_gpu.sh PLAN ROWS_FILE DEADLINE_S DATA [WORKERS]}
rows_file=${2:?} deadline=${3:?} data=${4:?} workers=${5:-$(( $(nproc) - 1 ))}
# CUDA MPS lets the workers' small kernels run side by side instead of taking turns on the
# GPU (measured on the H200: design-pilot rows took 40-100 s with it, 150-165 s without). A
# daemon left by an earlier run on the same machine is kept. Where MPS cannot start, the run
# goes on without it (slower, not different).
nvidia-cuda-mps-control -d 2>/dev/null || true  # fails where a daemon runs already: the check below keeps it
if pgrep -x nvidia-cuda-mps-control >/dev/null && timeout 60 python3 -c "import torch; torch.ones(1, device='cuda').sum().item()"; then
  echo "CUDA MPS on"
else
  echo quit | nvidia-cuda-mps-control 2>/dev/null || true
  echo "CUDA MPS off"
fi
# The GPU's load once a minute, into a file beside the rows (not the output, whose pipe it would hold open).
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 60 > "$rows_file.gpu.csv" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
PYTHONUNBUFFERED=1 python3 experiments/without_ray.py run "$plan" "$rows_file" --workers "$workers" \
  --deadline "$deadline" --data "$data"
