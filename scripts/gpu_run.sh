#!/usr/bin/env bash
# The one command for a session that has a GPU (e.g. a lent H100):
#
#     bash scripts/gpu_run.sh            # from the repository root
#
# 1. runs every CUDA test for real (kernels, Numba/CuPy/torch interop, PTX check);
# 2. benchmarks the DESIGN.md suite on the GPU (batch scaled up) against torch cuDNN,
#    fp32 with TF32 off and on.
# Prints markdown for docs/gpu-results.md (also written to $OUT/gpu-results.md, or
# /tmp/convtranspose-gpu/ when OUT is unset) and a short table last. Exit status: that
# of the tests, or of the benchmark if the tests passed.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
PY=${PYTHON:-python3}
DEST=${OUT:-/tmp/convtranspose-gpu}
mkdir -p "$DEST"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$DEST/nvidia-smi.txt"
"$PY" -c "import numba, numpy; from convtranspose import cuda; print('numba', numba.__version__, 'numpy', numpy.__version__, cuda.info())"

"$PY" -m pytest tests/cuda src/convtranspose/cuda -q -rs -p no:cacheprovider 2>&1 | tee "$DEST/pytest.log"
tests_rc=${PIPESTATUS[0]}
summary=$(grep -E "^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)" "$DEST/pytest.log" | tail -1 | tr -d '=')
[ "$tests_rc" -eq 0 ] && verdict="all passed ($summary)" || verdict="FAILED, exit $tests_rc ($summary)"

"$PY" scripts/gpu_bench.py --markdown "$DEST/gpu-results.md" --tests "$verdict"
bench_rc=$?
[ "$tests_rc" -ne 0 ] && exit "$tests_rc"
exit "$bench_rc"
