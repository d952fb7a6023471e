"""What every benchmark module shares: the suite's shape names, backends, dtypes, problems.

The shapes come from :mod:`convtranspose.suite` (one definition, DESIGN.md section 3), never
copied here. A combination that the benchmarked commit cannot run (a backend it does not
have, ``cuda`` without a GPU) raises ``NotImplementedError`` from ``setup()``, which asv
records as skipped rather than failed.
"""
import inspect

import numpy as np

from convtranspose import suite as _suite
from convtranspose.suite import SUITE

#: every suite shape, by name (asv parameters must be plain values)
SHAPES = [s.name for s in SUITE]
#: the layers of the other ranks and of channels-last layouts (issue 13)
RANKS_LAYOUTS = [s.name for s in getattr(_suite, "RANKS_LAYOUTS", ())]
BACKENDS = ["direct", "im2col", "auto", "cuda"]
CPU_BACKENDS = ["direct", "im2col"]
DTYPES = ["float32", "float64"]


class BoundedSampling:
    """asv sampling that keeps a whole timing grid within minutes on a 2-core machine: one
    round, at most 5 samples or 2 s per combination, no warm-up (``setup()`` warms up)."""

    timeout = 120
    rounds = 1
    repeat = (1, 5, 2.0)
    sample_time = 0.02
    warmup_time = 0


def shape(name):
    """The suite shape ``name`` of the installed commit."""
    from convtranspose.suite import get
    try:
        return get(name)
    except KeyError:
        raise NotImplementedError(f"shape {name!r} is not in this commit's suite") from None


def require_backend(backend):
    """Raise ``NotImplementedError`` unless this commit (and machine) can run ``backend``."""
    from convtranspose import dispatch
    if backend == "auto":
        return
    known = (*dispatch.BACKENDS, *getattr(dispatch, "GPU_BACKENDS", ()))
    if backend not in known:
        raise NotImplementedError(f"backend {backend!r} does not exist at this commit")
    if backend == "cuda":
        from numba import config
        try:
            from numba import cuda
            available = cuda.is_available()
        except Exception:   # no CUDA support at all
            available = False
        if not available or config.ENABLE_CUDASIM:
            raise NotImplementedError("backend 'cuda' needs a GPU (the simulator is not timed)")


def problem(name, backend, dtype, batch=None):
    """``(shape, call)``: a zero-argument callable computing one suite problem.

    The host backends write into a preallocated ``out``; ``cuda`` takes device arrays and
    synchronises before returning, so a timer around ``call()`` times the GPU work.
    """
    import convtranspose as ct
    require_backend(backend)
    s = shape(name)
    x, w, b = s.arrays(np.dtype(dtype), batch=batch)
    kw = s.kwargs()
    if backend == "cuda":
        from numba import cuda
        dx, dw, db = (cuda.to_device(a) for a in (x, w, b))

        def call():
            ct.conv_transpose2d(dx, dw, db, backend="cuda", **kw)
            cuda.synchronize()
    else:
        op = s.function() if hasattr(s, "function") else ct.conv_transpose2d
        shape_out = ct.output_shape((x.shape[0], *s.x_shape[1:]), w.shape, **kw)
        out = np.empty(shape_out, x.dtype)
        out = s.in_layout(out) if hasattr(s, "in_layout") else out

        def call():
            op(x, w, b, out=out, backend=backend, **kw)
    return s, call


def backward_problem(name, backend, dtype):
    """``(shape, call, operands)``: ``call()`` computes the three gradients of one suite
    problem with ``conv_transpose2d_backward`` on a host ``backend``; ``operands`` are
    ``(x, weight, bias, grad_output, kwargs)``, for PyTorch's autograd."""
    import convtranspose as ct
    backward = getattr(ct, "conv_transpose2d_backward", None)
    if backward is None or "backend" not in inspect.signature(backward).parameters:
        raise NotImplementedError("conv_transpose2d_backward(..., backend=) does not exist "
                                  "at this commit")
    require_backend(backend)
    s = shape(name)
    x, w, b = s.arrays(np.dtype(dtype))
    kw = s.kwargs()
    gy = np.random.default_rng(1).standard_normal(
        ct.output_shape(x.shape, w.shape, **kw)).astype(dtype)

    def call():
        backward(gy, x, w, backend=backend, **kw)
    return s, call, (x, w, b, gy, kw)


def ratio_to_torch(median, call, runner):
    """``median(call) / median(runner)``, PyTorch on as many threads as Numba and warmed
    up; ``NotImplementedError`` where ``runner`` is ``None`` (torch not importable)."""
    if runner is None:
        raise NotImplementedError("torch is not importable")
    import numba
    import torch
    torch.set_num_threads(numba.get_num_threads())
    runner()
    return median(call) / median(runner)


def bench_helpers():
    """``convtranspose.tools.bench`` (median timing, the PyTorch runner; ``convtranspose.bench``
    before the tools moved), absent at early commits."""
    try:
        from convtranspose.tools import bench
    except ImportError:
        try:
            from convtranspose import bench
        except ImportError:
            raise NotImplementedError("convtranspose.bench does not exist at this "
                                      "commit") from None
    return bench
