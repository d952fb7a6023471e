"""The workspace limit holds for the gradients' GEMM forms: the weight gradient's
per-thread buffers are counted in it (README, Guarantees: Memory)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_backward_reference
from convtranspose.testing import relative_error

# A weight (9.4 MB float32) bigger than the 16 MiB limit leaves room for; 4 images of
# 16x16 make several units per task, so the partials are summed through the buffer.
_PEAK_SCRIPT = textwrap.dedent("""
    import tracemalloc, numpy as np, convtranspose as ct
    from convtranspose.cpu.workspace import release_workspace
    limit = 16 * 2**20
    ct.set_workspace_limit(limit)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 512, 16, 16), dtype=np.float32)
    w = rng.standard_normal((512, 512, 3, 3), dtype=np.float32)
    g = rng.standard_normal((4, 512, 16, 16), dtype=np.float32)
    kw = dict(padding=1, backend="im2col", needs_input_grad=False, needs_bias_grad=False)
    ct.conv_transpose2d_backward(g, x, w, **kw)          # compile, outside the trace
    release_workspace()
    tracemalloc.start()
    _, gw, _ = ct.conv_transpose2d_backward(g, x, w, **kw)
    print((tracemalloc.get_traced_memory()[1] - gw.nbytes) / limit)
""")


@pytest.mark.parametrize("threads", [2, 8])
def test_weight_grad_buffers_stay_within_the_limit(threads):
    """Before the fix: 2.0x the limit beyond the result with 2 threads, 5.4x with 8 (a
    weight-sized product buffer per thread, outside the limit)."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, "-c", _PEAK_SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.split()[-1]) <= 1.0


@pytest.mark.parametrize("limit", [1, 4096, 64 * 2**10])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_grad_in_column_blocks_is_exact(limit, dtype):
    """Limits so small that a unit's product goes through the buffer a few gradient
    columns at a time (down to one) still give the reference's gradient."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 6, 7, 5)).astype(dtype)
    w = rng.standard_normal((6, 4, 3, 2)).astype(dtype)
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    y = ct.conv_transpose2d(x, w, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    expected = conv_transpose2d_backward_reference(g.astype(np.float64), x.astype(np.float64),
                                                   w.astype(np.float64), **kw)[1]
    old = ct.set_workspace_limit(limit)
    try:
        gw = ct.conv_transpose2d_backward(g, x, w, **kw, backend="im2col")[1]
    finally:
        ct.set_workspace_limit(old)
    assert relative_error(gw, expected) <= (1e-5 if dtype == np.float32 else 1e-12)
