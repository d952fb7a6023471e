"""Workspace bound, MemoryError, 64-bit offsets and extreme but valid parameters."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.cpu.im2col import plan_col2im
from convtranspose.params import normalise
from convtranspose.reference import conv_transpose2d_reference as reference
from convtranspose.testing import assert_close, extreme_problems

SRC = str(Path(ct.__file__).resolve().parents[1])
BACKENDS = ("direct", "im2col", "auto")

_RSS_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import convtranspose as ct
    import convtranspose.dispatch
    convtranspose.dispatch._im2col_form = lambda *args: "col2im"   # the chunked column form
    limit = int(sys.argv[1])
    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 64, 48, 48)).astype(np.float32)
    w = rng.standard_normal((64, 256, 5, 5)).astype(np.float32)
    out = np.ones((2, 256, 99, 99), np.float32)         # touched: resident before the peak
    # warm up: compile, and let OpenBLAS touch its own fixed per-thread GEMM buffers
    ct.set_workspace_limit(1 << 20)
    ct.conv_transpose2d(x[:1], w, stride=2, backend="im2col")
    ct.set_workspace_limit(limit)
    with open("/proc/self/clear_refs", "w") as f:       # reset the peak (VmHWM) to now
        f.write("5")
    base = status("VmRSS")
    ct.conv_transpose2d(x, w, stride=2, out=out, backend="im2col")
    print(json.dumps({"peak": status("VmHWM") - base, "sum": float(out.sum(dtype=np.float64))}))
""")


def _peak_rss(limit):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(limit)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_im2col_chunks_stay_within_workspace_limit():
    limit = 8 * 2**20
    params, out_shape, _ = normalise((2, 64, 48, 48), (64, 256, 5, 5), None, [np.dtype(np.float32)],
                                     stride=2)
    tasks, slot = plan_col2im((2, 64, 48, 48), (64, 256, 5, 5), params, out_shape[2:], 4,
                              limit, numba.config.NUMBA_NUM_THREADS)
    assert len(tasks) > 2 and numba.config.NUMBA_NUM_THREADS * slot * 4 <= limit
    small = _peak_rss(limit)
    large = _peak_rss(1 << 30)
    slack = 2 * 2**20                             # tap tables, allocator rounding
    assert small["peak"] <= limit + slack, small
    assert large["peak"] >= 2 * limit, large      # unlimited, the tasks take more than the limit
    assert np.isclose(small["sum"], large["sum"], rtol=1e-4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unallocatable_output_raises_memoryerror_with_size(backend):
    x = np.ones((1, 1, 2, 2), np.float32)
    w = np.ones((1, 1, 1, 1), np.float32)
    s = 2**31 - 1                                 # output (2**31)**2 float32: 16 EiB
    with pytest.raises(MemoryError, match=r"output: shape \(1, 1, 2147483648, 2147483648\)"
                       r", dtype float32, 18446744073709551616 bytes"):
        ct.conv_transpose2d(x, w, stride=s, backend=backend)
    with pytest.raises(MemoryError, match="bytes"):   # 4 TiB: refused by the allocator
        ct.conv_transpose2d(x, w, stride=2**19, backend=backend)


def test_unallocatable_workspace_raises_memoryerror_with_size():
    """The workspace allocator reports shape and bytes too."""
    from convtranspose._alloc import allocate
    with pytest.raises(MemoryError, match=r"im2col column buffer: shape \(1125899906842624,\), "
                       r"dtype float64, 9007199254740992 bytes"):
        allocate((2**50,), np.float64, "im2col column buffer")


def _big_output_case(backend, s, bound):
    """x (1, 2, 3, 3), k 2, stride ``s``: output (2*s + 2)**2 elements, 36 of them non-zero."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    w = rng.standard_normal((2, 1, 2, 2)).astype(np.float32)
    y = ct.conv_transpose2d(x, w, stride=s, backend=backend)
    assert bound(y)
    for ih in range(3):            # each input pixel stamps an isolated 2x2 block
        for iw in range(3):
            blk = y[0, 0, ih * s:ih * s + 2, iw * s:iw * s + 2]
            np.testing.assert_allclose(blk, (x[0, :, ih, iw, None, None] * w[:, 0]).sum(0),
                                       rtol=1e-6)
            y[0, 0, ih * s:ih * s + 2, iw * s:iw * s + 2] = 0
    assert not y.any()             # nothing written anywhere else


@pytest.mark.slow
@pytest.mark.parametrize("backend", ("direct", "im2col"))
def test_output_past_2_31_bytes_is_indexed_right(backend):
    """float32 output of 2.15e9 bytes: byte offsets past 2**31 (peak ~2.2 GiB)."""
    _big_output_case(backend, 11586, lambda y: y.nbytes > 2**31)


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("CONVTRANSPOSE_BIG") != "1",
                    reason="set CONVTRANSPOSE_BIG=1: allocates ~8.6 GB")
@pytest.mark.parametrize("backend", ("direct", "im2col"))
def test_output_past_2_31_elements_is_indexed_right(backend):
    """float32 output of 2.15e9 elements: element offsets past 2**31."""
    _big_output_case(backend, 23171, lambda y: y.size > 2**31)


EXTREME = extreme_problems()     # (name, x shape, w shape, kwargs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,x_shape,w_shape,kwargs", EXTREME, ids=[e[0] for e in EXTREME])
def test_extreme_parameters(name, x_shape, w_shape, kwargs, dtype, backend):
    rng = np.random.default_rng(len(name))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    y = ct.conv_transpose2d(x, w, b, backend=backend, **kwargs)
    e = reference(x, w, b, **kwargs)
    assert y.shape == e.shape == ct.output_shape(x_shape, w_shape, **kwargs)
    assert_close(y, e, dtype, factor=4 if name.startswith("c4096") else 1)
