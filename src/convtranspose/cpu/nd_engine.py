"""The channels-last N-d transposed convolution: the input laid out once, read in place.

``direct`` runs on it the transposed convolutions and the correlations of layers with
many channels (:mod:`convtranspose.cpu.direct`), and every half-precision forward call
(:mod:`convtranspose.halfops`); ``python scripts/bench_nd_engine.py`` times it against
``direct``, ``auto`` and PyTorch. Every rank runs as 3-D (a 1-D or 2-D
problem has unit depth and height), so ranks differ only in the tables below.

The form (XNNPACK's indirect deconvolution, Zhang, Franchetti & Low, ICML 2018):

* **One relayout** (:func:`relayout`): the input, channels-first or channels-last, is
  copied once into a zero-bordered channels-last buffer ``xp[N, Dp, Hp, Wp, C_in]`` with
  the border the taps need. Nothing is packed per tap. Half-precision input (float16,
  bfloat16, read as ``uint16`` bits: :mod:`~convtranspose.cpu.half`) is widened to
  float32 in this pass, one batch chunk at a time.
* **Weights packed once** (:func:`pack_weights`): per group and block of ``NR`` output
  channels (two vectors), ``wp[g, b, kd, kh, kw, c, NR]``, the block zero-padded (and
  widened to the compute dtype: float32 for half-precision results, in compiled code).
* **Per stride phase** (sub-pixel decomposition): along each axis an output index
  ``o = q*s + r - pad`` of residue ``r`` receives exactly the taps ``k`` with ``k*d = r``
  modulo ``s``, from input ``i = q - m_k`` with ``m_k = (k*d - r) / s``. So ``MR = 6``
  consecutive outputs of one phase along the width read 6 consecutive input pixels per
  tap: one base offset, pixels ``C_in`` apart. No inserted zero is multiplied.
* **The micro-kernel** (:func:`_tile`): a tile of 6 output pixels x 2 vectors of output
  channels in 12 vector registers; the ``k`` loop runs over the phase's taps and the
  group's input channels, broadcasting ``xp`` read in place and loading two packed weight
  vectors. The store adds the bias and writes through the output's element strides, so
  channels-last and channels-first results are written directly. A half-precision
  result is computed in float32 and rounded once (to nearest, ties to even) as the tile
  is stored, a vector of channels at a time (``vcvtps2ph`` for float16:
  :func:`~convtranspose.cpu.half.put_vector`), into the result itself (channels-last)
  or into a 16-bit channels-last buffer that :func:`_store` copies into place.

The correlation (``conv{1,2,3}d``'s forward, :func:`correlate`) is the same kernel with one
phase and the stride on the input side: output ``o`` reads input ``o*s + k*d - pad``, so a
tile's pixels are ``s * C_in`` apart; its zero border is PyTorch's padding, which a
convolution multiplies (PyTorch's NaN rule), so every weight is supported there.

Each axis is described by tables (:func:`plan`): per phase ``r``, its taps as ``(k, off)``
(``off`` the tap's input index at ``q = 0``, border included), the range of ``q``, and
where ``q`` lands: input index ``q*a + off``, output index ``q*os + ob[r]``.

Summation order: every output element sums its phase's taps in ascending ``(kd, kh, kw)``
and each tap's input channels in ascending order, from zero, then adds the bias; taps
that fall outside the input read the zero border. That order depends on the output's
position modulo the stride alone, so results are bitwise independent of threads, batch
size, image size and tiling. Reading the zero border multiplies finite weights only:
a non-finite weight would turn those zeros into NaN, which PyTorch does not, so callers
run such weights elsewhere (:func:`supported`).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from .._alloc import allocate
from .._jit import njit
from .._threading import launch
from .half import (PLAIN, all_finite, bits, compute_dtype, get, is_half, kind_of, narrow,
                   put, put_vector)
from .taps import byte_bounded_cache
from .workspace import workspace
from .simd import MR, add, broadcast, fmadd, lanes, load, store, width, zero

__all__ = ["supported", "plan", "relayout", "pack_weights", "conv_transpose", "correlate",
           "image_bytes"]


def supported(weight):
    """Whether :func:`conv_transpose` gives PyTorch's result for ``weight``: all finite
    (a half-precision weight checked on its bits in compiled code)."""
    return all_finite(weight)


def plan(x_shape, w_shape, stride, pads, dilation, out_shape, correlation=False):
    """The tables of one problem (:func:`_plan`, cached per problem), as a dict."""
    names = ("phase", "tap_k", "tap_o", "steps", "front", "back", "phases", "dead", "key")
    return dict(zip(names, _plan(*_plan_key(x_shape, w_shape, stride, pads, dilation,
                                            out_shape, correlation))))


def _plan_key(x_shape, w_shape, stride, pads, dilation, out_shape, correlation):
    return (tuple(map(int, x_shape[2:])), tuple(map(int, w_shape[2:])),
            tuple(map(int, stride)), tuple((int(a), int(b)) for a, b in pads),
            tuple(map(int, dilation)), tuple(map(int, out_shape[2:])), bool(correlation))


@byte_bounded_cache()
def _plan(x_sizes, k_sizes, stride, pads, dilation, out_sizes, correlation):
    """The tables of one problem (:func:`plan_tables`, read-only) with the phases per
    axis, whether some output has no tap, and the problem's key."""
    ints = lambda v: np.array(v, np.int64)      # noqa: E731
    *tables, counts, dead = plan_tables(ints(x_sizes), ints(k_sizes), ints(stride),
                                        ints(pads).reshape(3, 2), ints(dilation),
                                        ints(out_sizes), correlation)
    for t in tables:
        t.flags.writeable = False       # shared by every call of the problem
    return (*tables, tuple(int(c) for c in counts), bool(dead),
            (x_sizes, k_sizes, stride, pads, dilation, out_sizes, correlation))


