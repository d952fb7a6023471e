"""The operations and their gradients callable from the user's own ``@njit`` code.

Importing :mod:`convtranspose` registers :func:`numba.extending.overload` implementations
of :func:`convtranspose.conv_transpose1d`, :func:`~convtranspose.conv_transpose2d`,
:func:`~convtranspose.conv_transpose3d`, :func:`~convtranspose.conv1d`,
:func:`~convtranspose.conv2d` and :func:`~convtranspose.conv3d`, of their gradients
(:func:`~convtranspose.conv_transpose2d_backward`, :func:`~convtranspose.conv2d_backward`
and those of the other ranks), and of :func:`~convtranspose.output_shape` for every rank
(shapes as tuples of ints, the same result and ``ValueError`` as from Python). Inside a jitted function they take the public functions' arguments,
names and defaults:

* ``x``, ``weight``, ``bias`` (or ``None``): float32, float64, complex64 or complex128
  arrays, any strides; the result's dtype promotes as from Python (float64 when a part of
  one of them is, complex when one of them is); a complex call runs as from Python, as the
  real call of Gauss's three products between the compiled passes of
  :mod:`convtranspose.cpu.pairs`; half precision stays out (Numba cannot type float16 or
  bfloat16 arrays; their ``uint16`` bits are refused with a typing error);
* ``stride``, ``output_padding``, ``dilation``: an int or a tuple of one int per spatial
  dimension; ``padding``: an int, a tuple of ints, a tuple of ``(before, after)`` pairs,
  or the string constant ``"same"`` or ``"valid"`` (any case; the rule of
  :func:`convtranspose.params._same_split`, compiled); ``groups`` an int;
  ``output_size`` (the transposed convolutions and ``output_shape``, with any padding): a
  tuple of the spatial sizes or of the result's whole shape in the call's layout;
* ``data_format`` and ``backend``: string constants. ``backend`` is ``"direct"`` or
  ``"auto"``, and ``"auto"`` means ``"direct"`` here (``auto``'s calibrated choice reads
  the workspace limit and timing tables that jitted code cannot see); ``"im2col"`` and
  ``"cuda"`` are refused with a typing error;
* ``out=`` (the transposed convolutions): an array of the result's shape and dtype,
  filled and returned;
* ``grad_output`` (the gradients): of those dtypes, of the forward result's shape (else
  ``ValueError`` naming it); ``needs_input_grad``, ``needs_weight_grad`` and
  ``needs_bias_grad`` are constants (``True`` or ``False`` in the call: they decide the
  result's type), and a gradient not asked for is ``None``.

The result is bitwise equal to the same call from Python with ``backend="direct"``, of
the same dtype and layout: the same kernels (the channels-last engine or the gather
kernels, in 3-D off the engine one 2-D problem per depth tap added in the same order; for
the weight gradient the register-blocked GEMM engine or the gather kernel, per depth tap),
picked by the same rules from the same tables (:func:`convtranspose.depth.tap_run` too):
:func:`~convtranspose.cpu.nd_engine.plan_tables`, :func:`~convtranspose.cpu.nd_engine.pack`,
:func:`~convtranspose.cpu.nd_engine.task_table`, :func:`~convtranspose.cpu.taps.
col_tables`, :func:`~convtranspose.cpu.deconv.plan_table`,
:func:`~convtranspose.nonfinite.nan_mask`, :func:`~convtranspose.nonfinite.
weight_grad_mask`, and the bias gradient's :func:`~convtranspose.cpu.backward.
channel_sums`), which sum every output element in an order that depends on neither the
batch nor the threads. Two differences in how, not
what: the whole batch is one chunk (the workspace limit, a Python-level setting, does not
apply: the engine's zero-bordered input copy holds every image), and a channels-first
engine result is written in place through its strides.

The user's function checks the arguments and allocates the result itself, then calls a
compiled entry per operation and dtype (a ``numba.cfunc`` with a disk cache,
:func:`entry`) through its address, so the kernels are not linked into every function
that calls them: compiling such a function costs about a second more than without the
call once the entries are in Numba's cache (linked in, it took about ten). Numba does not
disk-cache a function that holds such an address, so ``cache=True`` on the user's function
warns and compiles it in every process.

Bad values raise ``ValueError`` naming the argument when the call runs (the subset of
:mod:`convtranspose.params`'s rules that numbers need: ranges of the hyper-parameters,
channels, groups, bias, output sizes, ``out``'s shape); bad types and constants are typing
errors naming the argument when the function compiles.

Examples
--------
>>> import numba
>>> import numpy as np
>>> import convtranspose as ct
>>> @numba.njit
... def up(x, w):
...     return ct.conv_transpose2d(x, w, stride=2, padding=1)
>>> x = np.ones((1, 2, 3, 3), np.float32)
>>> w = np.ones((2, 1, 4, 4), np.float32)
>>> np.array_equal(up(x, w), ct.conv_transpose2d(x, w, stride=2, padding=1,
...                                              backend="direct"))
True
"""
from __future__ import annotations

import threading

import numba
import numpy as np
from numba import carray, types
from numba.core.errors import TypingError
from numba.extending import overload
from numba.np.ufunc.parallel import _launch_threads

from ._jit import disk_cache, njit
from .api import conv_transpose2d
from .conv import conv2d, conv2d_backward
from .grad import conv_transpose2d_backward
from .cpu import backward, deconv, direct, nd_engine, pairs
from .nonfinite import nan_mask, weight_grad_mask
from .params import (BAD_DILATION, BAD_GROUPS, BAD_OUTPUT_PADDING, BAD_PADDING, BAD_STRIDE,
                     DATA_FORMATS, OK, WIDE_OUTPUT_PADDING, _conv_size, _padding_word,
                     _same_extra, _same_split, _spatial_out, output_shape, range_fault)
from .rank1 import conv1d, conv1d_backward, conv_transpose1d, conv_transpose1d_backward
from .depth import tap_run
from .rank3 import conv3d, conv3d_backward, conv_transpose3d, conv_transpose3d_backward

__all__ = ["BACKENDS", "entry", "transposed_shape", "conv_shape", "conv_transpose_into",
           "conv_into"]

#: The ``backend`` values jitted code takes (``"auto"`` means ``"direct"`` there).
BACKENDS = ("direct", "auto")

_out_size = njit(cache=True, notice=False)(_spatial_out)
_in_size = njit(cache=True, notice=False)(_conv_size)
_same_split_jit = njit(cache=True, notice=False)(_same_split)
_tap_run = njit(cache=True, notice=False)(tap_run)
_same_extra_jit = njit(cache=True, notice=False)(_same_extra)
_wg_engine = njit(cache=True, notice=False)(direct.weight_grad_uses_engine)


# ----------------------------------------------------------------------------
# the checks of numbers, when the call runs

_range_fault = njit(cache=True, notice=False)(range_fault)


@njit(cache=True, notice=False)
def _check_params(stride, pads, output_padding, dilation, groups):
    """``ValueError`` for the first rule of :func:`convtranspose.params.range_fault` the
    numbers break (the same rules, compiled), worded for one dimension."""
    fault, a = _range_fault(stride, pads, output_padding, dilation, groups)
    if fault == OK:
        return
    if fault == BAD_STRIDE:
        raise ValueError("stride must be >= 1 in each dimension, got " + str(stride[a]))
    if fault == BAD_DILATION:
        raise ValueError("dilation must be >= 1 in each dimension, got " + str(dilation[a]))
    if fault == BAD_PADDING:
        raise ValueError("padding must be >= 0, got " + str(min(pads[a, 0], pads[a, 1])))
    if fault == BAD_OUTPUT_PADDING:
        raise ValueError("output_padding must be >= 0, got " + str(output_padding[a]))
    if fault == BAD_GROUPS:
        raise ValueError("groups must be >= 1, got " + str(groups))
    if fault == WIDE_OUTPUT_PADDING:
        raise ValueError("output_padding " + str(output_padding[a]) + " must be smaller "
                         "than stride (" + str(stride[a]) + ") or dilation ("
                         + str(dilation[a]) + ") in each dimension")
    raise ValueError("stride, dilation and padding must be at most 2**31 - 1 in each "
                     "dimension")


@njit(cache=True, notice=False)
def _check_sizes(x_shape, w_shape):
    for a in range(5):
        if w_shape[a] < 1:
            raise ValueError("weight must have a non-zero size in every dimension")
    for a in range(2, 5):
        if x_shape[a] < 1:
            raise ValueError("x must have a non-zero size in every spatial dimension")


