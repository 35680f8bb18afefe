#!/bin/bash
# Every CUDA check in one go, for a session lent a GPU machine (the device tool's `run`, from the
# repository root, carrying .whl with the cp312 wheels of pycocotools and faster-coco-eval, which
# that machine's Python lacks):  bash bench/gpu_check.sh [SECONDS [PART ...]]
# PARTS (default all, in this order), each within what is left of SECONDS (default 450): smoke, the CLI on
# cuda (gpu_smoke.py); simota, SimOTA's
# fast cost against its oracle on cuda (gpu_sim_ota.py); targets, a training step's batch targets in one
# pass against each image's own on cuda (gpu_batch_targets.py); bench, the training steps and the NMS record
# against torchvision on the GPU (bench_cuda.py); pytest, the engine's test suite on that machine's CPU
# (another CPU than the CI's) with whatever time is left. Logs and bench_cuda.json land under $OUT.
set -u -o pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
BUDGET=${1:-450}
shift || true
PARTS=" ${*:-smoke simota targets bench pytest} "
want() { [[ "$PARTS" == *" $1 "* ]]; }
mkdir -p "$OUT"
left() { echo $(( BUDGET - SECONDS )); }
cap() { local l; l=$(left); (( l < $1 )) && echo "$l" || echo "$1"; }
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import sys, torch, torchvision; print(sys.version.split()[0], torch.__version__, torchvision.__version__)"
  lscpu | grep -m1 "Model name"; } | tee "$OUT/gpu.txt"
rc=0
if want smoke; then
  timeout "$(cap 170)" python3 bench/gpu_smoke.py /tmp/gpu_smoke 2>&1 | tee "$OUT/smoke.log" || rc=1
fi
if want simota; then
  timeout "$(cap 40)" python3 bench/gpu_sim_ota.py 2>&1 | tee "$OUT/sim_ota.log" || rc=1
fi
if want targets; then
  timeout "$(cap 60)" python3 bench/gpu_batch_targets.py 2>&1 | tee "$OUT/batch_targets.log" || rc=1
fi
if want bench; then
  timeout "$(cap 260)" python3 bench/bench_cuda.py --reps 8 --json "$OUT/bench_cuda.json" 2>&1 | tee "$OUT/bench.log" || rc=1
fi
if want pytest && (( $(left) > 40 )); then
  timeout "$(( $(left) - 10 ))" python3 -m pytest tests/engine -v -n 12 -p no:cacheprovider --maxfail 30 -rf --timeout 120 \
    > "$OUT/pytest.log" 2>&1
  echo "pytest rc $?"; grep -E "(FAILED|ERROR) tests" "$OUT/pytest.log" | sort -u | head -40; tail -3 "$OUT/pytest.log"
fi
exit $rc