@njit(cache=True, notice=False)
def plan_tables(x_sizes, k_sizes, stride, pads, dilation, out_sizes, correlation):
    """The tables of one problem, from ``int64`` arrays of the spatial sizes of the input,
    kernel and output (3 each: a rank-1 or rank-2 problem has unit depth and height),
    stride, dilation and ``pads`` ``(3, 2)``; callable from ``@njit`` code, and what
    :func:`plan` returns. Returns ``(phase, tap_k, tap_o, steps, front, back, counts,
    dead)``.

    Per axis, the phases that have outputs and taps: ``phase[a, i] = (first q, count,
    output base, first tap, taps)``, their taps in ``tap_k`` (weight index) and
    ``tap_o`` (input offset at ``q = 0``, border included), ``counts[a]`` of them;
    ``steps[0, a]``/``steps[1, a]``: how far the input and the output move per ``q``;
    the zero border ``front``/``back`` the taps read (the width's also the last tile's
    overrun); ``dead``: whether some output has no tap (it gets the bias alone).

    A transposed convolution's axis: an output ``o = q*s + r - pad`` of residue ``r``
    receives the taps ``k`` with ``k*d = r`` modulo ``s`` (ascending ``k``), from input
    ``q - m_k``, ``m_k = (k*d - r) / s``; the residues run over ``range(s)``, or, for a
    stride longer than the output, over those the outputs have (sorted); taps are grouped
    by residue with one sort, so a huge stride costs nothing. A correlation's axis: one
    phase whose taps are ``(k, k*d - pad)``, input step the stride, output step 1.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.nd_engine import plan_tables
    >>> one = np.ones(3, np.int64)
    >>> t = plan_tables(np.array([1, 1, 2]), np.array([1, 1, 3]), np.array([1, 1, 2]),
    ...                 np.zeros((3, 2), np.int64), one, np.array([1, 1, 5]), False)
    >>> t[0][2].tolist(), t[1].tolist(), t[6].tolist(), t[7]
    ([[0, 3, 0, 2, 2], [0, 2, 1, 4, 1]], [0, 0, 0, 2, 1, 0], [1, 1, 2], False)
    """
    total = k_sizes[0] + k_sizes[1] + k_sizes[2]
    most = 1
    if not correlation:
        for a in range(3):
            most = max(most, min(stride[a], out_sizes[a]))
    phase = np.zeros((3, most, 5), np.int64)
    counts = np.zeros(3, np.int64)
    tap_k = np.zeros(total + 1, np.int64)
    tap_o = np.zeros(total + 1, np.int64)
    steps = np.zeros((2, 3), np.int64)
    front = np.zeros(3, np.int64)
    back = np.zeros(3, np.int64)
    dead = False
    nt = 0
    for a in range(3):
        n_out, k, s, d, pad = out_sizes[a], k_sizes[a], stride[a], dilation[a], pads[a, 0]
        first = nt
        if correlation:
            steps[0, a], steps[1, a] = s, 1
            phase[a, 0, 1], phase[a, 0, 3], phase[a, 0, 4] = n_out, nt, k
            for t in range(k):
                tap_k[nt] = t
                tap_o[nt] = t * d - pad
                nt += 1
            counts[a] = 1
        else:
            steps[0, a], steps[1, a] = 1, s
            res = np.empty(k, np.int64)
            for t in range(k):
                res[t] = t * d % s
            order = np.argsort(res, kind="mergesort")       # stable: ascending k
            if s <= n_out:
                residues = np.arange(s)
            else:
                residues = np.empty(n_out, np.int64)
                for o in range(n_out):
                    residues[o] = (o + pad) % s
                residues = np.sort(residues)     # distinct: fewer outputs than the stride
            j = 0
            i = 0
            for r in residues:
                q0 = -((r - pad) // s)                       # ceil((pad - r) / s)
                count = (n_out - 1 + pad - r) // s - q0 + 1
                while j < k and res[order[j]] < r:
                    j += 1
                j1 = j
                while j1 < k and res[order[j1]] == r:
                    j1 += 1
                if count <= 0:
                    continue
                if j1 == j:
                    dead = True
                    continue
                phase[a, i, 0], phase[a, i, 1], phase[a, i, 2] = q0, count, r - pad
                phase[a, i, 3], phase[a, i, 4] = nt, j1 - j
                for jj in range(j, j1):
                    t = order[jj]
                    tap_k[nt] = t
                    tap_o[nt] = -((t * d - r) // s)
                    nt += 1
                i += 1
            counts[a] = i
        lo = 0
        hi = 0
        for i in range(counts[a]):
            q0, n = phase[a, i, 0], phase[a, i, 1]
            for tt in range(phase[a, i, 3], phase[a, i, 3] + phase[a, i, 4]):
                lo = min(lo, q0 * steps[0, a] + tap_o[tt])
                hi = max(hi, (q0 + n - 1) * steps[0, a] + tap_o[tt])
        front[a] = -lo
        back[a] = max(0, hi - (x_sizes[a] - 1))
        for tt in range(first, nt):
            tap_o[tt] += front[a]
    back[2] += (MR - 1) * steps[0, 2]      # the last width tile reads MR - 1 pixels more
    wide = max(1, counts.max())
    return (phase[:, :wide].copy(), tap_k[:nt + 1].copy(), tap_o[:nt + 1].copy(), steps,
            front, back, counts, dead)


def relayout(x, front, back, channels_last, dtype=None, into=None):
    """``x`` (5-D, channels-first or channels-last, any strides and byte order) as a
    zero-bordered channels-last copy ``(N, D + fd + bd, H + fh + bh, W + fw + bw, C)`` of
    ``dtype`` (default ``x``'s), one pass in parallel over the input's rows; written into
    the flat buffer ``into`` when given (its first elements; the border is zeroed), else
    into a new array. Half-precision input (float16, bfloat16) is widened in that pass
    (:mod:`~convtranspose.cpu.half`)."""
    dtype = x.dtype if dtype is None else np.dtype(dtype)
    xl = _readable(x if channels_last else x.transpose(0, 2, 3, 4, 1))
    n, *sizes, c = xl.shape
    shape = (n, *(s + f + b for s, f, b in zip(sizes, front, back)), c)
    if into is None:
        xp = allocate(shape, dtype, "the engine's input copy", zero=True)
    else:
        xp = into[:math.prod(shape)].reshape(shape)
        for axis, (f, b, size) in enumerate(zip(front, back, sizes), 1):
            if f:
                xp[(slice(None),) * axis + (slice(0, f),)] = 0
            if b:
                xp[(slice(None),) * axis + (slice(f + size, None),)] = 0
    if xl.size:
        strides = np.array([s // xl.itemsize for s in xl.strides], np.int64)
        launch(_relayout_kernel, _base_view(bits(xl)), strides, xp, front,
               np.array(xl.shape, np.int64), kind_of(xl.dtype))
    return xp


def _readable(a):
    """``a`` itself when kernels can read it through its strides (native byte order, no
    negative stride), else a C-contiguous native copy of the same precision."""
    if a.dtype.isnative and min(a.strides, default=0) >= 0:
        return a
    return np.ascontiguousarray(a, a.dtype.newbyteorder("="))


def _base_view(a):
    """A 1-D view of ``a``'s memory from its first element (non-negative strides)."""
    if _dense(a):                       # dense in some axis order: a view, 50x cheaper
        return a.ravel(order="K")
    span = 1 + sum((n - 1) * s for n, s in zip(a.shape, a.strides)) // a.itemsize
    return np.lib.stride_tricks.as_strided(a, (span,), (a.itemsize,))


def _dense(a):
    """Whether ``a``'s elements fill its memory once each in some axis order (a zero or
    overlapping stride can give a span of ``a.size`` too, whose ``ravel`` would reorder)."""
    if a.size == 0 or a.flags.c_contiguous or a.flags.f_contiguous:
        return True
    step = a.itemsize
    for stride, size in sorted((s, n) for n, s in zip(a.shape, a.strides) if n > 1):
        if stride != step:
            return False
        step *= size
    return True


#: Input rows per task of :func:`_relayout_kernel`, at most: a channels-first source is
#: read eight planes at a time along this many rows.
_RELAYOUT_ROWS = 16


@njit(cache=True, parallel=True)
def _relayout_kernel(src, strides, xp, front, shape, kind):
    """``xp[n, fd + d, fh + h, fw + w, c] = src.flat[n*sn + d*sd + h*sh + w*sw + c*sc]``
    (widened from half precision by ``kind``), one task per run of up to
    :data:`_RELAYOUT_ROWS` input rows of one ``(n, d)``; the loop order follows the
    source's faster axis (a channels-first source is read eight planes at a time: one read
    stream per plane, and more streams than that thrash the cache)."""
    n_, d_, h_, w_, c_ = shape[0], shape[1], shape[2], shape[3], shape[4]
    sn, sd, sh, sw, sc = strides[0], strides[1], strides[2], strides[3], strides[4]
    fd, fh, fw = front[0], front[1], front[2]
    runs = (h_ + _RELAYOUT_ROWS - 1) // _RELAYOUT_ROWS
    for task in prange(n_ * d_ * runs):
        n = task // (d_ * runs)
        d = (task // runs) % d_
        h0 = (task % runs) * _RELAYOUT_ROWS
        h1 = min(h0 + _RELAYOUT_ROWS, h_)
        if sc <= sw:
            for h in range(h0, h1):
                src0 = n * sn + d * sd + h * sh
                dst = xp[n, fd + d, fh + h]
                for w in range(w_):
                    for c in range(c_):
                        dst[fw + w, c] = get(src, src0 + w * sw + c * sc, kind)
        else:
            for c0 in range(0, c_ - 7, 8):
                for h in range(h0, h1):
                    src0 = n * sn + d * sd + h * sh + c0 * sc
                    dst = xp[n, fd + d, fh + h]
                    for w in range(w_):
                        for k in range(8):
                            dst[fw + w, c0 + k] = get(src, src0 + w * sw + k * sc, kind)
            for c in range(c_ - c_ % 8, c_):
                for h in range(h0, h1):
                    src0 = n * sn + d * sd + h * sh + c * sc
                    dst = xp[n, fd + d, fh + h]
                    for w in range(w_):
                        dst[fw + w, c] = get(src, src0 + w * sw, kind)


def pack_weights(weight, groups, nr, correlation=False, dtype=None):
    """The weight as ``wp[g, b, kD, kH, kW, C_in_g, nr]``: each group's output channels in
    blocks of ``nr``, the last block zero-padded. ``weight`` is a transposed
    convolution's ``(C_in, C_out_g, kD, kH, kW)``, or with ``correlation`` a convolution's
    ``(C_out, C_in_g, kD, kH, kW)`` (any strides), packed in ``dtype`` (the engine's;
    default the weight's). One parallel pass (a 512 x 256 x 16 float32 weight: 4 ms
    through NumPy's copies, a third of a HiFi-GAN layer's call), which also widens a
    half-precision weight to float32 (NumPy's float16 cast alone takes 3.6 ms for that
    weight). Returns ``(wp, blocks)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.nd_engine import pack_weights
    >>> w = np.arange(6.0).reshape(1, 3, 1, 1, 2)       # C_in 1, C_out 3, two taps
    >>> wp, blocks = pack_weights(w, 1, 2)
    >>> blocks, wp.reshape(2, 2, 2).tolist()    # [block][tap][channel of the block]
    (2, [[[0.0, 2.0], [1.0, 3.0]], [[4.0, 0.0], [5.0, 0.0]]])
    """
    dtype = weight.dtype if dtype is None else np.dtype(dtype)
    kind = kind_of(weight.dtype) if dtype == np.float32 else PLAIN
    weight = bits(_readable(weight)) if kind != PLAIN else np.asarray(weight, dtype)
    kernel = weight.shape[2:]
    taps = math.prod(kernel)
    if correlation:
        c_out_g, c_in_g = weight.shape[0] // groups, weight.shape[1]
        src = weight.reshape(groups, c_out_g, c_in_g, taps).transpose(0, 2, 1, 3)
    else:
        c_in_g, c_out_g = weight.shape[0] // groups, weight.shape[1]
        src = weight.reshape(groups, c_in_g, c_out_g, taps)
    blocks = -(-c_out_g // nr)
    wp = allocate(groups * blocks * taps * c_in_g * nr, dtype, "the packed weight")
    if wp.size:
        launch(_pack_kernel, src, wp, nr, kind)
    return wp, blocks


@njit(cache=True, notice=False)
def pack(weight, groups, nr, correlation):
    """:func:`pack_weights` of a C-contiguous 5-D weight, from ``@njit`` code (the same
    kernel)."""
    taps = weight.shape[2] * weight.shape[3] * weight.shape[4]
    if correlation:
        c_out_g, c_in_g = weight.shape[0] // groups, weight.shape[1]
        src = weight.reshape((groups, c_out_g, c_in_g, taps)).transpose((0, 2, 1, 3))
    else:
        c_in_g, c_out_g = weight.shape[0] // groups, weight.shape[1]
        src = weight.reshape((groups, c_in_g, c_out_g, taps)).transpose((0, 1, 2, 3))
    blocks = (c_out_g + nr - 1) // nr
    wp = np.empty(groups * blocks * taps * c_in_g * nr, weight.dtype)
    _pack_kernel(src, wp, nr, PLAIN)
    return wp, blocks


#: Input channels per task of :func:`_pack_kernel`: each tap's part of the task is one
#: contiguous run of ``16 * nr`` packed elements.
_PACK_CHANNELS = 16


@njit(cache=True, parallel=True)
def _pack_kernel(src, wp, nr, kind):
    """``wp[g, b, t, ci, j] = src[g, ci, b * nr + j, t]`` (zero past the last channel;
    widened from half-precision bits by ``kind``), one task per group, block and run of
    :data:`_PACK_CHANNELS` input channels; each input channel's block is turned in a
    small buffer, so both sides are read and written in runs."""
    groups, c_in_g, c_out_g, taps = src.shape
    blocks = (c_out_g + nr - 1) // nr
    runs = (c_in_g + _PACK_CHANNELS - 1) // _PACK_CHANNELS
    for job in prange(groups * blocks * runs):
        g = job // (blocks * runs)
        b = (job // runs) % blocks
        c0 = (job % runs) * _PACK_CHANNELS
        valid = min(nr, c_out_g - b * nr)
        buf = np.zeros((taps, nr), wp.dtype)
        for ci in range(c0, min(c0 + _PACK_CHANNELS, c_in_g)):
            for j in range(valid):           # one channel's taps: one run of the source
                for t in range(taps):
                    buf[t, j] = get(src, (g, ci, b * nr + j, t), kind)
            for t in range(taps):            # one run of the packed weight per tap
                at = (((g * blocks + b) * taps + t) * c_in_g + ci) * nr
                for j in range(nr):
                    wp[at + j] = buf[t, j]


@njit(inline="always")
def _put(out, o, sc, acc0, acc1, b0, b1, w, nr, edge, kind):
    """Store one pixel's ``nr`` channels (two vectors plus bias) at ``out.flat[o]``, the
    channels ``sc`` apart; rounded to half precision when ``out`` holds its bits
    (``kind``), a vector at a time where the channels are contiguous."""
    v0 = add(acc0, b0)
    v1 = add(acc1, b1)
    if sc == 1 and nr == 2 * w:
        put_vector(out, o, v0, kind, edge)
        put_vector(out, o + w, v1, kind, edge)
    else:
        store(edge, 0, v0)
        store(edge, w, v1)
        for j in range(nr):
            put(out, o + j * sc, edge[j], kind)


@njit(inline="always")
def _tile(xp, wp, out, tin, twt, p0, p1, p2, p3, p4, p5, o0, o1, o2, o3, o4, o5, valid, cg,
          nrt, sc, b0, b1, nr, edge, kind):
    """One tile: 6 pixels (``valid`` of them stored) x ``nr`` channels. Pixel ``j`` reads
    ``xp.flat[pj + tin[t] + c]`` for every tap ``t`` and input channel ``c`` and is stored
    at ``out.flat[oj]``; ``twt[t]`` is the tap's packed weight offset."""
    w = width(xp)
    c00 = zero(xp)
    c01 = zero(xp)
    c10 = zero(xp)
    c11 = zero(xp)
    c20 = zero(xp)
    c21 = zero(xp)
    c30 = zero(xp)
    c31 = zero(xp)
    c40 = zero(xp)
    c41 = zero(xp)
    c50 = zero(xp)
    c51 = zero(xp)
    for t in range(tin.shape[0]):
        off = tin[t]
        pb = twt[t]
        for c in range(off, off + cg):
            b0v = load(wp, pb)
            b1v = load(wp, pb + w)
            a = broadcast(xp, p0 + c)
            c00 = fmadd(c00, a, b0v)
            c01 = fmadd(c01, a, b1v)
            a = broadcast(xp, p1 + c)
            c10 = fmadd(c10, a, b0v)
            c11 = fmadd(c11, a, b1v)
            a = broadcast(xp, p2 + c)
            c20 = fmadd(c20, a, b0v)
            c21 = fmadd(c21, a, b1v)
            a = broadcast(xp, p3 + c)
            c30 = fmadd(c30, a, b0v)
            c31 = fmadd(c31, a, b1v)
            a = broadcast(xp, p4 + c)
            c40 = fmadd(c40, a, b0v)
            c41 = fmadd(c41, a, b1v)
            a = broadcast(xp, p5 + c)
            c50 = fmadd(c50, a, b0v)
            c51 = fmadd(c51, a, b1v)
            pb += nrt
    _put(out, o0, sc, c00, c01, b0, b1, w, nr, edge, kind)
    if valid > 1:
        _put(out, o1, sc, c10, c11, b0, b1, w, nr, edge, kind)
    if valid > 2:
        _put(out, o2, sc, c20, c21, b0, b1, w, nr, edge, kind)
    if valid > 3:
        _put(out, o3, sc, c30, c31, b0, b1, w, nr, edge, kind)
    if valid > 4:
        _put(out, o4, sc, c40, c41, b0, b1, w, nr, edge, kind)
    if valid > 5:
        _put(out, o5, sc, c50, c51, b0, b1, w, nr, edge, kind)


@njit(inline="always")
def _start_pixel(i, nq):
    """The coordinates ``(n, qd, qh, qw)`` of pixel ``i`` of a phase, its pixels numbered
    over (n, qd, qh, qw), qw fastest (counted from the phase's first ``q``)."""
    qw = i % nq[2]
    i //= nq[2]
    qh = i % nq[1]
    i //= nq[1]
    return i // nq[0], i % nq[0], qh, qw


@njit(inline="always")
def _pixel(n, qd, qh, qw, i, last, nq, q0, steps, ob, geo, o_strides):
    """Input and output offsets of the pixel at coordinates ``(n, qd, qh, qw)`` (pixel
    ``i`` of its phase), and the coordinates of pixel ``i + 1``; past ``last``, the same pixel again
    (the tile's spare lanes recompute it and are not stored). Counting up, not dividing:
    six divisions per pixel cost as much as a shallow layer's multiply-adds."""
    dp, hp, wpix, c_in = geo[1], geo[2], geo[3], geo[4]
    x_off = ((((n * dp + (q0[0] + qd) * steps[0, 0]) * hp + (q0[1] + qh) * steps[0, 1])
              * wpix + (q0[2] + qw) * steps[0, 2]) * c_in)
    o_off = (n * o_strides[0] + ((q0[0] + qd) * steps[1, 0] + ob[0]) * o_strides[1]
             + ((q0[1] + qh) * steps[1, 1] + ob[1]) * o_strides[2]
             + ((q0[2] + qw) * steps[1, 2] + ob[2]) * o_strides[3])
    if i < last:
        qw += 1
        if qw == nq[2]:
            qw = 0
            qh += 1
            if qh == nq[1]:
                qh = 0
                qd += 1
                if qd == nq[0]:
                    qd = 0
                    n += 1
    return x_off, o_off, n, qd, qh, qw


@njit(inline="always")
def _task(task, tasks, phase, tap_k, tap_o, geo, nrt):
    """What a task of :func:`_kernel` or :func:`_narrow_kernel` needs: its taps' input
    offsets and packed-weight offsets, and ``info``: the phase's pixel counts, first ``q``
    and output bases per axis, its last pixel, first and end tile, group and block (one
    array: Numba's parallel analysis fails on nested tuples returned here)."""
    hp, wpix, c_in = geo[2], geo[3], geo[4]
    cg, blocks = geo[5], geo[7]
    k_d, k_h, k_w = geo[8], geo[9], geo[10]
    pd, ph, pw = phase[0, tasks[task, 0]], phase[1, tasks[task, 1]], phase[2, tasks[task, 2]]
    t0, t1, g, b = tasks[task, 3], tasks[task, 4], tasks[task, 5], tasks[task, 6]
    nq = (pd[1], ph[1], pw[1])
    nd, nh, nw = pd[4], ph[4], pw[4]
    tin = np.empty(nd * nh * nw, np.int64)
    twt = np.empty(nd * nh * nw, np.int64)
    i = 0
    for jd in range(pd[3], pd[3] + nd):
        for jh in range(ph[3], ph[3] + nh):
            for jw in range(pw[3], pw[3] + nw):
                tin[i] = ((tap_o[jd] * hp + tap_o[jh]) * wpix + tap_o[jw]) * c_in + g * cg
                twt[i] = (((((g * blocks + b) * k_d + tap_k[jd]) * k_h + tap_k[jh]) * k_w
                           + tap_k[jw]) * cg * nrt)
                i += 1
    info = np.array([nq[0], nq[1], nq[2], pd[0], ph[0], pw[0], pd[2], ph[2], pw[2],
                     geo[0] * nq[0] * nq[1] * nq[2] - 1, t0, t1, g, b], np.int64)
    return tin, twt, info


@njit(cache=True, parallel=True)
def _kernel(xp, wp, bp, out, tasks, phase, tap_k, tap_o, steps, geo, o_strides, kind):
    """Every task: tiles ``t0 <= t < t1`` of one phase's pixels (6 per tile, numbered over
    images and rows), one group and one block of output channels (two vectors).
    ``phase[a, i]`` is ``(first q, count, output base, first tap, taps)`` (:func:`plan`);
    ``out`` of the compute dtype, or ``uint16`` bits of the half-precision ``kind``
    (:func:`_put`)."""
    cg, c_out_g = geo[5], geo[6]
    blocks = geo[7]
    sc = o_strides[4]
    nrt = 2 * width(xp)
    for task in prange(tasks.shape[0]):
        tin, twt, info = _task(task, tasks, phase, tap_k, tap_o, geo, nrt)
        nq, q0, ob = (info[0], info[1], info[2]), (info[3], info[4], info[5]), \
            (info[6], info[7], info[8])
        last, t0, t1, g, b = info[9], info[10], info[11], info[12], info[13]
        nr = min(nrt, c_out_g - b * nrt)
        edge = np.empty(nrt, xp.dtype)
        b0 = load(bp, (g * blocks + b) * nrt)
        b1 = load(bp, (g * blocks + b) * nrt + width(xp))
        channel = (g * c_out_g + b * nrt) * sc
        n, qd, qh, qw = _start_pixel(t0 * MR, nq)
        for tile in range(t0, t1):
            first = tile * MR
            p0, o0, n, qd, qh, qw = _pixel(n, qd, qh, qw, first, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p1, o1, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 1, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p2, o2, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 2, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p3, o3, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 3, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p4, o4, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 4, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p5, o5, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 5, last, nq, q0,
                                           steps, ob, geo, o_strides)
            _tile(xp, wp, out, tin, twt, p0, p1, p2, p3, p4, p5, o0 + channel,
                  o1 + channel, o2 + channel, o3 + channel, o4 + channel, o5 + channel,
                  min(MR, last + 1 - first), cg, nrt, sc, b0, b1, nr, edge, kind)


#: Pixels per tile of :func:`_narrow_kernel`: one vector of output channels leaves the
#: registers for eight pixels' sums.
NARROW_MR = 8


def tile_shape(c_out_g, dtype):
    """``(output channels, pixels)`` of the engine's register tile for ``c_out_g`` output
    channels per group: one vector by :data:`NARROW_MR` pixels where one vector holds
    them, else two vectors by ``MR``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.nd_engine import tile_shape
    >>> tile_shape(3, np.float64)[1], tile_shape(300, np.float64)[1]
    (8, 6)
    """
    w = lanes(dtype)
    return (w, NARROW_MR) if c_out_g <= w else (2 * w, MR)


@njit(inline="always")
def _put1(out, o, sc, acc, b0, w, nr, edge, kind):
    """Store one pixel's ``nr`` channels (one vector plus bias) at ``out.flat[o]``, as
    :func:`_put`."""
    v = add(acc, b0)
    if sc == 1 and nr == w:
        put_vector(out, o, v, kind, edge)
    else:
        store(edge, 0, v)
        for j in range(nr):
            put(out, o + j * sc, edge[j], kind)


@njit(cache=True, parallel=True)
def _narrow_kernel(xp, wp, bp, out, tasks, phase, tap_k, tap_o, steps, geo, o_strides,
                   kind):
    """:func:`_kernel` for at most one vector of output channels per group: tiles of
    :data:`NARROW_MR` pixels x one vector, so no lane is wasted on a second vector."""
    cg, c_out_g = geo[5], geo[6]
    blocks = geo[7]
    sc = o_strides[4]
    w = width(xp)
    for task in prange(tasks.shape[0]):
        tin, twt, info = _task(task, tasks, phase, tap_k, tap_o, geo, w)
        nq, q0, ob = (info[0], info[1], info[2]), (info[3], info[4], info[5]), \
            (info[6], info[7], info[8])
        last, t0, t1, g, b = info[9], info[10], info[11], info[12], info[13]
        nr = min(w, c_out_g - b * w)
        edge = np.empty(w, xp.dtype)
        b0 = load(bp, (g * blocks + b) * w)
        channel = (g * c_out_g + b * w) * sc
        n, qd, qh, qw = _start_pixel(t0 * NARROW_MR, nq)
        for tile in range(t0, t1):
            first = tile * NARROW_MR
            p0, o0, n, qd, qh, qw = _pixel(n, qd, qh, qw, first, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p1, o1, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 1, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p2, o2, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 2, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p3, o3, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 3, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p4, o4, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 4, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p5, o5, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 5, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p6, o6, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 6, last, nq, q0,
                                           steps, ob, geo, o_strides)
            p7, o7, n, qd, qh, qw = _pixel(n, qd, qh, qw, first + 7, last, nq, q0,
                                           steps, ob, geo, o_strides)
            c0 = zero(xp)
            c1 = zero(xp)
            c2 = zero(xp)
            c3 = zero(xp)
            c4 = zero(xp)
            c5 = zero(xp)
            c6 = zero(xp)
            c7 = zero(xp)
            for t in range(tin.shape[0]):
                off = tin[t]
                pb = twt[t]
                for c in range(off, off + cg):
                    v = load(wp, pb)
                    c0 = fmadd(c0, broadcast(xp, p0 + c), v)
                    c1 = fmadd(c1, broadcast(xp, p1 + c), v)
                    c2 = fmadd(c2, broadcast(xp, p2 + c), v)
                    c3 = fmadd(c3, broadcast(xp, p3 + c), v)
                    c4 = fmadd(c4, broadcast(xp, p4 + c), v)
                    c5 = fmadd(c5, broadcast(xp, p5 + c), v)
                    c6 = fmadd(c6, broadcast(xp, p6 + c), v)
                    c7 = fmadd(c7, broadcast(xp, p7 + c), v)
                    pb += w
            valid = min(NARROW_MR, last + 1 - first)
            _put1(out, o0 + channel, sc, c0, b0, w, nr, edge, kind)
            if valid > 1:
                _put1(out, o1 + channel, sc, c1, b0, w, nr, edge, kind)
            if valid > 2:
                _put1(out, o2 + channel, sc, c2, b0, w, nr, edge, kind)
            if valid > 3:
                _put1(out, o3 + channel, sc, c3, b0, w, nr, edge, kind)
            if valid > 4:
                _put1(out, o4 + channel, sc, c4, b0, w, nr, edge, kind)
            if valid > 5:
                _put1(out, o5 + channel, sc, c5, b0, w, nr, edge, kind)
            if valid > 6:
                _put1(out, o6 + channel, sc, c6, b0, w, nr, edge, kind)
            if valid > 7:
                _put1(out, o7 + channel, sc, c7, b0, w, nr, edge, kind)


@njit(cache=True, notice=False)
def run_jit(xflat, x_shape, x_strides, weight, bias, out, o_shape, o_strides, stride, pads,
            dilation, groups, correlation):
    """:func:`conv_transpose` (or with ``correlation`` :func:`correlate`) from ``@njit``
    code, on the tables of :func:`plan_tables`, :func:`pack` and :func:`task_table`.

    ``xflat`` and ``out`` are the flat memory of the input and the result, both of one
    float dtype, indexed ``(N, C, D, H, W)`` by ``x_shape``/``o_shape`` and the element
    strides ``x_strides``/``o_strides`` (in that order; channels-first or channels-last
    memory); ``weight`` 5-D of that dtype, ``bias`` ``(C_out,)`` or empty; ``stride`` and
    ``dilation`` ``int64`` arrays of 3, ``pads`` ``(3, 2)``. Validated arguments and, for
    the transposed convolution, finite weights (:func:`supported`). The whole batch runs
    as one chunk (no workspace limit: the zero-bordered copy holds all ``N`` images), and
    the result is written through its strides (no channels-last buffer for a
    channels-first result): the same sums as :func:`conv_transpose`, bitwise.
    """
    n, c_in = x_shape[0], x_shape[1]
    k_sizes = np.array((weight.shape[2], weight.shape[3], weight.shape[4]), np.int64)
    phase, tap_k, tap_o, steps, front, back, counts, dead = plan_tables(
        x_shape[2:], k_sizes, stride, pads, dilation, o_shape[2:], correlation)
    if correlation:
        c_in_g, c_out_g = weight.shape[1], weight.shape[0] // groups
    else:
        c_in_g, c_out_g = weight.shape[0] // groups, weight.shape[1]
    xp = np.zeros((n, x_shape[2] + front[0] + back[0], x_shape[3] + front[1] + back[1],
                   x_shape[4] + front[2] + back[2], c_in), xflat.dtype)
    nrt = 2 * width(xp)
    wp, blocks = pack(weight, groups, nrt, correlation)
    bp = np.zeros(groups * blocks * nrt, xflat.dtype)
    for g in range(groups):
        for j in range(bias.shape[0] // groups):
            bp[g * blocks * nrt + j] = bias[g * c_out_g + j]
    if dead:            # outputs no tap reaches: the bias alone (zeros without)
        for i_n in range(o_shape[0]):
            for c in range(o_shape[1]):
                v = bias[c] if bias.shape[0] else 0.0
                for d in range(o_shape[2]):
                    for h in range(o_shape[3]):
                        base = (i_n * o_strides[0] + c * o_strides[1] + d * o_strides[2]
                                + h * o_strides[3])
                        for w in range(o_shape[4]):
                            out[base + w * o_strides[4]] = v
    tasks = task_table(phase, counts, n, groups, blocks, _THREADS)
    if tasks.shape[0]:
        _relayout_kernel(xflat, np.array((x_strides[0], x_strides[2], x_strides[3],
                                          x_strides[4], x_strides[1])),
                         xp, front, np.array((n, x_shape[2], x_shape[3], x_shape[4], c_in)),
                         PLAIN)
        geo = np.array((n, xp.shape[1], xp.shape[2], xp.shape[3], c_in, c_in_g, c_out_g,
                        blocks, k_sizes[0], k_sizes[1], k_sizes[2]), np.int64)
        _kernel(xp.ravel(), wp, bp, out, tasks, phase, tap_k, tap_o, steps, geo,
                np.array((o_strides[0], o_strides[2], o_strides[3], o_strides[4],
                          o_strides[1])), PLAIN)


#: The task count :func:`run_jit` plans for (the tasks never change a result).
_THREADS = numba.config.NUMBA_NUM_THREADS


def image_bytes(x_shape, w_shape, stride, pads, dilation, out_shape, itemsize,
                correlation=False):
    """Bytes of one image's zero-bordered copy (:func:`relayout`): the engine's buffer per
    image, which the batch is cut to fit into the workspace limit."""
    p = plan(x_shape, w_shape, stride, pads, dilation, out_shape, correlation)
    sizes = [n + f + b for n, f, b in zip(x_shape[2:], p["front"], p["back"])]
    return math.prod(sizes) * x_shape[1] * itemsize


def conv_transpose(x, weight, bias, stride, pads, dilation, groups, out, channels_last,
                   limit=None):
    """``out`` = the transposed convolution of ``x`` (5-D; rank 1 and 2 as unit depth and
    height), written through ``out``'s strides; ``channels_last`` says the layout of ``x``
    and ``out`` (``out`` dense in its layout). Validated arguments and finite weights
    (:func:`supported`); the operands of any float dtype (float16 and bfloat16 included),
    ``out`` of native byte order and of the result dtype, computed in float32 when that is
    half precision; the batch runs in chunks whose copies fit in ``limit`` bytes (one
    image at least); returns ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import nd_engine
    >>> x = np.ones((1, 1, 1, 1, 2), np.float32)
    >>> out = np.empty((1, 1, 1, 1, 5), np.float32)
    >>> nd_engine.conv_transpose(x, np.ones((1, 1, 1, 1, 3), np.float32), None, (1, 1, 2),
    ...                          ((0, 0),) * 3, (1, 1, 1), 1, out, False)[0, 0, 0, 0]
    array([1., 1., 2., 1., 1.], dtype=float32)
    """
    return _run(x, weight, bias, stride, pads, dilation, groups, out, channels_last, limit,
                False)


def correlate(x, weight, bias, stride, pads, dilation, groups, out, channels_last,
              limit=None):
    """``out`` = the correlation (``conv3d``'s forward; rank 1 and 2 as unit depth and
    height) of ``x`` with ``weight`` ``(C_out, C_in_g, kD, kH, kW)``, as
    :func:`conv_transpose` otherwise; every weight is supported (the padding's zeros are
    multiplied, as PyTorch's convolutions do).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import nd_engine
    >>> x = np.arange(5.0).reshape(1, 1, 1, 1, 5)
    >>> out = np.empty((1, 1, 1, 1, 2))
    >>> nd_engine.correlate(x, np.ones((1, 1, 1, 1, 2)), None, (1, 1, 2), ((0, 0),) * 3,
    ...                     (1, 1, 1), 1, out, False)[0, 0, 0, 0]
    array([1., 5.])
    """
    return _run(x, weight, bias, stride, pads, dilation, groups, out, channels_last, limit,
                True)


def _run(x, weight, bias, stride, pads, dilation, groups, out, channels_last, limit,
         correlation):
    dtype = compute_dtype(out.dtype)
    first = (lambda a: a.transpose(0, 4, 1, 2, 3)) if channels_last else (lambda a: a)
    xf, view = first(x), first(out)
    x_shape, out_shape = xf.shape, view.shape
    p = plan(x_shape, weight.shape, stride, pads, dilation, out_shape, correlation)
    c_in_g = weight.shape[1] if correlation else weight.shape[0] // groups
    c_out_g = weight.shape[0] // groups if correlation else weight.shape[1]
    nrt, mr = tile_shape(c_out_g, dtype)
    kernel = _narrow_kernel if mr == NARROW_MR else _kernel
    wp, blocks = pack_weights(weight, groups, nrt, correlation, dtype)
    bp = np.zeros(groups * blocks * nrt, dtype)
    if bias is not None:
        bp.reshape(groups, blocks * nrt)[:, :c_out_g] = np.asarray(bias, dtype).reshape(
            groups, c_out_g)
    n = x_shape[0]
    # the kernel writes the result's dtype: a half-precision result (computed in float32)
    # as its bits, each vector of channels rounded as it is stored (vcvtps2ph)
    kind = kind_of(out.dtype)
    item = out.dtype.itemsize
    # channels-first results are computed channels-last, then stored transposed (a
    # scattered store per tile costs more than one pass over the output)
    direct = view.strides[1] == item
    padded = [size + f + b for size, f, b in zip(x_shape[2:], p["front"], p["back"])]
    per_image = math.prod(padded) * x_shape[1] * dtype.itemsize     # as image_bytes
    if not direct:
        per_image += math.prod(out_shape[1:]) * item
    chunk = n if limit is None else max(1, min(n, limit // max(per_image, 1)))
    temp = 0 if direct else chunk * math.prod(out_shape[1:])
    tasks = None
    # the copy and the channels-first result's channels-last form come from the thread's
    # workspace, kept between calls (fresh memory's page faults cost a tenth of a pass)
    with workspace(dtype, chunk * math.prod(padded) * x_shape[1],
                   -(-temp * item // dtype.itemsize)) as (xbuf, tbuf):
        tbuf = bits(tbuf.view(out.dtype))       # the result's dtype (half: its bits)
        for n0 in range(0, n, chunk):
            part = min(chunk, n - n0)
            if tasks is None or part != chunk:
                tasks = _tasks(p, part, groups, blocks, numba.config.NUMBA_NUM_THREADS, mr)
            target = bits(view[n0:n0 + part])
            if not direct:
                target = tbuf[:part * math.prod(out_shape[1:])].reshape(
                    (part, *out_shape[2:], out_shape[1])).transpose(0, 4, 1, 2, 3)
            if p["dead"]:           # outputs no tap reaches: the bias alone (zeros without)
                target[...] = 0 if bias is None else bits(
                    _rounded(np.asarray(bias, dtype), out.dtype)).reshape((-1, 1, 1, 1))
            if len(tasks):
                xp = relayout(xf[n0:n0 + part], p["front"], p["back"], False, dtype,
                              into=xbuf)
                geo = np.array([part, *xp.shape[1:], c_in_g, c_out_g, blocks,
                                *weight.shape[2:]], np.int64)
                sn, sc, sd, sh, sw = (s // item for s in target.strides)
                launch(kernel, xp.ravel(), wp, bp, _base_view(target), tasks, p["phase"],
                       p["tap_k"], p["tap_o"], p["steps"], geo,
                       np.array([sn, sd, sh, sw, sc], np.int64), kind)
            if not direct:
                _store(target.transpose(0, 2, 3, 4, 1), bits(view[n0:n0 + part]))
    return out


def _rounded(a, dtype):
    """The float array ``a`` in the result's ``dtype``: rounded as the kernels round
    (:func:`~convtranspose.cpu.half.narrow`) when that is half precision."""
    return narrow(a, dtype) if is_half(dtype) else a


def _store(src, dst):
    """``dst[...] = src`` for a channels-last ``src`` (C-contiguous float ``(N, D, H, W,
    C)``) and a channels-first indexed ``dst`` ``(N, C, D, H, W)`` of any strides (native
    byte order) and dtype, rounded to it when it is half precision (a ``uint16`` ``src``
    and ``dst``: half-precision bits, copied as they are); one pass in parallel."""
    strides = np.array([s // dst.itemsize for s in dst.strides], np.int64)
    n, c, d, h, w = dst.shape
    if (strides[4] == 1 or w == 1) and (strides[3] == w or h == 1) and \
            (strides[2] == h * w or d == 1):     # each plane's pixels contiguous
        launch(_store_planes_kernel, src.reshape(n, d * h * w, c), strides[0], strides[1],
               _base_view(bits(dst)), kind_of(dst.dtype))
    else:
        launch(_store_kernel, src, strides, _base_view(bits(dst)), kind_of(dst.dtype))


#: Pixels per task of :func:`_store_planes_kernel`: its source block (pixels x
#: channels) stays in L1/L2 while eight planes are written contiguously from it.
_PLANE_BLOCK = 512


@njit(cache=True, parallel=True)
def _store_planes_kernel(src, sn, sc, dst, kind):
    """``dst.flat[n*sn + c*sc + s] = src[n, s, c]`` (rounded by ``kind``): a channels-last
    ``src`` ``(N, S, C)`` into planes of contiguous pixels; a task is a block of pixels, written eight planes at
    a time (one write stream per plane: more streams thrash the cache's sets, since the
    planes often lie a power of two apart)."""
    n_, s_, c_ = src.shape
    blocks = (s_ + _PLANE_BLOCK - 1) // _PLANE_BLOCK
    for task in prange(n_ * blocks):
        n = task // blocks
        s0 = (task % blocks) * _PLANE_BLOCK
        s1 = min(s0 + _PLANE_BLOCK, s_)
        for c in range(0, c_ - 7, 8):
            base = n * sn + c * sc
            for s in range(s0, s1):
                for k in range(8):
                    put(dst, base + k * sc + s, src[n, s, c + k], kind)
        for c in range(c_ - c_ % 8, c_):
            base = n * sn + c * sc
            for s in range(s0, s1):
                put(dst, base + s, src[n, s, c], kind)


@njit(cache=True, parallel=True)
def _store_kernel(src, strides, dst, kind):
    """``dst.flat[n*sn + c*sc + d*sd + h*sh + w*sw] = src[n, d, h, w, c]`` (rounded by
    ``kind``), one task per row ``(n, d, h)``; the loop order follows the destination's
    faster axis (a channels-first plane's row is written contiguously)."""
    n_, d_, h_, w_, c_ = src.shape
    sn, sc, sd, sh, sw = strides[0], strides[1], strides[2], strides[3], strides[4]
    for row in prange(n_ * d_ * h_):
        n = row // (d_ * h_)
        d = (row // h_) % d_
        h = row % h_
        line = src[n, d, h]
        base = n * sn + d * sd + h * sh
        if sc <= sw:
            for w in range(w_):
                for c in range(c_):
                    put(dst, base + c * sc + w * sw, line[w, c], kind)
        else:
            for c in range(c_):
                for w in range(w_):
                    put(dst, base + c * sc + w * sw, line[w, c], kind)


#: Tiles per task, at most: enough tasks to balance the threads, each long enough that
#: its weight panel (in L2) serves many tiles.
_TILES_PER_TASK = 32


def _tasks(p, n, groups, blocks, threads, mr=MR):
    """``(i_d, i_h, i_w, t0, t1, g, b)``: the ``mr``-pixel tiles of every phase (phases indexed
    per axis as in ``p["phase"]``), in runs of at most :data:`_TILES_PER_TASK`, cut into at
    least ``4 * threads`` tasks; cached per problem."""
    return _cached_tasks(p["key"], n, groups, blocks, threads, mr)


@byte_bounded_cache()
def _cached_tasks(key, n, groups, blocks, threads, mr):
    p = plan((0, 0, *key[0]), (0, 0, *key[1]), *key[2:5], (0, 0, *key[5]), key[6])
    tasks = task_table(p["phase"], np.array(p["phases"], np.int64), n, groups, blocks,
                       threads, mr)
    tasks.flags.writeable = False
    return tasks


@njit(cache=True, notice=False)
def task_table(phase, counts, n, groups, blocks, threads, mr=MR):
    """The rows of :func:`_tasks` for the tables of :func:`plan_tables` (``counts``
    phases per axis) and ``n`` images; callable from ``@njit`` code."""
    phases = counts[0] * counts[1] * counts[2]
    tiles = np.empty(phases, np.int64)
    total = 0
    i = 0
    for i_d in range(counts[0]):
        for i_h in range(counts[1]):
            for i_w in range(counts[2]):
                pixels = n * phase[0, i_d, 1] * phase[1, i_h, 1] * phase[2, i_w, 1]
                tiles[i] = (pixels + mr - 1) // mr
                total += tiles[i]
                i += 1
    total *= groups * blocks
    per_task = max(1, min(_TILES_PER_TASK, total // max(1, 4 * threads)))
    rows = 0
    for i in range(phases):
        rows += groups * blocks * ((tiles[i] + per_task - 1) // per_task)
    tasks = np.empty((rows, 7), np.int64)
    r = 0
    i = 0
    for i_d in range(counts[0]):
        for i_h in range(counts[1]):
            for i_w in range(counts[2]):
                for g in range(groups):
                    for b in range(blocks):
                        for t0 in range(0, tiles[i], per_task):
                            tasks[r, 0], tasks[r, 1], tasks[r, 2] = i_d, i_h, i_w
                            tasks[r, 3], tasks[r, 4] = t0, min(t0 + per_task, tiles[i])
                            tasks[r, 5], tasks[r, 6] = g, b
                            r += 1
                i += 1
    return tasks