@njit(cache=True, notice=False)
def _check_bias(bias_len, c_out):
    if bias_len >= 0 and bias_len != c_out:
        raise ValueError("bias must have shape (C_out,) = (" + str(c_out) + ",), got ("
                         + str(bias_len) + ",)")


@njit(cache=True, notice=False)
def _shape(a):
    """``a.shape`` as an ``int64`` array."""
    return np.array(a.shape, np.int64)


@njit(cache=True, notice=False)
def _layout_shape(a, last):
    """``a``'s 5-D shape in the order ``(N, C, D, H, W)``."""
    s = np.array(a.shape, np.int64)
    if last:
        return np.array((s[0], s[4], s[1], s[2], s[3]), np.int64)
    return s


@njit(cache=True, notice=False)
def _strides(shape, last):
    """Element strides, in the order ``(N, C, D, H, W)``, of C-contiguous memory of
    ``shape`` (``(N, C, D, H, W)``): channels-first, or with ``last`` channels-last."""
    c, d, h, w = shape[1], shape[2], shape[3], shape[4]
    if last:
        return np.array((d * h * w * c, 1, h * w * c, w * c, c), np.int64)
    return np.array((c * d * h * w, d * h * w, h * w, w, 1), np.int64)


@njit(cache=True, notice=False)
def _new_result(shape, dtype_of, last):
    if last:
        return np.empty((shape[0], shape[2], shape[3], shape[4], shape[1]), dtype_of.dtype)
    return np.empty((shape[0], shape[1], shape[2], shape[3], shape[4]), dtype_of.dtype)


@njit(cache=True, notice=False)
def _channels_first4(x5, last):
    """A C-contiguous channels-first 4-D copy or view ``(N, C, H, W)`` of a unit-depth
    5-D array."""
    if last:
        return np.ascontiguousarray(x5[:, 0].transpose(0, 3, 1, 2))
    return x5.reshape((x5.shape[0], x5.shape[1], x5.shape[3], x5.shape[4]))


@njit(cache=True, notice=False)
def _place(out5, o4, last):
    """``out5`` (5-D, unit depth, in its layout) = the channels-first 4-D ``o4``."""
    n, c, h, w = o4.shape
    for i in range(n):
        for j in range(c):
            for y in range(h):
                for x in range(w):
                    if last:
                        out5[i, 0, y, x, j] = o4[i, j, y, x]
                    else:
                        out5[i, j, 0, y, x] = o4[i, j, y, x]


# ----------------------------------------------------------------------------
# the operations on canonical operands

@njit(cache=True, notice=False)
def transposed_shape(x_shape, w_shape, bias_len, stride, pads, output_padding, dilation,
                     groups):
    """The result's shape ``(N, C_out, D, H, W)`` of the transposed convolution of an
    input of shape ``x_shape`` ``(N, C_in, D, H, W)`` with a weight of shape ``w_shape``
    ``(C_in, C_out // groups, kD, kH, kW)`` (rank 1 and 2 as unit depth and height), a
    bias of ``bias_len`` (-1 for none); ``stride``, ``output_padding``, ``dilation``
    ``int64`` arrays of 3, ``pads`` ``(3, 2)``. ``ValueError`` naming the argument for a
    bad number."""
    _check_params(stride, pads, output_padding, dilation, groups)
    _check_sizes(x_shape, w_shape)
    c_in = x_shape[1]
    if c_in != w_shape[0]:
        raise ValueError("x has " + str(c_in) + " input channels but weight expects C_in = "
                         + str(w_shape[0]))
    if c_in % groups:
        raise ValueError("input channels C_in = " + str(c_in)
                         + " must be divisible by groups = " + str(groups))
    c_out = w_shape[1] * groups
    _check_bias(bias_len, c_out)
    o_shape = np.empty(5, np.int64)
    o_shape[0], o_shape[1] = x_shape[0], c_out
    for a in range(3):
        o_shape[2 + a] = _out_size(x_shape[2 + a], w_shape[2 + a], stride[a],
                                   (pads[a, 0], pads[a, 1]), output_padding[a], dilation[a])
        if o_shape[2 + a] < 1:
            raise ValueError("the output size must be >= 1 in each dimension, got "
                             + str(o_shape[2 + a]))
    return o_shape


@njit(cache=True, notice=False)
def conv_shape(x_shape, w_shape, bias_len, stride, pads, dilation, groups):
    """:func:`transposed_shape` for the convolution, ``w_shape`` ``(C_out, C_in //
    groups, kD, kH, kW)``."""
    _check_params(stride, pads, np.zeros(3, np.int64), dilation, groups)
    _check_sizes(x_shape, w_shape)
    c_out = w_shape[0]
    if c_out % groups:
        raise ValueError("output channels C_out = " + str(c_out)
                         + " must be divisible by groups = " + str(groups))
    if x_shape[1] != w_shape[1] * groups:
        raise ValueError("x has " + str(x_shape[1]) + " input channels but weight with groups"
                         " = " + str(groups) + " expects C_in = " + str(w_shape[1] * groups))
    _check_bias(bias_len, c_out)
    o_shape = np.empty(5, np.int64)
    o_shape[0], o_shape[1] = x_shape[0], c_out
    for a in range(3):
        o_shape[2 + a] = _in_size(x_shape[2 + a], w_shape[2 + a], stride[a],
                                  (pads[a, 0], pads[a, 1]), dilation[a])
        if o_shape[2 + a] < 1:
            raise ValueError("the output size must be >= 1 in each dimension: the padded "
                             "input is smaller than the dilated kernel")
    return o_shape


@njit(cache=True, notice=False)
def conv_transpose_into(x5, w5, b, out, stride, pads, dilation, groups, last, volume):
    """``out`` = the transposed convolution of ``x5`` with ``w5`` (checked by
    :func:`transposed_shape`): 5-D C-contiguous arrays of one float dtype, ``x5`` and
    ``out`` channels-first or with ``last`` channels-last in memory, ``b`` ``(C_out,)`` or
    empty; ``backend="direct"``'s choice between the engine and the gather kernel, and for
    a ``volume`` (a 3-D call) that the engine does not take whole, one 2-D problem per
    depth tap added into the output's slices in tap order, as
    :func:`convtranspose.depth.scatter`."""
    if out.size == 0:
        return
    if not volume:
        _transpose_plane(x5, w5, b, out, stride, pads, dilation, groups, last)
    elif not _engine_transposes(x5, w5, b, out, stride, pads, dilation, groups, last):
        _depth_taps_into(x5, w5, b, out, stride, pads, dilation, groups, last, False)


@njit(cache=True, notice=False)
def _depth_taps_into(x5, w5, b, out, stride, pads, dilation, groups, last, correlation):
    """A 3-D problem as one 2-D problem per depth tap (of unit-depth 5-D arrays), each
    added into the output's depth slices in tap order, after the bias: the order of
    :func:`convtranspose.depth.scatter` and ``_taps_correlate``."""
    x_shape = _layout_shape(x5, last)
    o_shape = _layout_shape(out, last)
    n, c_in, c_out = x_shape[0], x_shape[1], o_shape[1]
    for i in range(n):
        for co in range(c_out):
            v = b[co] if b.size else 0.0
            for z in range(o_shape[2]):
                for y in range(o_shape[3]):
                    for x in range(o_shape[4]):
                        if last:
                            out[i, z, y, x, co] = v
                        else:
                            out[i, co, z, y, x] = v
    s1 = np.array((1, stride[1], stride[2]), np.int64)
    d1 = np.array((1, dilation[1], dilation[2]), np.int64)
    p1 = pads.copy()
    p1[0, 0] = 0
    p1[0, 1] = 0
    empty = np.empty(0, x5.dtype)
    small, large = (x_shape[2], o_shape[2]) if not correlation else (o_shape[2], x_shape[2])
    for t in range(w5.shape[2]):
        i0, i1, o0 = _tap_run(t, small, large, stride[0], dilation[0], pads[0, 0])
        if i1 <= i0:
            continue
        j = i1 - i0
        # the 2-D problem: images (n, slice) of the linked slices, channels-first
        src0, src_step = (i0, 1) if not correlation else (o0, stride[0])
        x4 = _depth_images(x5, src0, src_step, j, last)
        x4 = x4.reshape((n * j, c_in, 1, x_shape[3], x_shape[4]))
        w4 = np.ascontiguousarray(w5[:, :, t:t + 1])
        y4 = np.empty((n * j, c_out, 1, o_shape[3], o_shape[4]), x5.dtype)
        if correlation:
            _correlate_plane(x4, w4, empty, y4, s1, p1, d1, groups, False)
        else:
            _transpose_plane(x4, w4, empty, y4, s1, p1, d1, groups, False)
        dst0, dst_step = (o0, stride[0]) if not correlation else (i0, 1)
        for i in range(n):
            for q in range(j):
                zd = dst0 + q * dst_step
                for co in range(c_out):
                    for y in range(o_shape[3]):
                        for x in range(o_shape[4]):
                            if last:
                                out[i, zd, y, x, co] += y4[i * j + q, co, 0, y, x]
                            else:
                                out[i, co, zd, y, x] += y4[i * j + q, co, 0, y, x]


