#!/usr/bin/env bash
# The one command for a session that has a GPU (e.g. a lent H100):
#
#     bash scripts/gpu_run.sh            # from the repository root
#
# 1. runs every CUDA test for real (kernels, Numba/CuPy/torch interop, PTX check);
# 2. runs the kernel tests (tests/cuda/test_{kernels,edges,backward}*.py, whatever exists)
#    again under `compute-sanitizer --tool memcheck` when it is on PATH or in
#    /usr/local/cuda/bin (out-of-bounds and misaligned device accesses, leaks excluded);
# 3. benchmarks the DESIGN.md suite on the GPU (batch scaled up) against torch cuDNN,
#    fp32 with TF32 off and on.
# Prints markdown for docs/gpu-results.md (also written to $OUT/gpu-results.md, or
# /tmp/convtranspose-gpu/ when OUT is unset) and a short table last; both say how the
# tests went and how many errors memcheck found. Exit status: that of the tests, else
# that of memcheck (1 on any error), else that of the benchmark.
set -u
cd "$(dirname "$0")/.." || exit 1
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
# pytest's last count line ("12 passed, 1 xfailed in 3.4s"), not compute-sanitizer's "=== ..."
summary() { grep -E "^(=+ )?[0-9]+ (passed|failed|skipped|xfailed|errors?|deselected)" "$1" | tail -1 | tr -d '='; }
summary=$(summary "$DEST/pytest.log")
[ "$tests_rc" -eq 0 ] && verdict="all passed ($summary)" || verdict="FAILED, exit $tests_rc ($summary)"

# memcheck over the kernel tests; the glob picks up new kernel test files
shopt -s nullglob
memcheck_tests=(tests/cuda/test_kernels*.py tests/cuda/test_edges*.py tests/cuda/test_backward*.py)
shopt -u nullglob
SANITIZER=$(command -v compute-sanitizer || true)
if [ -z "$SANITIZER" ] && [ -x /usr/local/cuda/bin/compute-sanitizer ]; then
    SANITIZER=/usr/local/cuda/bin/compute-sanitizer
fi
memcheck_rc=0
if [ -z "$SANITIZER" ]; then
    memcheck="not run (compute-sanitizer not found)"
elif [ "${#memcheck_tests[@]}" -eq 0 ]; then
    memcheck="not run (no kernel test files)"
else
    # application-only: the child process of the tiled-kernel hang test is killed by its
    # timeout, which is not a memory error
    "$SANITIZER" --tool memcheck --error-exitcode 1 --target-processes application-only \
        "$PY" -m pytest "${memcheck_tests[@]}" -q -rs -p no:cacheprovider 2>&1 \
        | tee "$DEST/memcheck.log"
    memcheck_rc=${PIPESTATUS[0]}
    errors=$(grep -oE "ERROR SUMMARY: [0-9]+" "$DEST/memcheck.log" | tail -1 | grep -oE "[0-9]+$")
    memcheck="${errors:-unknown} errors, exit $memcheck_rc (${#memcheck_tests[@]} files: $(summary "$DEST/memcheck.log"))"
fi
echo "memcheck: $memcheck"

"$PY" scripts/gpu_bench.py --markdown "$DEST/gpu-results.md" --tests "$verdict" --memcheck "$memcheck"
bench_rc=$?
[ "$tests_rc" -ne 0 ] && exit "$tests_rc"
[ "$memcheck_rc" -ne 0 ] && exit "$memcheck_rc"
exit "$bench_rc"
