"""3-D problems on the CPU as 2-D ones, one per kernel depth tap.

A tap ``t`` links depth ``i`` of the small grid (the transposed convolution's input, the
convolution's output) to depth ``o = i*sD + t*dD - front`` of the large one (the
transposed convolution's output, the convolution's input), for the contiguous run of ``i``
where ``o`` falls inside (:func:`depth_taps`). The depth slices of a run, folded into the
batch (``(N*J, C, H, W)``), go through one 2-D call with the weight's plane
``weight[:, :, t]``:

* the transposed convolution scatters: ``out[:, :, o] += conv_transpose2d(x[:, :, i])``;
* the correlation (``conv3d``, the transposed convolution's input gradient) gathers:
  ``out[:, :, i] += conv2d(x[:, :, o])``;
* the weight gradient of tap ``t`` is the 2-D weight gradient of the run's pairs.

Where the channels-last engine takes the volume whole (:mod:`convtranspose.cpu.direct`),
:func:`scatter` and :func:`correlate` hand it over instead. The 2-D calls use the backend
named (``"auto"``: the one the cost model picks for each 2-D problem), and their NaN rules
for padding zeros hold per plane; the rules across depth are applied once at the end
(:mod:`convtranspose.nonfinite`, which works at any rank). Results are the definition's
sums in another order: within rounding of the float64 reference, bitwise independent of
the thread count as the 2-D backends are.

Memory: besides the result, at most one copy of each operand read (for one image its
depth slices folded once, :class:`_Runs`; for several, one tap's slices at a time) and
one 2-D result, sized for the longest run and reused by every tap.
"""
from __future__ import annotations

import numpy as np

from . import dispatch, nonfinite
from ._alloc import allocate
from ._arrays import channels_first, new_result
from .cpu import direct, nd_engine

__all__ = ["depth_taps", "tap_run", "scatter", "correlate", "weight_grad"]


def depth_taps(small, large, k, s, d, front):
    """The runs of depth slices each kernel depth tap links.

    Parameters
    ----------
    small, large : int
        Depths of the small grid (a transposed convolution's input) and the large one
        (its output).
    k, s, d, front : int
        Kernel depth, stride, dilation and leading padding along depth.

    Returns
    -------
    list of (int, int, int, int)
        ``(t, i0, i1, o0)``: tap ``t`` links small slices ``i0 <= i < i1`` to large slices
        ``o0 + (i - i0)*s``, all inside; taps that link nothing are left out.

    Examples
    --------
    >>> from convtranspose.depth import depth_taps
    >>> depth_taps(3, 6, 2, 2, 1, 0)        # kernel 2, stride 2: even and odd slices
    [(0, 0, 3, 0), (1, 0, 3, 1)]
    >>> depth_taps(3, 3, 3, 1, 1, 1)        # kernel 3, padding 1: the ends lose a tap
    [(0, 1, 3, 0), (1, 0, 3, 0), (2, 0, 2, 1)]
    """
    runs = []
    for t in range(k):
        i0, i1, o0 = tap_run(t, small, large, s, d, front)
        if i1 > i0:
            runs.append((t, i0, i1, o0))
    return runs


