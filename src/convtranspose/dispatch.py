"""Backend registry and the choice ``backend="auto"`` makes.

The cost model estimates the time of the direct kernel and of both forms of the im2col
backend (sub-pixel phases, col2im) from the problem's size and picks the smallest;
:func:`explain` shows the estimates. Its constants were fitted to one-thread CPU-time
measurements (``python -m convtranspose bench --threads 1 --cpu-time``) on the project's 2-core AVX-512 machine;
the data are written next to ``_RATES``. They decide between backends, they do not
predict exact times. The col2im form is left out (an infinite estimate) where its
smallest task, one output row, would exceed the workspace limit. The correlation
(``conv2d``, the input gradient) and the weight gradient choose by size rules instead
(:func:`correlate_method`, :func:`weight_grad_method`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numba
import numpy as np

from ._arrays import is_device_array
from .cpu import backward as cpu_backward
from .cpu import direct, im2col, nd_engine
from .cpu.layout import c_contiguous
from . import nonfinite
from .params import BACKEND_NAMES, _output_hw, check_backend, check_method

__all__ = ["BACKENDS", "GPU_BACKENDS", "METHODS", "OPERATIONS", "operation", "Choice",
           "check_backend", "check_method", "choose", "correlate_method", "weight_grad_method", "flops",
           "is_device_array", "run_backend", "correlate", "weight_grad"]


@c_contiguous
def _im2col(x, weight, bias, params, out):
    """The ``im2col`` backend: its sub-pixel phase form or its col2im form, by the model
    (which depends on the workspace limit; the phase form runs as col2im when a tap it
    would use is Inf or NaN, see :func:`~convtranspose.cpu.im2col.run_phases`)."""
    form = _im2col_form(x.shape, weight.shape, params, out.shape, out.dtype)
    return im2col.FORMS[form](x, weight, bias, params, out)


#: name -> run(x, weight, bias, params, out), every one computing into ``out``.
BACKENDS = {"direct": direct.run, "im2col": _im2col}
#: Backends on the GPU, loaded lazily by :func:`run_backend` (not in ``BACKENDS``, so
#: loops over the CPU backends never touch numba.cuda).
GPU_BACKENDS = ("cuda",)

#: The registry: each CPU operation by backend. Every public function, of every rank,
#: runs these through ``ops.py`` (3-D once per depth tap), on the backend named or the one
#: ``auto`` picks (:func:`choose`, :func:`correlate_method`, :func:`weight_grad_method`):
#:
#: * ``"conv_transpose"``: ``run(x, weight, bias, params, out)``, the transposed
#:   convolution (and ``conv2d``'s input gradient);
#: * ``"correlate"``: ``run(x, weight, bias, out, stride, dilation, before, groups)``,
#:   ``conv2d``'s forward (and the transposed convolution's input gradient);
#: * ``"weight_grad"``: ``run(a, b, gw, stride, dilation, before, groups)``, the weight
#:   gradient of either.
OPERATIONS = {
    "conv_transpose": BACKENDS,
    "correlate": {name: functools.partial(cpu_backward.correlate, method=name)
                  for name in BACKENDS},
    "weight_grad": {name: functools.partial(cpu_backward.weight_grad, method=name)
                    for name in BACKENDS},
}


def operation(name, backend):
    """The CPU ``backend``'s kernel entry for operation ``name`` (see :data:`OPERATIONS`).

    Examples
    --------
    >>> from convtranspose import dispatch
    >>> sorted(dispatch.OPERATIONS), sorted(dispatch.OPERATIONS["correlate"])
    (['conv_transpose', 'correlate', 'weight_grad'], ['direct', 'im2col'])
    >>> dispatch.operation("conv_transpose", "direct") is dispatch.BACKENDS["direct"]
    True
    """
    return OPERATIONS[name][backend]

# The cost model. Each backend's time is GEMM or multiply-add work at a rate, plus
# per-element memory traffic, plus fixed costs per loop the kernels run (a row of the
# output, a segment: one multiply-add run along one input row) and per task. Constants
# are one-thread figures fitted to CPU-time measurements on this project's 2-core
# AVX-512 machine (AMD EPYC, Zen 4 class; OpenBLAS 0.3.30 "SkylakeX" kernels in SciPy's
# wheel), float32, with OMP/OPENBLAS/NUMBA threads = 1 (time.thread_time, min of 3-5:
# CPU time is stable while other jobs share the machine). The im2col constants are a
# least-squares fit of log(time) over the 14 suite shapes and 8 more (x_*: s2k3, s1k5,
# s4k8, groups 4, C = 1, s2k2 on 64x64, C_in 256 on 8x8, s3k7); the direct kernel's come
# from the earlier fit and still predict it within ~2x. Data, in ms, torch (oneDNN)
# for scale:
#
#   shape          torch  phases  col2im  direct
#   seed_tiny      0.052   0.020   0.017   0.004
#   seed_shape     0.058   0.025   0.020   0.015
#   dcgan_g1       4.46    1.56    7.83     77.5
#   dcgan_g2      38.2    60.0    55.1    1260
#   dcgan_g3      40.6    68.3    53.8     978
#   dcgan_g4      71.0   100      54.9     540
#   dcgan_g5      25.0   124       7.99     47.4
#   unet_up1      38.6    37.3    40.6     311
#   unet_up4      22.3    23.7    14.8      55.5
#   fcn_up8       28.5    36.7    29.2      62.1
#   depthwise_up  42.5    34.5    16.5      11.3
#   dilated        6.39   10.5     9.01     46.9
#   fsrcnn_up     22.1    53.0     2.39      7.46
#   stride1_big    7.48   13.6     6.40     11.0
#
# Both im2col forms run as parallel tasks, so with two threads all but the direct
# kernel's serial path (below direct.SERIAL_FLOPS) divide by the thread count.
# float64: half the FLOP rates, and the per-element costs scale with the item size.
_RATES = {   # FLOP/s on one thread
    np.dtype(np.float32): dict(direct=16e9, gemm=130e9, col2im_gemm=129e9, phases_gemm=110e9),
    np.dtype(np.float64): dict(direct=8e9, gemm=65e9, col2im_gemm=64e9, phases_gemm=55e9),
}
_GEMM_HALF_M = 16.0        # GEMM rows (output channels of a group) at half efficiency
_GEMM_HALF_K = 24.0        # GEMM inner dimension at half efficiency
_DIRECT_BLOCK4_SPEEDUP = 1.75  # four channels per task: stride1_big 15.9 -> 10.7 ms (1 thread)
_SEGMENT_S = 6e-9          # one multiply-add run along a row (direct kernel)
_ROW_S = 5e-8              # one output row of the direct kernel, plus ...
_ROW_ELEMENT_S = 2e-9      # ... per element of that row (zeroing and storing it)
_COL2IM_ROW_S = 3.8e-8     # one output row gathered by col2im
_COL2IM_SEGMENT_S = 4.4e-9  # one run of products added along it
_GATHER_S = 6.3e-10        # one float32 input pixel gathered by the phase form
_SCATTER_S = 3.2e-10       # one float32 output pixel written by the phase form
_COL2IM_TASK_S = 3.5e-6    # fixed cost of one task (slot views, BLAS call set-up)
_PHASES_TASK_S = 6e-6
_CALL_S = 3e-5             # fixed cost of a GEMM-based call (plans, views, pool wake-up)
_BYTE_S = 1 / 4e9          # seconds per byte moved by the dense 1x1 path's copy


#: The engine form of ``direct`` (cpu/nd_engine.py), one thread, float32: seconds per
#: multiply-add of its tiles (padded to 6 pixels and two vectors of output channels, the
#: border's zeros included), per tile, per element of the input's zero-bordered copy, per
#: element of a channels-first result (the transposing store) and per task: the
#: non-negative least-squares fit of ``scripts/fit_engine_model.py`` (34 layers and
#: layouts, one Zen 4 core with AVX-512, 7 December 2026; within 15% on all but the
#: shallow ``unet_up4``, which it puts 30% low), scaled by :data:`_ENGINE_MACHINE` to the
#: machine the rest of the model was fitted on. float64: twice the multiply-add cost, the
#: element costs scaled by the item size.
_ENGINE_FIT = (2.11e-11, 1.85e-7, 1.09e-9, 1.41e-9, 0.0)
#: Single-thread OpenBLAS float32 GEMM on the engine fit's machine (102 GFLOP/s, Zen 4)
#: against the rate the GEMM forms' constants assume (``_RATES``: 130 GFLOP/s, Zen 3): the
#: engine and the GEMM forms are compared as if on one machine.
_ENGINE_MACHINE = 102e9 / 130e9
_ENGINE = tuple(c * _ENGINE_MACHINE for c in _ENGINE_FIT)


def engine_terms(x_shape, w_shape, params, out_hw, dtype, channels_last=False):
    """What the engine form of ``direct`` does for one 2-D problem, as the model counts
    it: ``[multiply-adds of its tiles, tiles, elements of the input's copy, elements of a
    channels-first result, tasks]`` (from :func:`convtranspose.cpu.nd_engine.plan`)."""
    n, c_in, h, w = x_shape
    c_out_g, groups = w_shape[1], params.groups
    nrt, mr = nd_engine.tile_shape(c_out_g, np.dtype(dtype))
    blocks = -(-c_out_g // nrt)
    p = nd_engine.plan((n, c_in, 1, h, w), (w_shape[0], c_out_g, 1, *w_shape[2:]),
                       (1, *params.stride), ((0, 0), *params.pads), (1, *params.dilation),
                       (n, c_out_g * groups, 1, *out_hw))
    phase = p["phase"]
    tiles = macs = 0
    for i_h in range(p["phases"][1]):
        for i_w in range(p["phases"][2]):
            t = -(-int(n * phase[0, 0, 1] * phase[1, i_h, 1] * phase[2, i_w, 1]) // mr)
            tiles += t
            macs += t * mr * int(phase[0, 0, 4] * phase[1, i_h, 4] * phase[2, i_w, 4])
    tiles *= groups * blocks
    macs *= groups * blocks * nrt * (c_in // groups)
    padded = [size + f + b for size, f, b in zip((1, h, w), p["front"], p["back"])]
    copy = n * math.prod(padded) * c_in
    result = 0 if channels_last else n * c_out_g * groups * math.prod(out_hw)
    tasks = len(nd_engine._tasks(p, n, groups, blocks, max(1, numba.config.NUMBA_NUM_THREADS),
                                 mr))
    return [float(macs), float(tiles), float(copy), float(result), float(tasks)]


def _engine_s(x_shape, w_shape, params, out_hw, dtype, channels_last=False):
    """Estimated one-thread seconds of the engine form, and its task count."""
    terms = engine_terms(x_shape, w_shape, params, out_hw, dtype, channels_last)
    size = np.dtype(dtype).itemsize / 4
    scale = (2.0 if size > 1 else 1.0, 1.0, size, size, 1.0)
    return _CALL_S + sum(t * c * f for t, c, f in zip(terms, _ENGINE, scale)), int(terms[4])


def _balanced(tasks, threads):
    """Factor on work shared by ``threads`` as ``tasks`` equal tasks: the busiest thread
    runs ``ceil(tasks / threads)`` of them, not ``tasks / threads``."""
    return -(-tasks // threads) * threads / tasks if tasks else 1.0


#: Backends of ``conv2d`` and of the gradients: a gather kernel or patches + BLAS GEMM on
#: the CPU, or :mod:`convtranspose.cuda` (the names validation checks,
#: :func:`convtranspose.params.check_backend`).
METHODS = BACKEND_NAMES
assert METHODS == ("auto", *BACKENDS, *GPU_BACKENDS)


#: Multiply-adds per group below which the gather kernel's lower overhead wins.
_SMALL_WORK = 2 ** 20


#: Output pixels (times the process's threads) from which a correlation that ``direct``
#: runs on the engine is cut into enough tasks to keep every thread busy (set for the
#: packing engine that ran correlations before the channels-last one: two of its smallest
#: tasks, 256 pixels, per thread).
_ENGINE_PIXELS_PER_THREAD = 512
#: ... or where an output image has at most this many pixels (see :func:`correlate_method`).
_ENGINE_IMAGE_PIXELS = 16


def _gemm_method(rows, depth, pixels):
    """``"im2col"`` when the GEMM (``rows``, ``depth`` deep, ``pixels`` columns) is large
    enough to beat the gather kernel, else ``"direct"``."""
    big = rows * depth * pixels >= _SMALL_WORK
    return "im2col" if big and rows >= 4 and depth >= 16 else "direct"


def correlate_method(c_out_g, c_in_g, k_hw, pixels, fits=True, images=1):
    """The CPU backend ``"auto"`` runs a correlation with: ``"direct"`` where it runs on
    the channels-last engine (many channels,
    :func:`~convtranspose.cpu.direct.correlation_uses_engine`), one image's buffers
    ``fits`` in the workspace limit (:func:`~convtranspose.cpu.direct.fits`) and the
    output has enough pixels to keep every thread busy or few pixels per image (of
    ``images``: there ``im2col``'s GEMMs, one per image, are all but matrix-vector
    products); else ``"im2col"`` when
    the GEMM (``C_out_g`` rows, ``C_in_g*kH*kW`` deep, ``pixels`` columns) is large enough
    to beat the gather kernel, and ``"direct"`` (the gather kernel) below that.

    The packing GEMM engine that ran these correlations before the channels-last one was
    1.1-2.4x faster than ``im2col`` on the input gradients of the benchmark suite's
    channel-heavy layers (AVX-512, 2 threads), and slower only where the output has too
    few pixels to be cut into a task per thread (``dcgan_g1``); the rule was kept. The
    channels-last engine is faster than ``im2col`` on outputs of at most
    :data:`_ENGINE_IMAGE_PIXELS` pixels per image whatever their count (0.39 against
    7.99 ms for 64 images of one pixel, 128 input and 64 output channels, a 4x4 kernel;
    1.8 against 4.5 ms for ``dcgan_g1``'s input gradient; 2.0 against 3.0 ms for 16
    images of 4x4 pixels, 256 channels in and out, 3x3), and slower on one 8x8 image of
    512 channels in and out (4.1 against 2.9 ms: packing its weight is most of the call).

    Examples
    --------
    >>> from convtranspose.dispatch import correlate_method
    >>> correlate_method(64, 32, (3, 3), 4096), correlate_method(64, 32, (3, 3), 64)
    ('direct', 'im2col')
    >>> correlate_method(64, 32, (3, 3), 64, images=64)
    'direct'
    """
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    if (direct.correlation_uses_engine((c_out_g, c_in_g, *k_hw), 1) and fits
            and (pixels >= _ENGINE_PIXELS_PER_THREAD * threads
                 or pixels <= _ENGINE_IMAGE_PIXELS * max(images, 1))):
        return "direct"
    return _gemm_method(c_out_g, c_in_g * k_hw[0] * k_hw[1], pixels)


def weight_grad_method(c_a_g, c_b_g, k_hw, pixels):
    """The CPU backend ``"auto"`` runs a weight gradient ``(C_a_g, C_b_g*kH*kW)`` per
    group, summed over ``pixels``, with: ``"direct"`` where that runs on the engine (many
    channels, :func:`~convtranspose.cpu.direct.weight_grad_uses_engine`), else
    ``"im2col"`` for large GEMMs and ``"direct"`` (the gather kernel) for small ones.

    The engine was as fast as ``im2col`` or up to 1.7x faster on the weight gradients of
    the benchmark suite's channel-heavy layers (AVX-512, 2 threads).

    Examples
    --------
    >>> from convtranspose.dispatch import weight_grad_method
    >>> weight_grad_method(64, 32, (3, 3), 4096), weight_grad_method(4, 4, (3, 3), 10**6)
    ('direct', 'im2col')
    """
    if direct.weight_grad_uses_engine((c_a_g, c_b_g, *k_hw), 1):
        return "direct"
    return _gemm_method(c_a_g, c_b_g * k_hw[0] * k_hw[1], pixels)


def run_backend(name):
    """The ``run(x, weight, bias, params, out)`` of backend ``name`` (host arrays);
    ``"cuda"`` copies to the GPU and back and is imported only when asked for."""
    if name in GPU_BACKENDS:
        from .cuda import run
        return run
    return operation("conv_transpose", name)


def flops(x_shape, w_shape, groups):
    """Multiply-adds times two of the transposed convolution, as the suite counts them."""
    n, c_in, h, w = (1, *x_shape) if len(x_shape) == 3 else x_shape
    return 2 * n * c_in * w_shape[1] * w_shape[2] * w_shape[3] * h * w


@dataclass(frozen=True)
class Choice:
    """What ``backend="auto"`` picks for one problem, and why; :func:`convtranspose.explain`
    returns it.

    ``str(choice)`` gives a readable summary, one line per field and per estimate.

    Parameters
    ----------
    backend : str
        The backend that runs: ``"direct"``, ``"im2col"`` or ``"cuda"``.
    reason : str
        Why, in words: the estimates compared, or that CUDA arrays run on their GPU.
    estimates : dict of str to float
        Estimated seconds per CPU backend and ``im2col`` form (``"direct"``,
        ``"im2col/phases"``, ``"im2col/col2im"``); empty for CUDA arrays.
    flops : int
        Floating-point operations of the problem (two per multiply-add), as the benchmark
        suite counts them.

    See Also
    --------
    convtranspose.explain : what makes a :class:`Choice`.
    convtranspose.conv_transpose2d : what runs the chosen backend.

    Notes
    -----
    The estimates come from a cost model fitted to one-thread CPU-time measurements on the
    project's machine; they decide between backends and do not predict exact times. The
    choice depends on the problem, the process's ``NUMBA_NUM_THREADS`` and the workspace
    limit, and on nothing else.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> choice = ct.explain(np.empty((8, 64, 64, 64), np.float32),
    ...                     np.empty((64, 1, 4, 4), np.float32), stride=2, padding=1, groups=64)
    >>> choice.backend, sorted(choice.estimates), choice.flops
    ('direct', ['direct', 'im2col/col2im', 'im2col/phases'], 67108864)
    >>> print(str(choice).splitlines()[0])
    backend: direct
    """

    backend: str
    reason: str
    estimates: dict = field(default_factory=dict)   # backend -> estimated seconds
    flops: int = 0

    def __str__(self):
        lines = [f"backend: {self.backend}", f"reason: {self.reason}",
                 f"work: {self.flops / 1e9:.4g} GFLOP"]
        lines += [f"estimate {name}: {sec * 1e3:.4g} ms" for name, sec in self.estimates.items()]
        return "\n".join(lines)


def _gemm_s(m, k, n_cols, rates, rate="gemm"):
    return 2.0 * m * k * n_cols / (rates[rate] * m / (m + _GEMM_HALF_M) * k / (k + _GEMM_HALF_K))


@lru_cache(maxsize=512)
def _forms(x_shape, w_shape, params, out_hw, dtype, limit, channels_last=False):
    """``(seconds that threads share, seconds on one thread)`` of the direct kernel and
    of each im2col form under workspace limit ``limit`` (tuples in; cached, so a layer
    called again pays nothing; ``O(kernel + tasks)``, never a loop over the output)."""
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
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    if direct.uses_engine(w_shape, params):
        t_engine, n_tasks = _engine_s(x_shape, w_shape, params, out_hw, dtype, channels_last)
        t_direct = (t_engine * _balanced(n_tasks, threads), 0.0)
        if direct.engine_image_bytes(x_shape, w_shape, params.stride,
                                     [lo for lo, _ in params.pads], params.dilation,
                                     (n, c_out_g * groups, *out_hw), isz,
                                     channels_last) > limit:
            t_direct = (math.inf, 0.0)      # one image's buffers exceed the limit
    else:
        t_direct = (work / (rates["direct"] * (_DIRECT_BLOCK4_SPEEDUP if block == 4 else 1.0))
                    + rows * row_s + rows * taps_h * c_in_g * k_w * _SEGMENT_S / block)
        t_direct = (0.0, t_direct) if work < direct.SERIAL_FLOPS else (t_direct, 0.0)
    size = isz / 4             # per-element costs were fitted for float32
    tasks, slot = im2col.plan_col2im(x_shape, w_shape, params, out_hw, isz, limit, threads)
    pix = int(((tasks[:, 3] - tasks[:, 2]) * tasks[:, 1]).sum()) * w   # bands share rows
    taps_k = k_h * k_w
    t_col2im = (_balanced(len(tasks), threads) * (
        _CALL_S + len(tasks) * groups * _COL2IM_TASK_S
        + groups * _gemm_s(c_out_g * taps_k, c_in_g, pix, rates, "col2im_gemm")
        + rows * _COL2IM_ROW_S * size + rows * taps_h * k_w * _COL2IM_SEGMENT_S * size), 0.0)
    if threads * slot * isz > limit:    # its smallest task, one output row, exceeds a slot
        t_col2im = (math.inf, 0.0)
    if h == 1 and w == 1 and groups == 1:
        cols = n * c_out * k_h * k_w
        t_phases = (_CALL_S + _gemm_s(c_out * k_h * k_w, c_in, n, rates)
                    + 2 * cols * isz * _BYTE_S, 0.0)
    else:
        plan = im2col.plan_phases(x_shape, w_shape, params, out_hw, isz, limit, threads)
        t = _CALL_S + len(plan.tasks) * groups * _PHASES_TASK_S
        for p_rows, p_cols, taps, x_is_b in plan.meta[:, [2, 3, 4, 6]]:
            pix = n * p_rows * p_cols
            t += groups * _gemm_s(c_out_g, c_in_g * taps, pix, rates, "phases_gemm")
            t += (0 if x_is_b else c_in * taps * pix * _GATHER_S * size)
            t += c_out * pix * _SCATTER_S * size
        t_phases = (float(t) * _balanced(len(plan.tasks), threads), 0.0)
    return work, {"direct": t_direct, "im2col/phases": t_phases, "im2col/col2im": t_col2im}


def _im2col_form(x_shape, w_shape, params, out_shape, dtype):
    """The faster im2col form by the model; the phase form where col2im's smallest task
    (one output row) would exceed the workspace limit (its estimate is then infinite)."""
    _, est = _estimates(x_shape, w_shape, params, dtype, out_shape[-2:],
                        im2col.get_workspace_limit())
    return "phases" if est["im2col/phases"] <= est["im2col/col2im"] else "col2im"


def _estimates(x_shape, w_shape, params, dtype, out_hw, limit, channels_last=False):
    """Estimated seconds per backend (and im2col form) with all of Numba's threads, under
    workspace limit ``limit`` (the im2col tasks, and so their estimates, depend on it).

    The thread count is ``NUMBA_NUM_THREADS``, fixed for the process, not the current
    ``numba.set_num_threads`` value: the choice, and so the summation order and the bits
    of the result, must not change with the number of threads in use.
    """
    work, est = _forms(tuple(x_shape), tuple(w_shape), params, tuple(out_hw), np.dtype(dtype),
                       limit, bool(channels_last))
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    return work, {name: shared / threads + serial for name, (shared, serial) in est.items()}


def choose(x_shape, w_shape, params, dtype, out_hw=None, channels_last=False):
    """Pick a CPU backend for a validated 4-D problem; returns a :class:`Choice`.

    ``out_hw`` is the output's ``(H_out, W_out)``, computed from the shapes when omitted.
    With ``channels_last`` (NHWC operands) every form but the engine pays for copying
    ``x`` to NCHW and the result back, which the estimates add. The choice depends on the
    problem, the process's ``NUMBA_NUM_THREADS`` and the workspace limit in force, and on
    nothing else (not on earlier calls).
    """
    if out_hw is None:
        out_hw = _output_hw(x_shape[2:], w_shape[2:], params)
    return _choose(tuple(x_shape), tuple(w_shape), params, np.dtype(dtype), tuple(out_hw),
                   im2col.get_workspace_limit(), bool(channels_last))


def _copy_s(x_shape, w_shape, params, out_hw, dtype):
    """Seconds to copy ``x`` to channels-first and the result back (read and write each)."""
    elements = math.prod(x_shape) + x_shape[0] * w_shape[1] * params.groups * math.prod(out_hw)
    return 2 * elements * dtype.itemsize * _BYTE_S


@lru_cache(maxsize=512)
def _choose(x_shape, w_shape, params, dtype, out_hw, limit, channels_last=False):
    work, est = _estimates(x_shape, w_shape, params, dtype, out_hw, limit, channels_last)
    if channels_last:
        copy = _copy_s(x_shape, w_shape, params, out_hw, dtype)
        engine = direct.uses_engine(w_shape, params)
        est = {k: v + (0 if engine and k.startswith("direct") else copy) for k, v in est.items()}
    best = min(est, key=est.get)
    others = ", ".join(f"{est[k] * 1e3:.3g} ms for {k}" for k in est if k != best)
    reason = (f"estimated {est[best] * 1e3:.3g} ms for {best} against {others} "
              f"(C_in/groups = {x_shape[1] // params.groups}, W = {x_shape[3]}, "
              f"{numba.config.NUMBA_NUM_THREADS} threads)")
    if math.isinf(est["im2col/col2im"]):
        reason += ("; im2col/col2im is left out: one output row's task exceeds the "
                   "workspace limit")
    return Choice(best.split("/")[0], reason, est, work)


# ----------------------------------------------------------------------------
# the 2-D correlation and weight gradient by name, with PyTorch's NaN rules

def _before(params):
    return params.pad_h[0], params.pad_w[0]


def correlate(x, weight, bias, out, params, method):
    """The correlation of :mod:`convtranspose.cpu.backward` (4-D ``x`` and ``out``) by
    ``method``, with PyTorch's NaN where a padding zero meets a non-finite weight
    (:func:`convtranspose.nonfinite.correlate_nan`). Returns ``out``."""
    operation("correlate", method)(x, weight, bias, out, params.stride, params.dilation,
                                   _before(params), params.groups)
    return nonfinite.correlate_nan(out, weight, x.shape[2:], params.stride, params.dilation,
                                   _before(params))


def weight_grad(a, b, gw, params, method):
    """The weight gradient of :mod:`convtranspose.cpu.backward` (``a`` on the strided
    grid, ``b`` sampled, both 4-D) by ``method``, with PyTorch's NaN where a non-finite
    ``a`` meets a zero read outside ``b`` (:func:`convtranspose.nonfinite.weight_grad_nan`).
    Returns ``gw``."""
    operation("weight_grad", method)(a, b, gw, params.stride, params.dilation,
                                     _before(params), params.groups)
    if method == "direct" and direct.weight_grad_uses_engine(gw.shape, params.groups):
        return gw       # the engine multiplies the zeros read outside ``b`` itself
    return nonfinite.weight_grad_nan(gw, a, b.shape[2:], params.stride, params.dilation,
                                     _before(params))
