"""Every CUDA kernel compiles to PTX for compute capability 9.0 (H100), and the float32
kernels contain no float64 arithmetic.

Needs the CUDA toolkit's NVVM (not a GPU); skipped under the simulator, whose
``compile_ptx`` does not compile.
"""
from __future__ import annotations

import os
import re

import numba
import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("compile_ptx needs the real numba.cuda (run without NUMBA_ENABLE_CUDASIM)",
                allow_module_level=True)

from numba import cuda  # noqa: E402

from convtranspose.cuda import backward, kernels  # noqa: E402

CC = (9, 0)
F64 = re.compile(r"\.f64\b")
NB = {np.float32: numba.float32, np.float64: numba.float64}


def _signature(dtype, name):
    a4, a1, i = NB[dtype][:, :, :, ::1], NB[dtype][::1], numba.int64
    flag = numba.int32[::1]
    if name == "gather":
        t1, t2 = numba.int32[::1], numba.int32[:, ::1]
        return (a4, a4, a1, a4, t1, t2, t2, t1, t2, t2, i, numba.boolean, flag)
    if name in ("weight_grad", "bias_grad"):
        return (a4, a4, a4, i, i, i, i, i, i, i)
    if name == "nonfinite":
        return (a4, flag)
    if name == "correlate":
        return (a4, a4, a1, a4, i, i, i, i, i, i, i, numba.boolean)
    return (a4, a4, a1, a4, i, i, i, i, i, i, i, numba.boolean, flag)   # tiled


def _ptx(fn, sig):
    try:
        ptx, _ = cuda.compile_ptx(fn, sig, cc=CC)
    except Exception as exc:     # pragma: no cover - environment problem, say what it is
        if any(lib in str(exc).lower() for lib in ("nvvm", "nvrtc")):
            pytest.skip(f"CUDA toolkit library missing (built-in numba.cuda needs NVVM, "
                        f"numba-cuda also NVRTC): {str(exc)[:200]}")
        raise
    return ptx


KERNELS = {
    "gather": lambda dt: kernels.gather_kernel(dt),
    "tiled": lambda dt: kernels.tiled_kernel(dt, kernels.TILE_CO, kernels.TILE_P,
                                             kernels.TILE_K, kernels.REG_CO, kernels.REG_P),
    "tiled_tiny": lambda dt: kernels.tiled_kernel(dt, 2, 4, 2, 1, 2),
    "correlate": lambda dt: backward.correlate_kernel(dt),
    "weight_grad": lambda dt: backward.weight_grad_kernel(dt, backward.REDUCE_THREADS),
    "bias_grad": lambda dt: backward.bias_grad_kernel(dt, backward.REDUCE_THREADS),
    "nonfinite": lambda dt: kernels.nonfinite_kernel(kernels.CHECK_THREADS),
}
#: The arithmetic each kernel must show (the bias gradient only adds; the weight check
#: compares |w| with Inf).
ARITHMETIC = {"bias_grad": "add", "nonfinite": "setp.lt"}


@pytest.mark.parametrize("name", list(KERNELS))
def test_float32_ptx_has_no_f64(name):
    ptx = _ptx(KERNELS[name](np.float32).py_func, _signature(np.float32, name))
    assert ".target sm_90" in ptx
    assert f"{ARITHMETIC.get(name, 'fma.rn')}.f32" in ptx     # the arithmetic is there ...
    lines = [ln.strip() for ln in ptx.splitlines() if F64.search(ln)]
    assert not lines, f"float64 instructions in the float32 {name} kernel: {lines[:5]}"
    assert ".local" not in ptx, "register tiles spilled to local memory"


@pytest.mark.parametrize("name", list(KERNELS))
def test_float64_ptx_computes_in_f64(name):
    ptx = _ptx(KERNELS[name](np.float64).py_func, _signature(np.float64, name))
    assert f"{ARITHMETIC.get(name, 'fma.rn')}.f64" in ptx


def test_detector_catches_untyped_zero():
    """The check above can fail: ``acc = 0.0`` promotes a float32 sum to float64."""
    def untyped(x, out):
        i = cuda.grid(1)
        if i < out.shape[0]:
            acc = 0.0
            for k in range(x.shape[1]):
                acc += x[i, k] * x[i, k]
            out[i] = acc

    sig = (numba.float32[:, ::1], numba.float32[::1])
    assert F64.search(_ptx(untyped, sig))
