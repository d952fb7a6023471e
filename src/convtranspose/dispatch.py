"""Backend registry and the choice ``backend="auto"`` makes.

The cost model estimates the time of the direct kernel and of both forms of the im2col
backend (sub-pixel phases, col2im) from the problem's size and picks the smallest;
:func:`explain` shows the estimates. Its constants were fitted to one-thread CPU-time
measurements (``python -m convtranspose bench --threads 1 --cpu-time``) on the project's 2-core AVX-512 machine;
the data are written next to ``_RATES``. They decide between backends, they do not
predict exact times.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np

from .cpu import direct, im2col
from .params import _output_hw, normalise

__all__ = ["BACKENDS", "GPU_BACKENDS", "Choice", "check_backend", "choose", "explain", "flops",
           "is_device_array", "run_backend"]


def _im2col(x, weight, bias, params, out):
    """The ``im2col`` backend: its sub-pixel phase form or its col2im form, by the model."""
    form = _im2col_form(x.shape, weight.shape, params, out.shape, out.dtype)
    return im2col.FORMS[form](x, weight, bias, params, out)


#: name -> run(x, weight, bias, params, out), every one computing into ``out``.
BACKENDS = {"direct": direct.run, "im2col": _im2col}
#: Backends on the GPU, loaded lazily by :func:`run_backend` (not in ``BACKENDS``, so
#: loops over the CPU backends never touch numba.cuda).
GPU_BACKENDS = ("cuda",)

# The cost model. Each backend's time is GEMM or multiply-add work at a rate, plus
# per-element memory traffic, plus fixed costs per loop the kernels run (a row of the
# output, a segment: one multiply-add run along one input row). Constants are one-thread
# figures fitted to CPU-time measurements on this project's 2-core AVX-512 machine
# (Intel Xeon, Sapphire-Rapids class, OpenBLAS 0.3.31 "SkylakeX" kernels), float32, with
# OMP/OPENBLAS/NUMBA threads = 1 (time.thread_time, min of 3; the shared machine made wall
# times too noisy to fit). Data, in ms, torch (oneDNN) for scale:
#
#   shape          torch  phases  col2im  direct
#   seed_tiny      0.138   0.116   0.090   0.055
#   seed_shape     0.126   0.063   0.074   0.061
#   dcgan_g1       6.29    4.52   11.3     177
#   dcgan_g2      56.1    94.2    76.4    3251
#   dcgan_g3      40.4    88.7    71.6    1138
#   dcgan_g4      67.0   128     116       725
#   dcgan_g5      28.3   162      18.3      43.9
#   unet_up1      45.5    66.3    32.5     823
#   unet_up4      60.2    40.5    25.9     140
#   fcn_up8       49.4    60.4    92.9      74.9
#   depthwise_up  82.8    83.2   116        30.6
#   dilated        8.17   12.5    13.2      77.1
#   fsrcnn_up     18.9    95.0     4.77      8.68
#   stride1_big    9.07   19.5    21.4      20.5
#
# Parts measured alone: GEMM (128 x 1024 x 4096) 110 GFLOP/s, (16 x 144 x 65536)
# 42 GFLOP/s; the phase gather ~5.5 ns per row plus ~4 GB/s; the direct kernel ~16
# GFLOP/s on long rows, ~6 ns per segment and ~0.3 us per output row. With two threads
# all rates roughly double; the choice uses the one-thread figures, the estimates
# shown by explain() divide the parallel parts by the thread count (the phase form's
# gather and scatter run on one thread, as does the direct kernel below
# direct.SERIAL_FLOPS). The phase form ran about 1.2-2x
# the sum of its parts measured alone (more so with many input channels), hence
# _PHASES_FACTOR. float64: half the FLOP rates,
# and the per-element costs scale with the item size.
_RATES = {   # FLOP/s on one thread
    np.dtype(np.float32): dict(direct=16e9, gemm=130e9),
    np.dtype(np.float64): dict(direct=8e9, gemm=65e9),
}
_GEMM_HALF_M = 16.0        # GEMM rows (output channels of a group) at half efficiency
_GEMM_HALF_K = 24.0        # GEMM inner dimension at half efficiency
_DIRECT_BLOCK4_SPEEDUP = 1.75  # four channels per task: stride1_big 15.9 -> 10.7 ms (1 thread)
_SEGMENT_S = 6e-9          # one multiply-add run along a row (direct, col2im)
_ROW_S = 5e-8              # one output row of the direct or col2im kernel, plus ...
_ROW_ELEMENT_S = 2e-9      # ... per element of that row (zeroing and storing it)
_PHASES_FACTOR = 1.4       # the phase form's measured time over the sum of its parts
_GATHER_ROW_S = 5.5e-9     # one row copied by the phase gather
_BYTE_S = 1 / 4e9          # seconds per byte moved by gather, scatter and col2im
_CALL_S = 3e-5             # fixed cost of a GEMM-based call (plans, views, pool wake-up)
_COL2IM_STRIDE_COST = 4.0  # col2im's traffic costs 1 + (sW - 2)/4 times more at wide strides


def check_backend(backend):
    """Return ``backend`` if it names a backend or ``"auto"``, else raise ``ValueError``."""
    names = ("auto", *BACKENDS, *GPU_BACKENDS)
    if not isinstance(backend, str) or backend not in names:
        raise ValueError(f"backend must be one of {names}, got {backend!r}")
    return backend


def is_device_array(a, name):
    """True for a CUDA array (``__cuda_array_interface__``, or a simulated Numba device
    array); ``TypeError`` for a torch tensor that requires grad. Never imports numba.cuda."""
    try:
        if hasattr(a, "__cuda_array_interface__"):
            return True
    except RuntimeError:   # torch tensors that require grad raise from the attribute
        raise TypeError(f"{name} is a torch tensor that requires grad; convtranspose does not "
                        f"track gradients: pass {name}.detach()") from None
    return type(a).__module__.startswith(("numba.cuda.", "numba_cuda."))


def run_backend(name):
    """The ``run(x, weight, bias, params, out)`` of backend ``name`` (host arrays);
    ``"cuda"`` copies to the GPU and back and is imported only when asked for."""
    if name in GPU_BACKENDS:
        from .cuda import run
        return run
    return BACKENDS[name]


def flops(x_shape, w_shape, groups):
    """Multiply-adds times two of the transposed convolution, as the suite counts them."""
    n, c_in, h, w = (1, *x_shape) if len(x_shape) == 3 else x_shape
    return 2 * n * c_in * w_shape[1] * w_shape[2] * w_shape[3] * h * w


@dataclass(frozen=True)
class Choice:
    """What ``backend="auto"`` picks for one problem, and why."""

    backend: str
    reason: str
    estimates: dict = field(default_factory=dict)   # backend -> estimated seconds
    flops: int = 0

    def __str__(self):
        lines = [f"backend: {self.backend}", f"reason: {self.reason}",
                 f"work: {self.flops / 1e9:.4g} GFLOP"]
        lines += [f"estimate {name}: {sec * 1e3:.4g} ms" for name, sec in self.estimates.items()]
        return "\n".join(lines)


def _gemm_s(m, k, n_cols, rates):
    return 2.0 * m * k * n_cols / (rates["gemm"] * m / (m + _GEMM_HALF_M) * k / (k + _GEMM_HALF_K))


@lru_cache(maxsize=512)
def _forms(x_shape, w_shape, params, out_hw, dtype):
    """``(seconds that threads share, seconds on one thread)`` of the direct kernel and
    of each im2col form (tuples in; cached, so a layer called again pays nothing)."""
    n, c_in, h, w = x_shape
    _, c_out_g, k_h, k_w = w_shape
    groups = params.groups
    c_out, c_in_g = c_out_g * groups, c_in // groups
    rates = _RATES[np.dtype(dtype)]
    isz = np.dtype(dtype).itemsize
    h_out, w_out = out_hw
    work = flops(x_shape, w_shape, groups)
    taps_h = min(k_h, -(-k_h // params.stride[0]) if h > 1 else 1)   # taps per output row
    rows = n * c_out * h_out
    row_s = _ROW_S + w_out * _ROW_ELEMENT_S
    block = 4 if c_out_g % 4 == 0 else 1      # the direct kernel's channel blocking
    t_direct = (work / (rates["direct"] * (_DIRECT_BLOCK4_SPEEDUP if block == 4 else 1.0))
                + rows * row_s + rows * taps_h * c_in_g * k_w * _SEGMENT_S / block)
    t_direct = (0.0, t_direct) if work < direct.SERIAL_FLOPS else (t_direct, 0.0)
    cols = n * h * w * c_out * k_h * k_w
    t_col2im = (_CALL_S + groups * _gemm_s(c_out_g * k_h * k_w, c_in_g, n * h * w, rates)
                + 2 * cols * isz * _BYTE_S + rows * row_s + rows * taps_h * k_w * _SEGMENT_S)
    if params.stride[1] > 2:   # fcn_up8 (sW = 8): measured 2.5x the plain estimate, 2 threads
        t_col2im += 2 * cols * isz * _BYTE_S * (params.stride[1] - 2) / _COL2IM_STRIDE_COST
    t_col2im = (t_col2im, 0.0)
    if h == 1 and w == 1 and groups == 1:
        t_phases = (_CALL_S + _gemm_s(c_out * k_h * k_w, c_in, n, rates)
                    + 2 * cols * isz * _BYTE_S, 0.0)
    else:
        (s_h, prow), (s_w, pcol) = im2col.phase_plan((h, w), (k_h, k_w), out_hw, params)
        shared, serial = _CALL_S, 0.0
        straight = s_h == 1 and s_w == 1 and n == 1     # the GEMM writes the output
        for pr in prow:
            for pc in pcol:
                t = len(pr.k_idx) * len(pc.k_idx)
                if not t:
                    continue
                pix = n * pr.count * pc.count
                gather = c_in * t * pix * isz * _BYTE_S + c_in * t * n * pr.count * _GATHER_ROW_S
                shared += groups * _gemm_s(c_out_g, c_in_g * t, pix, rates)
                serial += gather + (0 if straight else 2 * c_out * pix * isz * _BYTE_S)
        t_phases = (shared * _PHASES_FACTOR, serial * _PHASES_FACTOR)
    return work, {"direct": t_direct, "im2col/phases": t_phases, "im2col/col2im": t_col2im}


def _im2col_form(x_shape, w_shape, params, out_shape, dtype):
    _, est = _estimates(x_shape, w_shape, params, dtype, out_shape[-2:])
    return "phases" if est["im2col/phases"] <= est["im2col/col2im"] else "col2im"


def _estimates(x_shape, w_shape, params, dtype, out_hw):
    """Estimated seconds per backend (and im2col form) at the current thread count."""
    work, est = _forms(tuple(x_shape), tuple(w_shape), params, tuple(out_hw), np.dtype(dtype))
    threads = max(1, numba.get_num_threads())
    return work, {name: shared / threads + serial for name, (shared, serial) in est.items()}


def choose(x_shape, w_shape, params, dtype, out_hw=None):
    """Pick a CPU backend for a validated 4-D problem; returns a :class:`Choice`.

    ``out_hw`` is the output's ``(H_out, W_out)``, computed from the shapes when omitted.
    """
    if out_hw is None:
        out_hw = _output_hw(x_shape[2:], w_shape[2:], params)
    return _choose(tuple(x_shape), tuple(w_shape), params, np.dtype(dtype), tuple(out_hw),
                   numba.get_num_threads())


@lru_cache(maxsize=512)
def _choose(x_shape, w_shape, params, dtype, out_hw, threads):
    work, est = _estimates(x_shape, w_shape, params, dtype, out_hw)
    best = min(est, key=est.get)
    others = ", ".join(f"{est[k] * 1e3:.3g} ms for {k}" for k in est if k != best)
    reason = (f"estimated {est[best] * 1e3:.3g} ms for {best} against {others} "
              f"(C_in/groups = {x_shape[1] // params.groups}, W = {x_shape[3]}, "
              f"{numba.get_num_threads()} threads)")
    return Choice(best.split("/")[0], reason, est, work)


def explain(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1,
            *, output_size=None):
    """Say which backend ``conv_transpose2d(..., backend="auto")`` would use, and why.

    Parameters
    ----------
    x, weight, bias
        Arrays, or anything with ``.shape`` and ``.dtype``, as for
        :func:`convtranspose.conv_transpose2d`; no data is read.
    stride, padding, output_padding, groups, dilation, output_size
        As for :func:`convtranspose.conv_transpose2d`.

    Returns
    -------
    Choice
        ``.backend``, ``.reason``, ``.estimates`` (seconds per backend) and ``.flops``;
        ``str()`` gives a readable summary.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> choice = ct.explain(np.empty((64, 512, 4, 4), np.float32),
    ...                     np.empty((512, 256, 4, 4), np.float32), stride=2, padding=1)
    >>> choice.backend
    'im2col'
    """
    b_shape = None if bias is None else tuple(bias.shape)
    on_gpu = any(is_device_array(a, n) for a, n in ((x, "x"), (weight, "weight"), (bias, "bias"))
                 if a is not None)
    dtypes = [x.dtype, weight.dtype]
    if on_gpu:
        from .cuda.arrays import dtype_of
        dtypes = [np.dtype(dtype_of(a, n)) for a, n in ((x, "x"), (weight, "weight"))]
    params, _, dtype = normalise(tuple(x.shape), tuple(weight.shape), b_shape,
                                 dtypes, stride=stride, padding=padding,
                                 output_padding=output_padding, dilation=dilation,
                                 groups=groups, output_size=output_size)
    x_shape = tuple(x.shape) if len(x.shape) == 4 else (1, *x.shape)
    if on_gpu:
        from .cuda.kernels import pick_kernel
        kernel = pick_kernel(x_shape, tuple(weight.shape), params.groups)
        return Choice("cuda", f"CUDA arrays run on their GPU; the {kernel} kernel "
                      f"(C_in/groups = {x_shape[1] // params.groups}, "
                      f"C_out/groups = {weight.shape[1]})", {}, flops(x_shape, weight.shape,
                                                                      params.groups))
    return choose(x_shape, tuple(weight.shape), params, dtype)
