"""The ``direct`` backend: a register-blocked engine or a gather kernel, no column matrix.

Two forms, picked from the layer's channels and kernel geometry alone (never from the
batch or the image size, so that an image's result does not depend on them, nor on how
it is cut into tiles; see :func:`uses_engine`):

* layers with many channels per group run on the channels-last engine
  (:mod:`convtranspose.cpu.nd_engine`: the input laid out once into a zero-bordered
  channels-last copy, in batch chunks within the workspace limit, and read in place by
  a register tile per stride phase; a channels-first result is computed channels-last
  and stored transposed);
* the others on the gather kernel: every output row is accumulated by one thread from the
  taps that reach it (see :mod:`convtranspose.cpu.taps`), vectorised along the row.
  Besides the output it allocates only ``O(kW)`` column tables and, per output row (four
  rows with channel blocking), an accumulator of fewer than ``2 * W_out`` elements.

Neither multiplies a weight by an inserted zero where that matters: the engine multiplies
the zeros of its border for taps outside the input, so a layer with an Inf or NaN weight
runs on the gather kernel. Both sum each output element in a fixed order.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .._jit import njit
from .._threading import launch
from . import nd_engine
from .kernels import direct_kernel, direct_kernel_serial
from .layout import c_contiguous
from .taps import col_tables, tap_tables
from .workspace import get_workspace_limit

__all__ = ["run", "run_engine", "run_volume", "volume_uses_engine", "volume_correlation_uses_engine",
           "run_correlation", "engine_image_bytes", "fits", "gather", "uses_engine", "correlation_uses_engine",
           "weight_grad_uses_engine", "phase_taps", "SERIAL_FLOPS", "ENGINE_MIN_ROWS",
           "ENGINE_MIN_DEPTH"]

#: Problems with fewer multiply-adds (times two) than this run on the calling thread:
#: below it, waking the thread pool costs more than the second thread saves.
SERIAL_FLOPS = 200_000

#: The engine runs layers with at least this many output channels per group ...
ENGINE_MIN_ROWS = 8
#: ... and a GEMM depth (input channels per group times the most taps of a phase) of at
#: least this; below either, its padded micro-tile rows or short inner loops lose to the
#: gather kernel.
ENGINE_MIN_DEPTH = 32


def phase_taps(k, s, d):
    """The most kernel taps of one axis that land on one stride phase: taps ``j`` and
    ``j'`` share a phase when ``j*d`` and ``j'*d`` agree modulo ``s``.

    Examples
    --------
    >>> from convtranspose.cpu.direct import phase_taps
    >>> phase_taps(4, 2, 1), phase_taps(3, 1, 2), phase_taps(3, 2, 2)
    (2, 3, 3)
    """
    return int(_phase_taps(k, s, d))


@njit(cache=True, notice=False)
def _phase_taps(k, s, d):
    res = np.sort(np.arange(k) * d % s)
    most = run = 1
    for j in range(1, k):
        run = run + 1 if res[j] == res[j - 1] else 1
        most = max(most, run)
    return most


@njit(cache=True, notice=False)
def engine_rule(c_out_g, depth):
    """The engine's thresholds (:func:`uses_engine`, :func:`correlation_uses_engine`):
    ``c_out_g`` output channels per group, a GEMM ``depth`` (input channels per group
    times the most taps of a phase); callable from ``@njit`` code."""
    return c_out_g >= ENGINE_MIN_ROWS and depth >= ENGINE_MIN_DEPTH


@lru_cache(maxsize=256)       # asked on every call: a few microseconds of a tiny one
def uses_engine(w_shape, params):
    """Whether ``direct`` runs the engine (else the gather kernel) for a weight of shape
    ``w_shape`` ``(C_in, C_out // groups, *kernel)`` (any rank): enough output channels per group to
    fill the micro-tile's rows and a deep enough GEMM. Depends on nothing else.

    Examples
    --------
    >>> from convtranspose.cpu.direct import uses_engine
    >>> from convtranspose.params import normalise
    >>> import numpy as np
    >>> params = normalise((1, 512, 4, 4), (512, 256, 4, 4), None, [np.dtype("f4")] * 2,
    ...                    stride=2, padding=1)[0]
    >>> uses_engine((512, 256, 4, 4), params), uses_engine((64, 3, 4, 4), params)
    (True, False)
    """
    c_in_g = w_shape[0] // params.groups
    taps = math.prod(phase_taps(k, s, d)
                     for k, s, d in zip(w_shape[2:], params.stride, params.dilation))
    return engine_rule(w_shape[1], c_in_g * taps)


def correlation_uses_engine(w_shape, groups):
    """Whether ``direct`` runs a correlation (``conv2d``, an input gradient) with weight
    shape ``w_shape`` ``(C_out, C_in // groups, *kernel)`` (any rank) on the engine: the same
    thresholds as :func:`uses_engine`, every tap in one phase.

    Examples
    --------
    >>> from convtranspose.cpu.direct import correlation_uses_engine
    >>> correlation_uses_engine((64, 16, 3, 3), 1), correlation_uses_engine((3, 64, 4, 4), 1)
    (True, False)
    """
    c_out, c_in_g, *kernel = w_shape
    return engine_rule(c_out // groups, c_in_g * math.prod(kernel))


def weight_grad_uses_engine(gw_shape, groups):
    """Whether ``direct`` computes a weight gradient of shape ``gw_shape`` ``(C_a,
    C_b // groups, kH, kW)`` on the engine: at least :data:`ENGINE_MIN_ROWS` rows
    (``C_a // groups``) and :data:`ENGINE_MIN_DEPTH` columns (``C_b_g*kH*kW``) per group
    (its depth is the pixels, never short).

    Examples
    --------
    >>> from convtranspose.cpu.direct import weight_grad_uses_engine
    >>> weight_grad_uses_engine((64, 3, 4, 4), 1), weight_grad_uses_engine((64, 1, 4, 4), 64)
    (True, False)
    """
    c_a, c_b_g, k_h, k_w = gw_shape
    return c_a // groups >= ENGINE_MIN_ROWS and c_b_g * k_h * k_w >= ENGINE_MIN_DEPTH


@c_contiguous
def gather(x, weight, bias, params, out):
    """The gather kernel into ``out``; all arrays 4-D, of one native float dtype, ``weight``
    and ``bias`` C-contiguous (``x`` and ``out`` are copied when they are not)."""
    t = tap_tables(x.shape[2:], weight.shape[2:], out.shape[2:], params)
    bias = np.empty(0, out.dtype) if bias is None else bias
    work = 2 * x.size * weight.shape[1] * weight.shape[2] * weight.shape[3]
    kernel = direct_kernel_serial if work < SERIAL_FLOPS else direct_kernel
    launch(kernel, x, weight, bias, out, *t, params.groups)
    return out


@njit(cache=True, notice=False)
def gather_jit(x, weight, bias, out, sh, sw, dh, dw, top, left, groups):
    """:func:`gather` from ``@njit`` code: C-contiguous 4-D ``x``, ``weight``, ``out`` of
    one float dtype, ``bias`` ``(C_out,)`` or empty; the column tables of
    :func:`~convtranspose.cpu.taps.col_tables`, the kernel on the calling thread below
    :data:`SERIAL_FLOPS` as :func:`gather` picks it (both give the same result)."""
    lo, hi, phase, q0, phases, q_len = col_tables(out.shape[3], x.shape[3], weight.shape[3],
                                                  sw, dw, left)
    work = 2 * x.size * weight.shape[1] * weight.shape[2] * weight.shape[3]
    if work < SERIAL_FLOPS:
        direct_kernel_serial(x, weight, bias, out, sh, dh, top, lo, hi, phase, q0, phases,
                             q_len, groups)
    else:
        direct_kernel(x, weight, bias, out, sh, dh, top, lo, hi, phase, q0, phases, q_len,
                      groups)


def run_engine(x, weight, bias, params, out):
    """The engine into ``out`` (4-D, 2-D as unit depth), or the gather kernel where a
    weight is Inf or NaN."""
    if not nd_engine.supported(weight):
        return gather(x, weight, bias, params, out)
    deep = (slice(None), slice(None), None)
    nd_engine.conv_transpose(x[deep], weight[deep], bias, (1, *params.stride),
                             ((0, 0), *params.pads), (1, *params.dilation), params.groups,
                             out[deep], False, limit=get_workspace_limit())
    return out


#: Bytes of one channels-first 3-D result image from which ``auto`` keeps the loop of
#: 2-D calls per depth tap: the engine computes such a result channels-last and
#: transposes it, a pass that no longer runs in cache. Measured, 2 threads, float32, Zen 4
#: (ms, engine against the tap loop): 3-D U-Net up-convolution 64->32, 32^3 -> 64^3 (32 MiB
#: per image) 30.8 against 20.6; V-Net 128->64, 16^3 -> 32^3 (8 MiB) 6.6 against 8.3;
#: 64->32, 16^3 -> 32^3 (4 MiB) 2.1 against 3.3; channels-last, the engine 1.1-1.7x faster.
VOLUME_TRANSPOSE_BYTES = 16 * 2**20


def volume_uses_engine(x_shape, w_shape, params, out_shape, itemsize, channels_last,
                       method="direct"):
    """Whether the 3-D transposed convolution with a weight of shape ``w_shape`` into a
    result of ``out_shape`` (channels-first order) runs on the engine as one problem (else
    as 2-D problems per depth tap): :func:`uses_engine`, and for ``method="auto"`` also
    a channels-last result or one whose images are below
    :data:`VOLUME_TRANSPOSE_BYTES`, and one image's buffers within the workspace limit
    (:func:`fits`). Shapes only (``x_shape`` channels-first): an Inf or NaN weight still
    runs per depth tap (:func:`convtranspose.cpu.nd_engine.supported`).

    Examples
    --------
    >>> from convtranspose.cpu.direct import volume_uses_engine
    >>> from convtranspose.params import normalise
    >>> import numpy as np
    >>> params = normalise((1, 64, 32, 32, 32), (64, 32, 2, 2, 2), None,
    ...                    [np.dtype("f4")] * 2, stride=2, rank=3)[0]
    >>> [volume_uses_engine((1, 64, 32, 32, 32), (64, 32, 2, 2, 2), params,
    ...                     (1, 32, 64, 64, 64), 4, last, m)
    ...  for last, m in ((False, "direct"), (False, "auto"), (True, "auto"))]
    [True, False, True]
    """
    return uses_engine(tuple(w_shape), params) and _volume_auto_ok(
        x_shape, w_shape, params, out_shape, itemsize, channels_last, method, False)


def volume_correlation_uses_engine(x_shape, w_shape, params, out_shape, itemsize,
                                   channels_last, method="direct"):
    """:func:`volume_uses_engine` for the 3-D correlation (``conv3d``'s forward) with a
    weight of shape ``w_shape`` ``(C_out, C_in // groups, kD, kH, kW)``:
    :func:`correlation_uses_engine`, and for ``auto`` the same rules."""
    return correlation_uses_engine(tuple(w_shape), params.groups) and _volume_auto_ok(
        x_shape, w_shape, params, out_shape, itemsize, channels_last, method, True)


def _volume_auto_ok(x_shape, w_shape, params, out_shape, itemsize, channels_last, method,
                    correlation):
    if method == "direct":
        return True
    small = channels_last or itemsize * math.prod(out_shape[1:]) < VOLUME_TRANSPOSE_BYTES
    return small and fits(engine_image_bytes(
        x_shape, w_shape, params.stride, [lo for lo, _ in params.pads], params.dilation,
        out_shape, itemsize, channels_last, correlation))


def correlation_fits(x, weight, params, out, itemsize, channels_last):
    """Whether one image of the correlation of ``x`` into ``out`` (arrays indexed
    channels-first, batched or not) fits the engine's buffers in the workspace limit, with
    results of ``itemsize`` bytes (``channels_last``: channels-last memory): ``auto`` runs
    the engine only then."""
    x_shape, out_shape = (x.shape, out.shape) if x.ndim == 4 else ((1, *x.shape),
                                                                   (1, *out.shape))
    return fits(engine_image_bytes(
        x_shape, weight.shape, params.stride, [lo for lo, _ in params.pads], params.dilation,
        out_shape, itemsize, channels_last, correlation=True))


def fits(image_bytes):
    """Whether the engine's buffers for one image (:func:`engine_image_bytes`) fit in the
    workspace limit: ``auto`` runs the engine only then (``direct`` takes one image at
    least, whatever the limit)."""
    return image_bytes <= get_workspace_limit()


def run_volume(x, weight, bias, params, out):
    """The engine into ``out`` for 3-D ``params``, all arrays 5-D in any dense layouts;
    finite weights only (:func:`convtranspose.cpu.nd_engine.supported`). Batch chunks
    within the workspace limit; returns ``out``."""
    return nd_engine.conv_transpose(x, weight, bias, params.stride, params.pads,
                                    params.dilation, params.groups, out, False,
                                    limit=get_workspace_limit())


def engine_image_bytes(x_shape, w_shape, stride, before, dilation, out_shape, itemsize,
                       channels_last, correlation=False):
    """Bytes the engine holds for one image (shapes channels-first, 4-D or 5-D; ``before``
    the padding before each spatial axis): its zero-bordered input copy, and for a
    channels-first result that result's channels-last form. The engine takes at least one
    image whatever the workspace limit, so ``auto`` runs it only where this fits.

    Examples
    --------
    >>> from convtranspose.cpu.direct import engine_image_bytes
    >>> engine_image_bytes((1, 8, 4, 4), (8, 8, 3, 3), (1, 1), (1, 1), (1, 1),
    ...                    (1, 8, 4, 4), 4, True)   # a 6 x 11 x 8 float32 copy
    2112
    """
    lift = 5 - len(x_shape)
    one = (1,) * lift
    x5 = (1, x_shape[1], *one, *x_shape[2:])
    o5 = (1, out_shape[1], *one, *out_shape[2:])
    w5 = (*w_shape[:2], *one, *w_shape[2:])
    copy = nd_engine.image_bytes(x5, w5, (*one, *stride), tuple((b, 0) for b in
                                                                 (*(0,) * lift, *before)),
                                 (*one, *dilation), o5, itemsize, correlation)
    return int(copy) + (0 if channels_last else itemsize * math.prod(o5[1:]))


def run_correlation(x, weight, bias, out, stride, dilation, before, groups):
    """The correlation (``conv2d``/``conv3d``'s forward, a transposed convolution's input
    gradient) on the engine into ``out``: ``x``, ``weight`` and ``out`` all 4-D (2-D, as
    unit depth) or all 5-D, ``before`` the padding before each spatial axis; any dense
    layouts, any weights (the padding's zeros are multiplied, as PyTorch's convolutions
    do). Batch chunks within the workspace limit; returns ``out``."""
    if x.ndim == 4:
        deep = (slice(None), slice(None), None)
        run_correlation(x[deep], weight[deep], bias, out[deep], (1, *stride), (1, *dilation),
                        (0, *before), groups)
        return out
    return nd_engine.correlate(x, weight, bias, tuple(stride), tuple((b, 0) for b in before),
                               tuple(dilation), groups, out, False,
                               limit=get_workspace_limit())


def run(x, weight, bias, params, out):
    """Compute into ``out`` with the form :func:`uses_engine` picks; all arrays 4-D, of one
    native float dtype, ``weight`` and ``bias`` C-contiguous, ``x`` and ``out`` in any
    dense layout (the engine reads channels-last in place, the gather kernel a copy)."""
    if uses_engine(weight.shape, params):
        return run_engine(x, weight, bias, params, out)
    return gather(x, weight, bias, params, out)