def tap_run(t, small, large, s, d, front):
    """``(i0, i1, o0)`` of depth tap ``t`` for :func:`depth_taps` (nothing linked when
    ``i1 <= i0``); one rule for Python and ``@njit`` code (:mod:`convtranspose.jit`
    compiles it)."""
    c = t * d - front
    i0 = max(0, -(c // s))
    i1 = min(small, (large - 1 - c) // s + 1)
    return i0, i1, i0 * s + c


class _Runs:
    """The runs of depth slices of ``a`` (N, C, D, H, W) that the taps take, each as a
    batch of 2-D images ``(N*J, C, H, W)``, image by image (``n``, then ``j``), in the
    layout (with ``last``, a channels-first view of channels-last memory).

    One image: ``a`` is copied once into depth-major memory (a view of channels-last
    memory when ``step`` is 1), its slices ordered by residue modulo ``step``, so that
    every run ``o0, o0 + step, ...`` is a contiguous block, taken as a view. Several
    images: a run is copied when taken (the caller drops it before taking the next), so
    at most one run's copy, never more than ``a``, exists at a time.
    """

    def __init__(self, a, last, step=1):
        self.a, self.last, self.step = a, last, step
        if a.shape[0] != 1:
            return
        d = a.shape[2]
        moved = a[0].transpose((1, 2, 3, 0) if last else (1, 0, 2, 3))   # depth first
        self.base = [sum(len(range(q, d, step)) for q in range(r)) for r in range(step)]
        if step == 1:
            self.mem = np.ascontiguousarray(moved)
            return
        self.mem = allocate(moved.shape, a.dtype, "depth slices")
        for r in range(min(step, d)):
            self.mem[self.base[r]:self.base[r] + len(range(r, d, step))] = moved[r::step]

    def images(self, o0, count):
        """Depth slices ``o0, o0 + step, ...`` (``count`` of them)."""
        if self.a.shape[0] != 1:
            part = self.a[:, :, o0:o0 + (count - 1) * self.step + 1:self.step]
            mem = part.transpose((0, 2, 3, 4, 1) if self.last else (0, 2, 1, 3, 4))
            part = np.ascontiguousarray(mem).reshape(-1, *mem.shape[2:])
        else:
            at = self.base[o0 % self.step] + o0 // self.step
            part = self.mem[at:at + count]
        return channels_first(part, 2) if self.last else part


def _results(shape, taps, n, dtype, last):
    """``result(J)``: a 2-D result of ``N*J`` images of ``shape`` (channels, height,
    width), carved from one buffer sized for the longest run of ``taps``: the taps reuse
    it, so no tap's result is allocated while another's is alive."""
    buf = new_result((n * max(i1 - i0 for _, i0, i1, _ in taps), *shape), dtype, last, 2)
    return lambda j: buf[:n * j]


def _unfold(y, n):
    """A 2-D result ``(N*J, C, H, W)`` as the depth run ``(N, C, J, H, W)`` (a view)."""
    return np.moveaxis(y.reshape(n, -1, *y.shape[1:]), 1, 2)


def _large_run(o0, count, s):
    return slice(o0, o0 + (count - 1) * s + 1, s)


def _start(out, bias):
    out[...] = 0 if bias is None else bias.reshape(-1, 1, 1, 1)


def scatter(x, weight, bias, params, out, method, last=False):
    """The transposed convolution of ``x`` (N, C_in, D, H, W) into ``out``, by the 2-D
    backend ``method`` (``"auto"``: chosen per 2-D problem); ``last``: both are
    channels-first views of channels-last memory. Returns ``out``. Layers that ``direct``
    runs on the channels-last engine go to it whole, with no loop over depth taps (``auto``
    too, but for large channels-first results: :func:`~convtranspose.cpu.direct.volume_uses_engine`)."""
    if method in ("auto", "direct") and direct.volume_uses_engine(
            x.shape, weight.shape, params, out.shape, out.dtype.itemsize,
            out.strides[1] == out.dtype.itemsize, method) and nd_engine.supported(weight):
        return direct.run_volume(x, weight, bias, params, out)
    _start(out, bias)
    n, plane = x.shape[0], params.plane
    taps = depth_taps(x.shape[2], out.shape[2], weight.shape[2], params.stride[0],
                      params.dilation[0], params.pads[0][0])
    if not taps:
        return out
    runs = _Runs(x, last)
    result = _results((out.shape[1], *out.shape[3:]), taps, n, out.dtype, last)
    for t, i0, i1, o0 in taps:
        x4 = runs.images(i0, i1 - i0)
        w4 = np.ascontiguousarray(weight[:, :, t])
        y4 = result(i1 - i0)
        name = method
        if name == "auto":
            name = dispatch.choose(x4.shape, w4.shape, plane, out.dtype, y4.shape[2:],
                                   last).backend
        dispatch.operation("conv_transpose", name)(x4, w4, None, plane, y4)
        with np.errstate(invalid="ignore", over="ignore"):
            out[:, :, _large_run(o0, i1 - i0, params.stride[0])] += _unfold(y4, n)
        del x4      # before the next tap's copy is made
    return out


def correlate(x, weight, bias, out, params, method, last=False):
    """The correlation (``conv3d``'s forward) of ``x`` (N, C_in, D, H, W) with ``weight``
    (C_out, C_in // groups, kD, kH, kW) into ``out``, by ``method``, with PyTorch's NaN
    where a padding zero meets a non-finite weight; ``last`` as for :func:`scatter`.
    Returns ``out``. Layers with many channels run on the channels-last engine whole
    (``auto``: unless the result is channels-first and large, as for :func:`scatter`)."""
    if method in ("auto", "direct") and direct.volume_correlation_uses_engine(
            x.shape, weight.shape, params, out.shape, out.dtype.itemsize,
            out.strides[1] == out.dtype.itemsize, method):
        direct.run_correlation(x, weight, bias, out, params.stride, params.dilation,
                               [lo for lo, _ in params.pads], params.groups)
    else:
        _taps_correlate(x, weight, bias, out, params, method, last)
    return nonfinite.correlate_nan(out, weight, x.shape[2:], params.stride, params.dilation,
                                   [lo for lo, _ in params.pads])


def _taps_correlate(x, weight, bias, out, params, method, last):
    """:func:`correlate` as one 2-D correlation per depth tap, before the NaN rule."""
    _start(out, bias)
    n, plane = x.shape[0], params.plane
    c_out, c_in_g = weight.shape[:2]
    taps = depth_taps(out.shape[2], x.shape[2], weight.shape[2], params.stride[0],
                      params.dilation[0], params.pads[0][0])
    if taps:
        runs = _Runs(x, last, params.stride[0])
        result = _results((c_out, *out.shape[3:]), taps, n, out.dtype, last)
    for t, i0, i1, o0 in taps:
        x4 = runs.images(o0, i1 - i0)
        w4 = np.ascontiguousarray(weight[:, :, t])
        y4 = result(i1 - i0)
        name = method
        if name == "auto":
            name = dispatch.correlate_method(c_out // params.groups, c_in_g, w4.shape[2:],
                                             y4.size // c_out, images=y4.shape[0])
        dispatch.correlate(x4, w4, None, y4, plane, name)
        with np.errstate(invalid="ignore", over="ignore"):
            out[:, :, i0:i1] += _unfold(y4, n)
        del x4      # before the next tap's copy is made


def weight_grad(a, b, gw, params, method, last=False):
    """``gw[ca, j, t, kh, kw] = sum a[n, ca, i, h, w] * b[n, cb, i*sD + t*dD - front, ...]``
    (``a`` on the strided grid, ``b`` sampled, both 5-D) by ``method``, with PyTorch's NaN
    where a non-finite ``a`` meets a zero read outside ``b``; ``last`` as for
    :func:`scatter`. Returns ``gw``."""
    plane = params.plane
    c_a, c_b_g = gw.shape[:2]
    runs_a, runs_b = _Runs(a, last), _Runs(b, last, params.stride[0])
    gw[...] = 0
    for t, i0, i1, o0 in depth_taps(a.shape[2], b.shape[2], gw.shape[2], params.stride[0],
                                    params.dilation[0], params.pads[0][0]):
        a4, b4 = runs_a.images(i0, i1 - i0), runs_b.images(o0, i1 - i0)
        g4 = np.empty((c_a, c_b_g, *gw.shape[3:]), gw.dtype)
        name = method
        if name == "auto":
            name = dispatch.weight_grad_method(c_a // params.groups, c_b_g, gw.shape[3:],
                                               a4.size // c_a)
        gw[:, :, t] = dispatch.weight_grad(a4, b4, g4, plane, name)
        del a4, b4      # before the next tap's copies are made
    return nonfinite.weight_grad_nan(gw, a, b.shape[2:], params.stride, params.dilation,
                                     [lo for lo, _ in params.pads])