@njit(cache=True, notice=False)
def _depth_images(a5, start, step, count, last):
    """Depth slices ``start, start + step, ...`` (``count`` of them) of every image of
    ``a5`` (5-D, in its layout) as a C-contiguous channels-first batch of 2-D images
    ``(N*count, C, H, W)``, image by image (``n``, then the slice): the images
    :class:`convtranspose.depth._Runs` gives (a view where ``a5`` is already that)."""
    shape = _layout_shape(a5, last)
    n, c, h, w = shape[0], shape[1], shape[3], shape[4]
    if not last and shape[2] == 1 and count == 1:
        return a5.reshape((n, c, h, w))
    out = np.empty((n * count, c, h, w), a5.dtype)
    for i in range(n):
        for q in range(count):
            z = start + q * step
            for ch in range(c):
                for y in range(h):
                    for x in range(w):
                        out[i * count + q, ch, y, x] = a5[i, z, y, x, ch] if last else \
                            a5[i, ch, z, y, x]
    return out


@njit(cache=True, notice=False)
def _engine_transposes(x5, w5, b, out, stride, pads, dilation, groups, last):
    """Run the transposed convolution on the engine where ``direct`` would (many channels
    per group, a deep enough GEMM, finite weights); whether it did."""
    x_shape = _layout_shape(x5, last)
    w_shape = _shape(w5)
    taps = 1
    for a in range(3):
        taps *= direct._phase_taps(w_shape[2 + a], stride[a], dilation[a])
    if not (direct.engine_rule(w_shape[1], (x_shape[1] // groups) * taps) and
            np.isfinite(w5).all()):
        return False
    o_shape = _layout_shape(out, last)
    nd_engine.run_jit(x5.ravel(), x_shape, _strides(x_shape, last), w5, b, out.ravel(),
                      o_shape, _strides(o_shape, last), stride, pads, dilation, groups, False)
    return True


@njit(cache=True, notice=False)
def _transpose_plane(x5, w5, b, out, stride, pads, dilation, groups, last):
    """:func:`conv_transpose_into` of a unit-depth problem."""
    if _engine_transposes(x5, w5, b, out, stride, pads, dilation, groups, last):
        return
    o_shape = _layout_shape(out, last)
    w_shape = _shape(w5)
    o4 = _plane_result(out, o_shape, last)
    w4 = w5.reshape((w_shape[0], w_shape[1], w_shape[3], w_shape[4]))
    direct.gather_jit(_channels_first4(x5, last), w4, b, o4, stride[1], stride[2],
                      dilation[1], dilation[2], pads[1, 0], pads[2, 0], groups)
    if last:
        _place(out, o4, last)


@njit(cache=True, notice=False)
def _plane_result(out, o_shape, last):
    """Where a gather kernel writes a unit-depth result: ``out`` itself as 4-D
    (channels-first C-contiguous memory), or a channels-first buffer to place from."""
    if last:
        return np.empty((o_shape[0], o_shape[1], o_shape[3], o_shape[4]), out.dtype)
    return out.reshape((o_shape[0], o_shape[1], o_shape[3], o_shape[4]))


@njit(cache=True, notice=False)
def conv_into(x5, w5, b, out, stride, pads, dilation, groups, last, volume):
    """:func:`conv_transpose_into` for the convolution (checked by :func:`conv_shape`),
    with PyTorch's NaN where a padding zero meets a non-finite weight (in 3-D off the
    engine, one 2-D correlation per depth tap, each with its NaN rule, then the volume's,
    as :func:`convtranspose.depth.correlate`)."""
    if out.size == 0:
        return
    w_shape = _shape(w5)
    if not volume or direct.engine_rule(
            w_shape[0] // groups, w_shape[1] * w_shape[2] * w_shape[3] * w_shape[4]):
        _correlate_plane(x5, w5, b, out, stride, pads, dilation, groups, last)
        return
    _depth_taps_into(x5, w5, b, out, stride, pads, dilation, groups, last, True)
    _correlation_nan(x5, w5, out, stride, pads, dilation, last)


@njit(cache=True, notice=False)
def _correlate_plane(x5, w5, b, out, stride, pads, dilation, groups, last):
    """:func:`conv_into` on the engine (any depth) or, for a unit-depth problem, the
    gather kernel, with the NaN rule."""
    x_shape = _layout_shape(x5, last)
    o_shape = _layout_shape(out, last)
    w_shape = _shape(w5)
    c_out = w_shape[0]
    if direct.engine_rule(c_out // groups, w_shape[1] * w_shape[2] * w_shape[3] * w_shape[4]):
        nd_engine.run_jit(x5.ravel(), x_shape, _strides(x_shape, last), w5, b, out.ravel(),
                          o_shape, _strides(o_shape, last), stride, pads, dilation, groups,
                          True)
    else:
        o4 = _plane_result(out, o_shape, last)
        w4 = w5.reshape((w_shape[0], w_shape[1], w_shape[3], w_shape[4]))
        backward.correlate_kernel(_channels_first4(x5, last), w4, b, o4, stride[1],
                                  stride[2], dilation[1], dilation[2], pads[1, 0],
                                  pads[2, 0], groups)
        if last:
            _place(out, o4, last)
    _correlation_nan(x5, w5, out, stride, pads, dilation, last)


@njit(cache=True, notice=False)
def _correlation_nan(x5, w5, out, stride, pads, dilation, last):
    """PyTorch's NaN where a padding zero meets a non-finite weight
    (:func:`convtranspose.nonfinite.nan_mask`)."""
    x_shape = _layout_shape(x5, last)
    o_shape = _layout_shape(out, last)
    w_shape = _shape(w5)
    c_out = w_shape[0]
    if not np.isfinite(w5).all():
        bad = np.zeros((c_out, w_shape[2], w_shape[3], w_shape[4]), np.bool_)
        for co in range(c_out):
            for c in range(w_shape[1]):
                for i in range(w_shape[2]):
                    for j in range(w_shape[3]):
                        for k in range(w_shape[4]):
                            if not np.isfinite(w5[co, c, i, j, k]):
                                bad[co, i, j, k] = True
        mask = nan_mask(bad, x_shape[2:], stride, dilation, pads[:, 0].copy(), o_shape[2:])
        for n in range(o_shape[0]):
            for co in range(c_out):
                for i in range(o_shape[2]):
                    for j in range(o_shape[3]):
                        for k in range(o_shape[4]):
                            if mask[co, i, j, k]:
                                if last:
                                    out[n, i, j, k, co] = np.nan
                                else:
                                    out[n, co, i, j, k] = np.nan


@njit(cache=True, notice=False)
def gradients_into(g5, x5, w5, gx5, gw5, gb, stride, pads, dilation, groups, last, volume,
                   needs, sizes, threads, transposed):
    """The gradients of the transposed convolution (or, without ``transposed``, of the
    convolution) of ``x5`` with ``w5`` given ``g5``, the gradient of its result: into
    ``gx5`` (``x5``'s shape and layout), ``gw5`` (``w5``'s) and ``gb`` (``(C_out,)``),
    each where ``needs`` (three booleans) asks for it. Operands as for
    :func:`conv_transpose_into`; ``sizes`` and ``threads`` as for
    :func:`convtranspose.cpu.deconv.weight_grad_jit`. The kernels, tables and order of
    ``backend="direct"`` from Python: ``grad_input`` is the other operation of ``g5``
    (:func:`conv_into` or :func:`conv_transpose_into`), ``grad_weight`` comes from
    :func:`_weight_grad_into`, and ``grad_bias`` from
    :func:`convtranspose.cpu.backward.channel_sums`."""
    empty = np.empty(0, x5.dtype)
    if needs[0] and gx5.size:
        if transposed:
            conv_into(g5, w5, empty, gx5, stride, pads, dilation, groups, last, volume)
        else:
            conv_transpose_into(g5, w5, empty, gx5, stride, pads, dilation, groups, last,
                                volume)
    if needs[1]:
        a5, b5 = (x5, g5) if transposed else (g5, x5)
        _weight_grad_into(a5, b5, gw5, stride, pads, dilation, groups, last, sizes, threads)
    if needs[2] and gb.size:
        g_shape = _layout_shape(g5, last)
        n, c = g_shape[0], g_shape[1]
        p = g_shape[2] * g_shape[3] * g_shape[4]
        backward.channel_sums(g5.reshape((n, p, c)) if last else g5.reshape((n, c, p)), gb,
                              last)


@njit(cache=True, notice=False)
def _weight_grad_into(a5, b5, gw5, stride, pads, dilation, groups, last, sizes, threads):
    """``gw5`` = the weight gradient of ``a5`` (on the strided grid) against ``b5``
    (sampled), as ``direct`` computes it from Python: per depth tap, the 2-D problem of the
    linked slices (:func:`convtranspose.depth.weight_grad`; a unit-depth problem is one
    tap) on the engine or the gather kernel, then PyTorch's NaN rule
    (:func:`convtranspose.nonfinite.weight_grad_mask`)."""
    a_shape = _layout_shape(a5, last)
    b_shape = _layout_shape(b5, last)
    w_shape = _shape(gw5)
    c_a, c_b_g, k_h, k_w = w_shape[0], w_shape[1], w_shape[3], w_shape[4]
    gw5[...] = 0
    if a5.size == 0:
        return
    engine = _wg_engine((c_a, c_b_g, k_h, k_w), groups)
    g4 = np.empty((c_a, c_b_g, k_h, k_w), gw5.dtype)
    for t in range(w_shape[2]):
        i0, i1, o0 = _tap_run(t, a_shape[2], b_shape[2], stride[0], dilation[0], pads[0, 0])
        if i1 <= i0:
            continue
        a4 = _depth_images(a5, i0, 1, i1 - i0, last)
        b4 = _depth_images(b5, o0, stride[0], i1 - i0, last)
        if engine:
            deconv.weight_grad_jit(a4, b4, g4, stride[1:], dilation[1:], pads[1:, 0].copy(),
                                   groups, sizes, threads)
        else:
            backward.weight_grad_kernel(a4, b4, g4, stride[1], stride[2], dilation[1],
                                        dilation[2], pads[1, 0], pads[2, 0], groups)
        gw5[:, :, t] = g4
    a_first = a5.transpose((0, 4, 1, 2, 3)) if last else a5
    mask = weight_grad_mask(a_first, b_shape[2:].copy(), w_shape[2:].copy(), stride, dilation,
                            pads[:, 0].copy())
    for ca in range(c_a):
        for i in range(w_shape[2]):
            for j in range(k_h):
                for k in range(k_w):
                    if mask[ca, i, j, k]:
                        gw5[ca, :, i, j, k] = np.nan


# ----------------------------------------------------------------------------
# the compiled entries: C callbacks the user's function calls through a pointer

#: ``meta``: ``[last, groups, *x5.shape, *w5.shape, *out.shape, len(bias), *stride,
#: *pads (before, after per axis), *dilation, volume]``, 31 ``int64``.
_META = 31
_SIG = types.int64(types.voidptr, types.voidptr, types.voidptr, types.voidptr,
                   types.voidptr)


@njit(cache=True, notice=False)
def _views(xp, wp, bp, op, mp, dtype):
    """The operands at the addresses ``xp``, ``wp``, ``bp``, ``op`` (arrays of ``dtype``)
    and the hyper-parameters, as ``meta`` at ``mp`` describes them."""
    m = carray(mp, (_META,), np.int64)
    return (carray(xp, (m[2], m[3], m[4], m[5], m[6]), dtype),
            carray(wp, (m[7], m[8], m[9], m[10], m[11]), dtype),
            carray(bp, (m[17],), dtype),
            carray(op, (m[12], m[13], m[14], m[15], m[16]), dtype),
            m[18:21].copy(), m[21:27].copy().reshape((3, 2)), m[27:30].copy(), m[1],
            m[0] != 0, m[30] != 0)


# One entry per operation and dtype, each a plain call: a dispatcher passed as an
# argument would be a dynamic global, which Numba's cache refuses.
def _transposed_f32(xp, wp, bp, op, mp):
    conv_transpose_into(*_views(xp, wp, bp, op, mp, np.float32))
    return 0


def _transposed_f64(xp, wp, bp, op, mp):
    conv_transpose_into(*_views(xp, wp, bp, op, mp, np.float64))
    return 0


def _conv_f32(xp, wp, bp, op, mp):
    conv_into(*_views(xp, wp, bp, op, mp, np.float32))
    return 0


def _conv_f64(xp, wp, bp, op, mp):
    conv_into(*_views(xp, wp, bp, op, mp, np.float64))
    return 0


#: The gradients' ``meta``: ``[last, groups, *g5.shape, *x5.shape, *w5.shape, *stride,
#: *pads, *dilation, volume, *needs, threads, *deconv.sizes(dtype)]``, 39 ``int64``.
_GRAD_META = 39
_GRAD_SIG = types.int64(*[types.voidptr] * 7)


@njit(cache=True, notice=False)
def _grad_views(gp, xp, wp, gxp, gwp, gbp, mp, dtype):
    """The operands and results of :func:`gradients_into` at the addresses (arrays of
    ``dtype``), and its other arguments, as the gradients' ``meta`` at ``mp`` describes
    them (``transposed`` left out). A gradient not asked for has an empty buffer behind
    its full-size view: :func:`gradients_into` reads ``needs`` before touching one."""
    m = carray(mp, (_GRAD_META,), np.int64)
    last = m[0] != 0
    x_shape = (m[7], m[8], m[9], m[10], m[11])
    w_shape = (m[12], m[13], m[14], m[15], m[16])
    return (carray(gp, (m[2], m[3], m[4], m[5], m[6]), dtype), carray(xp, x_shape, dtype),
            carray(wp, w_shape, dtype), carray(gxp, x_shape, dtype),
            carray(gwp, w_shape, dtype), carray(gbp, (m[6] if last else m[3],), dtype),
            m[17:20].copy(), m[20:26].copy().reshape((3, 2)), m[26:29].copy(), m[1], last,
            m[29] != 0, m[30:33] != 0, (m[34], m[35], m[36], m[37], m[38]), m[33])


def _grad_transposed_f32(gp, xp, wp, gxp, gwp, gbp, mp):
    gradients_into(*_grad_views(gp, xp, wp, gxp, gwp, gbp, mp, np.float32), True)
    return 0


def _grad_transposed_f64(gp, xp, wp, gxp, gwp, gbp, mp):
    gradients_into(*_grad_views(gp, xp, wp, gxp, gwp, gbp, mp, np.float64), True)
    return 0


def _grad_conv_f32(gp, xp, wp, gxp, gwp, gbp, mp):
    gradients_into(*_grad_views(gp, xp, wp, gxp, gwp, gbp, mp, np.float32), False)
    return 0


def _grad_conv_f64(gp, xp, wp, gxp, gwp, gbp, mp):
    gradients_into(*_grad_views(gp, xp, wp, gxp, gwp, gbp, mp, np.float64), False)
    return 0


#: ``(transposed, dtype, gradients)``: the entry's function and C signature.
_ENTRIES = {(True, "float32", False): (_transposed_f32, _SIG),
            (True, "float64", False): (_transposed_f64, _SIG),
            (False, "float32", False): (_conv_f32, _SIG),
            (False, "float64", False): (_conv_f64, _SIG),
            (True, "float32", True): (_grad_transposed_f32, _GRAD_SIG),
            (True, "float64", True): (_grad_transposed_f64, _GRAD_SIG),
            (False, "float32", True): (_grad_conv_f32, _GRAD_SIG),
            (False, "float64", True): (_grad_conv_f64, _GRAD_SIG)}
_compiled = {}
_compiled_lock = threading.Lock()


def entry(transposed, dtype, gradients=False):
    """The ctypes function of the compiled entry for the transposed convolution (or the
    convolution) of ``dtype``, or with ``gradients`` for its gradients: a ``numba.cfunc``
    with a disk cache, compiled (or loaded) the first time a user's function that needs it
    compiles. The user's function calls it through its address, so the library's kernels
    are not linked into (and compiled again with) every such function: a few hundred
    milliseconds instead of seconds. (Numba does not disk-cache a function that holds
    such an address: ``cache=True`` on the user's function warns and compiles it in each
    process.)"""
    key = (bool(transposed), str(dtype), bool(gradients))
    with _compiled_lock:
        if key not in _compiled:
            _launch_threads()
            fn, sig = _ENTRIES[key]
            _compiled[key] = numba.cfunc(sig, cache=disk_cache())(fn).ctypes
        return _compiled[key]


@njit(cache=True, notice=False)
def _meta(last, groups, x5, w5, out, bias_len, stride, pads, dilation, volume):
    m = np.empty(_META, np.int64)
    m[0], m[1], m[30] = last, groups, volume
    for i in range(5):
        m[2 + i], m[7 + i], m[12 + i] = x5.shape[i], w5.shape[i], out.shape[i]
    m[17] = bias_len
    for a in range(3):
        m[18 + a], m[21 + 2 * a], m[22 + 2 * a], m[27 + a] = (stride[a], pads[a, 0],
                                                              pads[a, 1], dilation[a])
    return m


@njit(cache=True, notice=False)
def _grad_meta(last, groups, g5, x5, w5, stride, pads, dilation, volume, needs, threads,
               sizes):
    m = np.empty(_GRAD_META, np.int64)
    m[0], m[1], m[29], m[33] = last, groups, volume, threads
    for i in range(5):
        m[2 + i], m[7 + i], m[12 + i], m[34 + i] = g5.shape[i], x5.shape[i], w5.shape[i], \
            sizes[i]
    for a in range(3):
        m[17 + a], m[20 + 2 * a], m[21 + 2 * a], m[26 + a], m[30 + a] = (
            stride[a], pads[a, 0], pads[a, 1], dilation[a], needs[a])
    return m


@njit(cache=True, notice=False)
def _keep(*arrays):
    """A use of ``arrays`` after the call that reads them through pointers: Numba frees an
    array after its last use."""
    return len(arrays)


# ----------------------------------------------------------------------------
# typing: the arguments' types and constants, when the caller compiles

_FLOATS = (types.float32, types.float64)
_COMPLEXES = (types.complex64, types.complex128)


def _given(ty):
    """Whether an argument was passed (else the typing function sees its default)."""
    return isinstance(ty, types.Type) and not isinstance(ty, types.Omitted)


def _is_none(ty):
    return ty is None or isinstance(ty, (types.NoneType, types.Omitted)) and \
        getattr(ty, "value", None) is None


def _float_array(ty, name, ndims, func):
    if not isinstance(ty, types.Array):
        raise TypingError(f"{func}: {name} must be a NumPy array inside jitted code, got {ty}")
    if ty.dtype not in _FLOATS + _COMPLEXES:
        raise TypingError(f"{func}: {name} must be float32, float64, complex64 or complex128 "
                          f"inside jitted code, got {ty.dtype} (float16 and bfloat16 stay out "
                          "of jitted code: Numba cannot type them; call the function from "
                          "Python for them)")
    if ty.ndim not in ndims:
        raise TypingError(f"{func}: {name} must have {' or '.join(map(str, ndims))} "
                          f"dimensions, got {ty.ndim}")


def _constant(ty, name, func):
    """The value of a string constant (or of the omitted default)."""
    if not isinstance(ty, types.Type):
        return ty
    if isinstance(ty, types.Omitted):
        return ty.value
    if isinstance(ty, types.StringLiteral):
        return ty.literal_value
    raise TypingError(f"{func}: {name} must be a string constant inside jitted code (a "
                      f"literal or a global), got {ty}")


def _is_int(ty):
    return isinstance(ty, types.Integer) or (not isinstance(ty, types.Type)
                                             and isinstance(ty, int))


def _ints(ty, name, rank, fill, func):
    """Source of a 3-tuple of ``np.int64`` from the argument ``name`` (an int or a tuple of
    ``rank`` ints), lower ranks led by ``fill``."""
    lead = [str(fill)] * (3 - rank)
    if _is_int(ty):
        return "(" + ", ".join(lead + [f"np.int64({name})"] * rank) + ")"
    if isinstance(ty, types.BaseTuple) and len(ty) == rank and all(
            isinstance(t, types.Integer) for t in ty):
        return "(" + ", ".join(lead + [f"np.int64({name}[{i}])" for i in range(rank)]) + ")"
    raise TypingError(f"{func}: {name} must be an int or a tuple of {rank} int"
                      f"{'s' * (rank > 1)} inside jitted code, got {ty}")


def _padding(ty, rank, func):
    """Source of 6 ``np.int64``: ``(before, after)`` per axis, depth first."""
    lead = ["np.int64(0)", "np.int64(0)"] * (3 - rank)
    if _is_int(ty):
        return "(" + ", ".join(lead + ["np.int64(padding)"] * (2 * rank)) + ")"
    if isinstance(ty, types.BaseTuple) and len(ty) == rank:
        if all(isinstance(t, types.Integer) for t in ty):
            return "(" + ", ".join(lead + [f"np.int64(padding[{i}])" for i in range(rank)
                                           for _ in range(2)]) + ")"
        if all(isinstance(t, types.BaseTuple) and len(t) == 2 and
               all(isinstance(e, types.Integer) for e in t) for t in ty):
            return "(" + ", ".join(lead + [f"np.int64(padding[{i}][{j}])" for i in range(rank)
                                           for j in range(2)]) + ")"
    raise TypingError(f"{func}: padding must be an int, a tuple of {rank} ints or a tuple of "
                      f"{rank} (before, after) pairs inside jitted code, got {ty}")


def _padding_literal(ty, rank, func):
    """``"same"`` or ``"valid"`` for a string constant ``padding`` (a typing error naming
    what to write for another string), ``None`` for anything else."""
    if not isinstance(ty, (types.StringLiteral, types.UnicodeType)):
        return None
    if not isinstance(ty, types.StringLiteral):
        raise TypingError(f"{func}: padding must be a string constant inside jitted code (a "
                          f"literal or a global), got {ty}")
    try:
        return _padding_word(ty.literal_value, rank)
    except ValueError as exc:
        raise TypingError(f"{func}: {exc}") from None


#: Source of ``p3`` (and, for a transposed convolution, ``op3``) for ``padding="same"``,
#: from ``s3``, ``d3`` and ``w5``: the rule of :func:`convtranspose.params._same_split`.
_SAME_TRANSPOSED = """    if op3[0] != 0 or op3[1] != 0 or op3[2] != 0:
        raise ValueError("output_padding cannot be given with padding='same', which chooses "
                         "the output size itself (input * stride)")
    p3 = np.zeros((3, 2), np.int64)
    for a in range(3):
        t = d3[a] * (w5.shape[2 + a] - 1) + 1 - s3[a]
        p3[a, 0], p3[a, 1] = same_split(t)
        op3[a] = same_extra(t)
"""
_SAME_CONV = """    for a in range(3):
        if s3[a] != 1:
            raise ValueError("padding='same' needs stride 1, got stride " + str(s3[a]))
    p3 = np.zeros((3, 2), np.int64)
    for a in range(3):
        p3[a, 0], p3[a, 1] = same_split(d3[a] * (w5.shape[2 + a] - 1))
"""


def _padding_source(ty, rank, func, transposed):
    """Source lines that set ``p3`` (``(3, 2)`` int64) from ``padding``."""
    word = _padding_literal(ty, rank, func)
    if word == "valid":
        return "    p3 = np.zeros((3, 2), np.int64)\n"
    if word == "same":
        return _SAME_TRANSPOSED if transposed else _SAME_CONV
    return f"    p3 = np.array({_padding(ty, rank, func)}).reshape((3, 2))\n"


def _sizing_source(padding, output_size, rank, ndim, last, func, transposed, z=""):
    """Source that sets ``p3`` (and ``op3``) from ``padding`` and, for a transposed
    convolution, ``output_size``, reading the operands ``x5`` and ``w5`` (``xz5`` and
    ``wz5`` with ``z``): the rules of :func:`convtranspose.params._transpose_padding` and
    :func:`convtranspose.params._conv_padding`."""
    sized = transposed and not _is_none(output_size)
    if sized and _padding_literal(padding, rank, func) == "same":
        source = _SAME_SIZED.format(want=_want_source(output_size, rank, ndim, last, func),
                                    lead=3 - rank)
    else:
        source = _padding_source(padding, rank, func, transposed) + (
            _output_size_source(output_size, rank, ndim, last, func) if sized else "")
    return source.replace("LAST", str(last)).replace("x5", f"x{z}5").replace("w5", f"w{z}5")


#: Source of ``p3`` and ``op3`` for ``padding="same"`` with ``output_size`` (``want``):
#: the crop grows by what the size is short of ``input * stride``.
_SAME_SIZED = """    if op3[0] != 0 or op3[1] != 0 or op3[2] != 0:
        raise ValueError("output_padding cannot be given with padding='same', which chooses "
                         "the output size itself (input * stride; pass output_size for another "
                         "size)")
{want}    x_sizes = _layout_shape(x5, LAST)
    p3 = np.zeros((3, 2), np.int64)
    for a in range(3):
        t = d3[a] * (w5.shape[2 + a] - 1) + 1 - s3[a]
        if a >= {lead}:
            lo, hi = (x_sizes[2 + a] - 1) * s3[a] + 1, x_sizes[2 + a] * s3[a]
            if want[a - {lead}] < lo or want[a - {lead}] > hi:
                raise ValueError("output_size " + str(want[a - {lead}]) + " cannot be "
                                 "reached with padding='same' in spatial dimension "
                                 + str(a - {lead}) + ": valid sizes range from " + str(lo)
                                 + " to " + str(hi))
            t += hi - want[a - {lead}]
        p3[a, 0], p3[a, 1] = same_split(t)
        op3[a] = same_extra(t)
"""


def _want_source(ty, rank, ndim, last, func):
    """Source of ``want``, the spatial sizes ``output_size`` asks for (a tuple of ``rank``
    ints, or of the result's ``ndim`` in the caller's layout)."""
    if not (isinstance(ty, types.BaseTuple) and len(ty) in (rank, ndim)
            and all(isinstance(t, types.Integer) for t in ty)):
        raise TypingError(f"{func}: output_size must be a tuple of {rank} ints or of the "
                          f"result's {ndim} inside jitted code, got {ty}")
    first = 0 if len(ty) == rank else (ndim - rank - 1 if last else ndim - rank)
    sizes = ", ".join(f"np.int64(output_size[{first + i}])" for i in range(rank))
    return f"    want = np.array(({sizes},))\n"


def _output_size_source(ty, rank, ndim, last, func):
    """Source lines that turn ``output_size`` (a tuple of ``rank`` ints, or of the result's
    ``ndim`` in the caller's layout) into ``op3``, as ``nn.ConvTranspose{1,2,3}d``: the
    size without ``output_padding`` up to ``stride - 1`` more."""
    return (_want_source(ty, rank, ndim, last, func) +
            "    o0 = shape_of(_layout_shape(x5, LAST), _shape(w5), -1, s3, p3,\n"
            "                  np.zeros(3, np.int64), d3, np.int64(groups))\n"
            "    op = np.zeros(3, np.int64)\n"
            f"    for i in range({rank}):\n"
            f"        a = {3 - rank} + i\n"
            "        lo, hi = o0[2 + a], o0[2 + a] + s3[a] - 1\n"
            "        if want[i] < lo or want[i] > hi:\n"
            "            raise ValueError('output_size ' + str(want[i]) + ' cannot be reached '\n"
            "                             'in spatial dimension ' + str(i) + ': valid sizes '\n"
            "                             'range from ' + str(lo) + ' to ' + str(hi))\n"
            "        op[a] = want[i] - lo\n"
            "    if (op3 != 0).any() and (op3 != op).any():\n"
            "        raise ValueError('output_padding conflicts with output_size')\n"
            "    op3 = op\n")


def _to5(rank, last, batched, name, item="{name}.shape[{i}]"):
    """Source of ``name``'s shape as 5-D, ``(N, C, D, H, W)`` or ``(N, D, H, W, C)``
    (``item`` reads entry ``i``: of an array's shape, or of a tuple)."""
    dims = [item.format(name=name, i=i) for i in range(rank + 1 + batched)]
    n = [dims.pop(0)] if batched else ["1"]
    if last:
        return "(" + ", ".join(n + ["1"] * (3 - rank) + dims) + ")"
    return "(" + ", ".join(n + [dims[0]] + ["1"] * (3 - rank) + dims[1:]) + ")"


def _from5(rank, last, batched):
    """Source of the result's shape in the caller's dimensions, from the 5-D ``r5``."""
    if last:
        dims = [f"r5.shape[{i}]" for i in range(4 - rank, 5)]
    else:
        dims = ["r5.shape[1]"] + [f"r5.shape[{i}]" for i in range(5 - rank, 5)]
    return "(" + ", ".join((["r5.shape[0]"] if batched else []) + dims) + ",)"


def _common(func, rank, x, weight, bias, backend, data_format):
    """Checks shared by the operations; returns ``(last, batched, dtype)``. Starts Numba's
    threads first: the library's parallel kernels, loaded from the disk cache into a
    function compiled before any parallel region ran, fail to link otherwise ("LLVM
    ERROR: Symbol not found: allocate_sched")."""
    _launch_threads()
    name = func.__name__
    if _constant(backend, "backend", name) not in BACKENDS:
        raise TypingError(f"{name}: backend must be 'direct' or 'auto' (meaning 'direct') "
                          f"inside jitted code, got {_constant(backend, 'backend', name)!r}: "
                          "'im2col' and 'cuda' run from Python only")
    fmt = _constant(data_format, "data_format", name)
    formats = DATA_FORMATS[rank]
    if fmt not in formats:
        raise TypingError(f"{name}: data_format must be {formats[0]!r} (channels first) or "
                          f"{formats[1]!r} (channels last), got {fmt!r}")
    _float_array(x, "x", (rank + 1, rank + 2), name)
    _float_array(weight, "weight", (rank + 2,), name)
    arrays = [x, weight] + ([] if _is_none(bias) else [bias])
    if len(arrays) == 3:
        _float_array(bias, "bias", (1,), name)
    return fmt == formats[1], x.ndim == rank + 2, _Kinds(arrays)


class _Kinds:
    """The dtypes of a call of operands of types ``arrays``: ``dtype`` the real (part)
    dtype the kernels run in (float64 if an operand's part is), and ``cdtype`` the complex
    result's dtype where an operand is complex (else ``None``: a complex call runs as the
    real call of Gauss's three products, ``convtranspose.complexops``)."""

    def __init__(self, arrays):
        self.dtype = types.float32
        self.cdtype = None
        self.add(*arrays)

    def add(self, *arrays):
        for a in arrays:
            if a.dtype in (types.float64, types.complex128):
                self.dtype = types.float64
            if a.dtype in _COMPLEXES:
                self.cdtype = types.complex64
        if self.cdtype is not None:
            self.cdtype = types.complex128 if self.dtype == types.float64 else types.complex64
        return self

    @property
    def result(self):
        return self.cdtype or self.dtype


#: The call of a compiled entry, in the generated implementations.
_CALL = """    r5 = _new_result(o, x5, {last})
    if r5.size:
        m = _meta({last}, g, x5, w5, r5, b.shape[0], s3, p3, d3, {volume})
        fn(x5.ctypes.data, w5.ctypes.data, b.ctypes.data, r5.ctypes.data, m.ctypes.data)
        _keep(x5, w5, b, r5, m)
"""


def _scope(transposed, kinds, shape_of, gradients=False):
    return {"DT": np.dtype(str(kinds.dtype)), "CDT": np.dtype(str(kinds.result)),
            "fn": entry(transposed, kinds.dtype, gradients), "shape_of": shape_of,
            "_layout_shape": _layout_shape, "_shape": _shape, "_new_result": _new_result,
            "_meta": _meta, "_keep": _keep, "same_split": _same_split_jit,
            "same_extra": _same_extra_jit, "split3": pairs.split3, "join3": pairs.join3,
            "gradient_parts": pairs.gradient_parts}


def _complex_forward(last, has_bias, output_padding):
    """Source of a complex forward call's real operands (after the checks on the complex
    ones), its bias as ``(C_out, 2)`` pairs ``bp``, and the real call's shape ``o``."""
    bias = ("    bp = bz.view(DT).reshape((bz.shape[0], 2))\n" if has_bias else
            "    bp = np.zeros((o[1], 2), DT)\n")
    return (bias + _realise(last, {"xz5": ("x5", 0), "wz5": ("w5", 0)})
            + "    b = np.empty(0, DT)\n"
            f"    o = shape_of(_layout_shape(x5, {last}), _shape(w5), -1, s3, p3, "
            f"{output_padding}d3, g)\n")


def _compile(source, env):
    scope = dict(env, np=np)
    exec(source, scope)     # noqa: S102 (source built above from constants)
    return scope["impl"]


def _operand_source(rank, last, batched, x, weight, bias, kinds, grad_output=None):
    """Source of the operands as C-contiguous arrays of the call's dtype, ``x5`` and
    ``w5`` 5-D (``g5`` too for a gradient), ``b`` the bias or empty: complex operands named
    ``xz5``, ``wz5``, ``gz5``, ``bz`` (:func:`_realise` makes the real ones)."""
    z = "z" if kinds.cdtype else ""
    want = kinds.result

    def conv(name, ty):
        dt = "CDT" if z else "DT"
        return f"{name}.astype({dt})" if ty.dtype != want else f"np.ascontiguousarray({name})"
    has_bias = not _is_none(bias)
    lines = [f"    xc = {conv('x', x)}",
             f"    x{z}5 = xc.reshape({_to5(rank, last, batched, 'xc')})",
             f"    wc = {conv('weight', weight)}",
             f"    w{z}5 = wc.reshape({_to5(rank, False, True, 'wc')})",
             f"    b{z} = {conv('bias', bias)}" if has_bias else f"    b{z} = np.empty(0, DT)"]
    if grad_output is not None:
        lines += [f"    gc = {conv('grad_output', grad_output)}",
                  f"    g{z}5 = gc.reshape({_to5(rank, last, batched, 'gc')})"]
    return "\n".join(lines) + "\n", has_bias


def _fold(name, axis):
    """Source of the 5-D array ``name``'s shape folded at ``axis``: ``(P, C, L)``."""
    dims = [f"{name}.shape[{i}]" for i in range(5)]
    return (f"({' * '.join(dims[:axis]) or '1'}, {dims[axis]}, "
            f"{' * '.join(dims[axis + 1:]) or '1'})")


def _scaled(name, axis, op):
    """Source of ``name``'s 5-D shape with entry ``axis`` changed by ``op`` (``"3 * "`` or
    ``" // 3"``)."""
    dims = [f"{name}.shape[{i}]" for i in range(5)]
    dims[axis] = f"3 * {dims[axis]}" if op == "3 *" else f"{dims[axis]} // 3"
    return "(" + ", ".join(dims) + ")"


def _realise(last, names):
    """Source that makes the real operands of Gauss's three products from the complex
    ``xz5``, ``wz5`` (and ``gz5``) named in ``names`` ``{complex: (real, mode)}``, and
    triples ``g``: :func:`convtranspose.cpu.pairs.split3` along the channel axis."""
    axis = 4 if last else 1
    lines = []
    for zname, (rname, mode) in names.items():
        ax = 0 if zname == "wz5" else axis
        lines.append(f"    {rname} = split3({zname}.reshape({_fold(zname, ax)}), {mode}, DT)"
                     f".reshape({_scaled(zname, ax, '3 *')})")
    return "\n".join(lines) + "\n    g = 3 * g\n"


def _join_source(last, real, name, mode, bias="np.zeros((1, 2), DT)"):
    """Source of the complex ``name`` joined from the real 5-D ``real``
    (:func:`convtranspose.cpu.pairs.join3`)."""
    axis = 4 if last else 1
    return (f"    {name} = np.empty({_scaled(real, axis, '// 3')}, CDT)\n"
            f"    join3({real}.reshape({_fold(real, axis)}), {bias}, "
            f"{name}.reshape({_fold(name, axis)}), {mode})\n")


def _overload_transposed(func, rank):
    name = func.__name__

    @overload(func, prefer_literal=True)
    def typer(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
              dilation=1, output_size=None, out=None, backend="auto",
              data_format=DATA_FORMATS[rank][0]):
        last, batched, kinds = _common(func, rank, x, weight, bias, backend, data_format)
        z = "z" if kinds.cdtype else ""
        if not _is_int(groups):
            raise TypingError(f"{name}: groups must be an int, got {groups}")
        given_out = not _is_none(out)
        if given_out:
            _float_array(out, "out", (x.ndim,), name)
            if out.dtype != kinds.result:
                raise TypingError(f"{name}: out must have dtype {kinds.result}, got "
                                  f"{out.dtype}")
        operands, has_bias = _operand_source(rank, last, batched, x, weight, bias, kinds)
        source = (
            "def impl(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,\n"
            "         dilation=1, output_size=None, out=None, backend='auto',\n"
            f"         data_format={DATA_FORMATS[rank][0]!r}):\n"
            + operands +
            f"    s3 = np.array({_ints(stride, 'stride', rank, 1, name)})\n"
            f"    op3 = np.array({_ints(output_padding, 'output_padding', rank, 0, name)})\n"
            f"    d3 = np.array({_ints(dilation, 'dilation', rank, 1, name)})\n"
            + _sizing_source(padding, output_size, rank, x.ndim, last, name, True, z) +
            f"    g = np.int64(groups)\n"
            f"    o = shape_of(_layout_shape(x{z}5, {last}), _shape(w{z}5), "
            f"{f'b{z}.shape[0]' if has_bias else '-1'}, s3, p3, op3, d3, g)\n"
            + (_complex_forward(last, has_bias, "op3, ") if z else "")
            + _CALL.format(last=last, volume=rank == 3)
            + (_join_source(last, "r5", "rz5", 0, "bp") if z else ""))
        source += (
            f"    result = r{z}5.reshape({_from5(rank, last, batched).replace('r5', f'r{z}5')})\n")
        if given_out:
            source += ("    if out.shape != result.shape:\n"
                       "        raise ValueError('out must have the shape of the result')\n"
                       "    out[...] = result\n"
                       "    return out\n")
        else:
            source += "    return result\n"
        return _compile(source, _scope(True, kinds, transposed_shape))

    return typer


def _overload_conv(func, rank):
    name = func.__name__

    @overload(func, prefer_literal=True)
    def typer(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
              backend="auto", data_format=DATA_FORMATS[rank][0]):
        last, batched, kinds = _common(func, rank, x, weight, bias, backend, data_format)
        z = "z" if kinds.cdtype else ""
        if not _is_int(groups):
            raise TypingError(f"{name}: groups must be an int, got {groups}")
        operands, has_bias = _operand_source(rank, last, batched, x, weight, bias, kinds)
        source = (
            "def impl(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,\n"
            f"         backend='auto', data_format={DATA_FORMATS[rank][0]!r}):\n"
            + operands +
            f"    s3 = np.array({_ints(stride, 'stride', rank, 1, name)})\n"
            f"    d3 = np.array({_ints(dilation, 'dilation', rank, 1, name)})\n"
            + _sizing_source(padding, None, rank, x.ndim, last, name, False, z) +
            f"    g = np.int64(groups)\n"
            f"    o = shape_of(_layout_shape(x{z}5, {last}), _shape(w{z}5), "
            f"{f'b{z}.shape[0]' if has_bias else '-1'}, s3, p3, d3, g)\n"
            + (_complex_forward(last, has_bias, "") if z else "")
            + _CALL.format(last=last, volume=rank == 3)
            + (_join_source(last, "r5", "rz5", 0, "bp") if z else "") +
            f"    return r{z}5.reshape({_from5(rank, last, batched).replace('r5', f'r{z}5')})\n")
        return _compile(source, _scope(False, kinds, conv_shape))

    return typer


def _flag(ty, name, func):
    """The value of a boolean constant (or of the omitted default)."""
    if isinstance(ty, bool):
        return ty
    if isinstance(ty, types.Omitted):
        return bool(ty.value)
    if isinstance(ty, types.BooleanLiteral):
        return bool(ty.literal_value)
    raise TypingError(f"{func}: {name} must be a constant True or False inside jitted code "
                      f"(it decides which gradients the call returns), got {ty}")


def _caller_dims(rank, last, batched, name):
    """Source of a tuple, in the caller's order of dimensions, from the ``int64`` array
    ``name`` in the order ``(N, C, D, H, W)``."""
    spatial = [f"{name}[{i}]" for i in range(5 - rank, 5)]
    dims = spatial + [f"{name}[1]"] if last else [f"{name}[1]"] + spatial
    return "(" + ", ".join(([f"{name}[0]"] if batched else []) + dims) + ",)"


@njit(cache=True, notice=False)
def _check_grad_output(got, want):
    """``ValueError`` naming ``grad_output`` unless its shape ``got`` is ``want`` (both
    ``int64`` arrays, in the caller's order): one compiled check for every call."""
    if got.shape[0] != want.shape[0] or (got != want).any():
        raise ValueError("grad_output must have the forward result's shape "
                         + _shape_text(want) + ", got " + _shape_text(got))


@njit(cache=True, notice=False)
def _shape_text(shape):
    return "(" + ", ".join([str(v) for v in shape]) + ")"


def _complex_gradients(last, needs):
    """Source of the complex gradients ``gxz5``, ``gwz5``, ``gbz`` from the real ones of
    Gauss's three products, as ``convtranspose.complexops`` makes them."""
    lines = _join_source(last, "gx5", "gxz5", 1) if needs[0] else ""
    if needs[1]:
        lines += ("    gwz5 = np.empty(wz5.shape, CDT)\n"
                  "    gradient_parts(gw5.reshape(gw5.size), "
                  "gwz5.reshape(gwz5.size).view(DT), False)\n")
    if needs[2]:
        lines += ("    gbz = np.empty(gb.shape[0] // 3, CDT)\n"
                  "    gradient_parts(gb, gbz.view(DT), True)\n")
    return lines


def _overload_backward(func, rank, transposed):
    name = func.__name__
    hyper = "output_padding=0, groups=1, dilation=1, output_size=None" if transposed else \
        "dilation=1, groups=1"

    def typer(grad_output, x, weight, stride=1, padding=0, output_padding=0, groups=1,
              dilation=1, output_size=None, needs_input_grad=True, needs_weight_grad=True,
              needs_bias_grad=True, backend="auto", data_format=DATA_FORMATS[rank][0]):
        last, batched, kinds = _common(func, rank, x, weight, None, backend, data_format)
        _float_array(grad_output, "grad_output", (x.ndim,), name)
        kinds.add(grad_output)
        z = "z" if kinds.cdtype else ""
        if not _is_int(groups):
            raise TypingError(f"{name}: groups must be an int, got {groups}")
        needs = tuple(_flag(ty, n, name) for ty, n in (
            (needs_input_grad, "needs_input_grad"), (needs_weight_grad, "needs_weight_grad"),
            (needs_bias_grad, "needs_bias_grad")))
        operands, _ = _operand_source(rank, last, batched, x, weight, None, kinds,
                                      grad_output)
        source = (
            f"def impl(grad_output, x, weight, stride=1, padding=0, {hyper},\n"
            "         needs_input_grad=True, needs_weight_grad=True, needs_bias_grad=True,\n"
            f"         backend='auto', data_format={DATA_FORMATS[rank][0]!r}):\n"
            + operands +
            f"    s3 = np.array({_ints(stride, 'stride', rank, 1, name)})\n"
            + (f"    op3 = np.array({_ints(output_padding, 'output_padding', rank, 0, name)})\n"
               if transposed else "") +
            f"    d3 = np.array({_ints(dilation, 'dilation', rank, 1, name)})\n"
            + _sizing_source(padding, output_size, rank, x.ndim, last, name, transposed, z) +
            "    g = np.int64(groups)\n"
            f"    o = shape_of(_layout_shape(x{z}5, {last}), _shape(w{z}5), -1, s3, p3, "
            + ("op3, " if transposed else "") + "d3, g)\n"
            f"    want = {_caller_dims(rank, last, batched, 'o')}\n"
            "    check_grad_output(np.array(grad_output.shape, np.int64), np.array(want))\n"
            + (_realise(last, {"gz5": ("g5", 1), "xz5": ("x5", 0), "wz5": ("w5", 0)})
               if z else "") +
            f"    gx5 = np.empty({'x5.shape' if needs[0] else '(0, 0, 0, 0, 0)'}, DT)\n"
            f"    gw5 = np.empty({'w5.shape' if needs[1] else '(0, 0, 0, 0, 0)'}, DT)\n"
            f"    gb = np.empty({f'g5.shape[{4 if last else 1}]' if needs[2] else '0'}, DT)\n"
            f"    m = _grad_meta({last}, g, g5, x5, w5, s3, p3, d3, {rank == 3}, "
            f"{needs}, THREADS, SIZES)\n"
            "    fn(g5.ctypes.data, x5.ctypes.data, w5.ctypes.data, gx5.ctypes.data,\n"
            "       gw5.ctypes.data, gb.ctypes.data, m.ctypes.data)\n"
            "    _keep(g5, x5, w5, gx5, gw5, gb, m)\n"
            + (_complex_gradients(last, needs) if z else "") +
            "    return (" + ", ".join(
                [(f"gx{z}5.reshape(x.shape)" if needs[0] else "None"),
                 (f"gw{z}5.reshape(weight.shape)" if needs[1] else "None"),
                 (f"gb{z}" if needs[2] else "None")]) + ")\n")
        shape_of = transposed_shape if transposed else conv_shape
        scope = dict(_scope(transposed, kinds, shape_of, gradients=True),
                     _grad_meta=_grad_meta,
                     check_grad_output=_check_grad_output, THREADS=max(1, numba.config.NUMBA_NUM_THREADS),
                     SIZES=deconv.sizes(np.dtype(str(kinds.dtype))))
        return _compile(source, scope)

    if not transposed:      # the convolution's order of hyper-parameters, no output_size
        def conv_typer(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1,
                       needs_input_grad=True, needs_weight_grad=True, needs_bias_grad=True,
                       backend="auto", data_format=DATA_FORMATS[rank][0]):
            return typer(grad_output, x, weight, stride, padding, 0, groups, dilation, None,
                         needs_input_grad, needs_weight_grad, needs_bias_grad, backend,
                         data_format)
        return overload(func, prefer_literal=True)(conv_typer)
    return overload(func, prefer_literal=True)(typer)


def _shape_tuple(ty, name):
    if not (isinstance(ty, types.BaseTuple) and len(ty) and
            all(isinstance(t, types.Integer) for t in ty)):
        raise TypingError(f"output_shape: {name} must be a tuple of ints inside jitted code, "
                          f"got {ty}")
    return len(ty)


def _overload_output_shape(func):
    @overload(func, prefer_literal=True)
    def typer(input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1,
              dilation=1, output_size=None, data_format=None, rank=None):
        name = "output_shape"
        rank_ = _shape_tuple(weight_shape, "weight_shape") - 2
        if rank_ not in DATA_FORMATS:
            raise TypingError(f"{name}: weight_shape must have 3, 4 or 5 entries, got "
                              f"{rank_ + 2}")
        if not _is_none(rank):
            given = getattr(rank, "literal_value", getattr(rank, "value", rank))
            if given != rank_:
                raise TypingError(f"{name}: rank {given!r} does not match weight_shape's "
                                  f"{rank_} spatial dimensions")
        n_in = _shape_tuple(input_shape, "input_shape")
        if n_in not in (rank_ + 1, rank_ + 2):
            raise TypingError(f"{name}: input_shape must have {rank_ + 2} entries (or "
                              f"{rank_ + 1} unbatched), got {n_in}")
        if not _is_int(groups):
            raise TypingError(f"{name}: groups must be an int, got {groups}")
        fmt = _constant(data_format, "data_format", name)
        formats = DATA_FORMATS[rank_]
        fmt = formats[0] if fmt is None else fmt
        if fmt not in formats:
            raise TypingError(f"{name}: data_format must be {formats[0]!r} (channels first) "
                              f"or {formats[1]!r} (channels last), got {fmt!r}")
        last, batched = fmt == formats[1], n_in == rank_ + 2
        x5 = _to5(rank_, last, batched, "input_shape", item="{name}[{i}]")
        if last:     # the 5-D shape in the order (N, C, D, H, W)
            x5 = f"(lambda t: (t[0], t[4], t[1], t[2], t[3]))({x5})"
        out = ["o[0]"] if batched else []
        spatial = [f"o[{i}]" for i in range(5 - rank_, 5)]
        out += spatial + ["o[1]"] if last else ["o[1]"] + spatial
        source = (
            "def impl(input_shape, weight_shape, stride=1, padding=0, output_padding=0,\n"
            "         groups=1, dilation=1, output_size=None, data_format=None, rank=None):\n"
            f"    x5 = np.array({x5}, np.int64)\n"
            f"    w5 = np.array({_to5(rank_, False, True, 'weight_shape', item='{name}[{i}]')},"
            " np.int64)\n"
            f"    s3 = np.array({_ints(stride, 'stride', rank_, 1, name)})\n"
            f"    op3 = np.array({_ints(output_padding, 'output_padding', rank_, 0, name)})\n"
            f"    d3 = np.array({_ints(dilation, 'dilation', rank_, 1, name)})\n"
            # the operations' rules, on shapes: x5 and w5 are the shapes themselves here
            + _sizing_source(padding, output_size, rank_, n_in, last, name, True).replace(
                f"_layout_shape(x5, {last})", "x5").replace("_shape(w5)", "w5").replace(
                "w5.shape[", "w5[") +
            "    o = shape_of(x5, w5, -1, s3, p3, op3, d3, np.int64(groups))\n"
            f"    return ({', '.join(out)},)\n")
        return _compile(source, {"shape_of": transposed_shape, "same_split": _same_split_jit,
                                 "same_extra": _same_extra_jit})

    return typer


_overload_output_shape(output_shape)
_overload_transposed(conv_transpose1d, 1)
_overload_transposed(conv_transpose2d, 2)
_overload_transposed(conv_transpose3d, 3)
_overload_conv(conv1d, 1)
_overload_conv(conv2d, 2)
_overload_conv(conv3d, 3)
_overload_backward(conv_transpose1d_backward, 1, True)
_overload_backward(conv_transpose2d_backward, 2, True)
_overload_backward(conv_transpose3d_backward, 3, True)
_overload_backward(conv1d_backward, 1, False)
_overload_backward(conv2d_backward, 2, False)
_overload_backward(conv3d_backward, 3, False)
