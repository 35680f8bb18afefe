#!/bin/bash
# Every CUDA check in one go, for a session lent a GPU machine (the device tool's `run`, from the
# repository root, carrying .whl with the cp312 wheels of pycocotools and faster-coco-eval, which
# that machine's Python lacks):  bash bench/gpu_check.sh
# Writes smoke.log, bench_cuda.json and bench.log under $OUT (or /tmp/gpu_check).
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__)" | tee -a "$OUT/gpu.txt"
rc=0
timeout 240 python3 bench/gpu_smoke.py /tmp/gpu_smoke 2>&1 | tee "$OUT/smoke.log" || rc=1
timeout 240 python3 bench/bench_cuda.py --reps 8 --json "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench.log" || rc=1
exit $rc
