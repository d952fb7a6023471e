"""Numba CPU kernels for ``conv2d`` and the gradients of both convolutions.

Two operators cover every gradient:

* a **correlation** ``out[n, co, oh, ow] = sum x[n, ci, oh*sH + kh*dH - top,
  ow*sW + kw*dW - left] * weight[co, c, kh, kw]`` (``conv2d``'s forward, and the
  transposed convolution's input gradient, with the same weight);
* a **weight gradient** ``gw[ca, j, kh, kw] = sum_{n, oh, ow} a[n, ca, oh, ow] *
  b[n, cb, oh*sH + kh*dH - top, ow*sW + kw*dW - left]``, where ``a`` lies on the
  strided grid and ``b`` is sampled (for a transposed convolution ``a = x`` and
  ``b = grad_output``; for ``conv2d`` ``a = grad_output`` and ``b = x``).

Each has a gather kernel (``direct``: every output element is written by one
``prange`` iteration, in a fixed order of taps) and a GEMM form (``im2col``), which, as
the forward's :mod:`~convtranspose.cpu.im2col`, cuts the problem into independent tasks
(chunks of images, or bands of rows of one image, :func:`plan_tasks`) run in a
``prange``; each gathers its patches into its thread's slot of im2col's workspace and
calls a single-threaded BLAS GEMM (``np.dot``) per group:

* correlation (:func:`correlate_gemm_kernel`): a task writes its own output rows;
* weight gradient (:func:`weight_grad_gemm_kernel`): a task sums its pixels' products
  into a partial gradient of its own, and :func:`sum_partials` adds the partials in task
  order.

The tasks are fixed by the problem and the process's thread count
(``NUMBA_NUM_THREADS``), never by ``numba.set_num_threads``, so no result depends on
the number of threads in use. The kernels and the helpers they call live in this one
module because Numba's disk cache keys a kernel on its own file.
"""
from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from numba import prange

from .._jit import njit

from .._threading import launch
from . import deconv
from .blas import single_threaded_blas
from .direct import correlation_uses_engine, run_correlation, weight_grad_uses_engine
from .im2col import _BANDS_PER_THREAD, _TASKS_PER_THREAD, _table
from .workspace import get_workspace_limit, workspace
from .im2col import _COL2IM_MIN_COLS as _MIN_COLS
from .kernels import copy_rows

__all__ = ["correlate", "weight_grad", "correlate_kernel", "weight_grad_kernel",
           "correlate_gemm_kernel", "weight_grad_gemm_kernel", "sum_partials", "plan_tasks",
           "plan_weight_grad", "channel_sums"]

# Contraction and reassociation; no ``nnan``/``ninf``, so NaN and Inf propagate.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True)
def _span(off, s, src_len, dst_len):
    """Range ``lo <= o < hi`` of ``o`` in ``[0, dst_len)`` with ``0 <= o*s + off < src_len``."""
    lo = max(0, -(off // s))                 # ceil(-off / s)
    hi = min(dst_len, (src_len - 1 - off) // s + 1)
    return lo, max(lo, hi)


@njit(cache=True, fastmath=FASTMATH)
def _write_row(row, src, bias, co):
    """``row[:] = src``, plus ``bias[co]`` unless ``bias`` is empty."""
    if bias.shape[0] > 0:
        bv = bias[co]
        for ow in range(row.shape[0]):
            row[ow] = src[ow] + bv
    else:
        for ow in range(row.shape[0]):
            row[ow] = src[ow]


#: Output columns per task of :func:`correlate_kernel`, at most: a long row (a 1-D
#: signal) is cut into bands, so its sums stay in L1 and the bands run in parallel
#: (each element's terms are added in the same order either way).
_BAND = 1024


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def correlate_kernel(x, weight, bias, out, sh, sw, dh, dw, top, left, groups):
    """Gather-form strided, dilated, grouped correlation, one band of at most
    :data:`_BAND` columns of an output row per iteration.

    ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in // groups, kH, kW), ``bias`` (C_out,)
    or empty, ``out`` (N, C_out, H_out, W_out): C-contiguous, one dtype. Taps that fall
    outside ``x`` read zero.
    """
    n_img, h, w = x.shape[0], x.shape[2], x.shape[3]
    c_out, c_in_g, k_h, k_w = weight.shape
    h_out, w_out = out.shape[2], out.shape[3]
    c_out_g = c_out // groups
    bands = (w_out + _BAND - 1) // _BAND
    for task in prange(n_img * c_out * h_out * bands):
        r = task // bands
        b0 = (task % bands) * _BAND
        b1 = min(b0 + _BAND, w_out)
        oh = r % h_out
        co = (r // h_out) % c_out
        n = r // (h_out * c_out)
        g = co // c_out_g
        acc = np.zeros(b1 - b0, out.dtype)
        for kh in range(k_h):
            ih = oh * sh + kh * dh - top
            if ih < 0 or ih >= h:
                continue
            for c in range(c_in_g):
                xrow = x[n, g * c_in_g + c, ih]
                for kw in range(k_w):
                    wv = weight[co, c, kh, kw]
                    off = kw * dw - left
                    lo, hi = _span(off, sw, w, w_out)
                    lo, hi = max(lo, b0), min(hi, b1)
                    if hi <= lo:
                        continue
                    # slices indexed from 0: Numba's negative-index handling of
                    # ``xrow[ow + off]`` kept LLVM from vectorising (16x slower)
                    dst = acc[lo - b0:hi - b0]
                    if sw == 1:
                        src = xrow[lo + off:hi + off]
                        for i in range(hi - lo):
                            dst[i] += wv * src[i]
                    else:
                        src = xrow[lo * sw + off:(hi - 1) * sw + off + 1:sw]
                        for i in range(hi - lo):
                            dst[i] += wv * src[i]
        _write_row(out[n, co, oh, b0:b1], acc, bias, co)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def weight_grad_kernel(a, b, gw, sh, sw, dh, dw, top, left, groups):
    """Gather-form weight gradient, one ``gw[ca, j, kh, :]`` row per iteration.

    ``a`` (N, C_a, H_o, W_o) on the strided grid, ``b`` (N, C_b, H, W) sampled, ``gw``
    (C_a, C_b // groups, kH, kW): C-contiguous, one dtype. Each row sums over images,
    rows and columns in a fixed order.
    """
    n_img, c_a, h_o, w_o = a.shape
    h, w = b.shape[2], b.shape[3]
    c_b_g, k_h, k_w = gw.shape[1], gw.shape[2], gw.shape[3]
    c_a_g = c_a // groups
    for r in prange(c_a * c_b_g * k_h):
        kh = r % k_h
        j = (r // k_h) % c_b_g
        ca = r // (k_h * c_b_g)
        cb = (ca // c_a_g) * c_b_g + j
        acc = np.zeros(k_w, gw.dtype)
        for n in range(n_img):
            for oh in range(h_o):
                ih = oh * sh + kh * dh - top
                if ih < 0 or ih >= h:
                    continue
                arow = a[n, ca, oh]
                brow = b[n, cb, ih]
                for kw in range(k_w):
                    off = kw * dw - left
                    lo, hi = _span(off, sw, w, w_o)
                    if hi > lo:
                        # a typed scalar accumulator, so the loop vectorises
                        s = arow[lo] * brow[lo * sw + off]
                        if sw == 1:
                            for ow in range(lo + 1, hi):
                                s += arow[ow] * brow[ow + off]
                        else:
                            for ow in range(lo + 1, hi):
                                s += arow[ow] * brow[ow * sw + off]
                        acc[kw] += s
        row = gw[ca, j, kh]
        for kw in range(k_w):
            row[kw] = acc[kw]


@njit(cache=True, fastmath=FASTMATH)
def _gather_cols(src, c0, n0, m, oh_a, oh_b, ow_a, ow_b, k_h, k_w, sh, sw, dh, dw, top, left,
                 cols):
    """Patches of channels ``c0 ..`` of images ``n0 .. n0+m`` of ``src`` into ``cols``.

    ``cols`` (C*kH*kW, m*(oh_b - oh_a)*(ow_b - ow_a)): row ``(c, kh, kw)``, column ``(i,
    oh - oh_a, ow - ow_a)`` gets ``src[n0 + i, c0 + c, oh*sH + kh*dH - top, ow*sW + kw*dW -
    left]``, or zero where that falls outside ``src`` (N, C_src, H, W).
    """
    h, w = src.shape[2], src.shape[3]
    rows, w_n = oh_b - oh_a, ow_b - ow_a
    c_n = cols.shape[0] // (k_h * k_w)
    for c in range(c_n):
        for kh in range(k_h):
            for kw in range(k_w):
                dst_row = cols[(c * k_h + kh) * k_w + kw]
                off = kw * dw - left
                lo, hi = _span(off, sw, w, ow_b)
                lo = min(max(lo, ow_a), ow_b) - ow_a    # taps wholly in the padding, and
                hi = max(min(hi, ow_b) - ow_a, lo)      # the band's columns, from its start
                off += ow_a * sw
                for i in range(m):
                    for r in range(rows):
                        dst = dst_row[(i * rows + r) * w_n:(i * rows + r + 1) * w_n]
                        ih = (oh_a + r) * sh + kh * dh - top
                        if ih < 0 or ih >= h:
                            for ow in range(w_n):
                                dst[ow] = 0
                            continue
                        srow = src[n0 + i, c0 + c, ih]
                        for ow in range(lo):
                            dst[ow] = 0
                        if sw == 1:      # contiguous: a plain copy the compiler vectorises
                            for ow in range(lo, hi):
                                dst[ow] = srow[ow + off]
                        else:
                            for ow in range(lo, hi):
                                dst[ow] = srow[ow * sw + off]
                        for ow in range(hi, w_n):
                            dst[ow] = 0


@njit(cache=True, fastmath=FASTMATH)
def _correlate_task(t, x, w3, bias, out, tasks, ws, slot, sh, sw, dh, dw, top, left, k_h, k_w):
    """Task ``t`` of :func:`correlate_gemm_kernel`."""
    groups, c_out_g, taps = w3.shape
    c_in_g = taps // (k_h * k_w)
    h_o, w_o = out.shape[2], out.shape[3]
    n0, m, oh_a, oh_b = tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3]
    ow_a, ow_b = tasks[t, 4], tasks[t, 5]
    rows, w_n = oh_b - oh_a, ow_b - ow_a
    pix = m * rows * w_n
    whole = m == 1 and rows == h_o and w_n == w_o   # the GEMM writes the channels in place
    base = numba.get_thread_id() * slot
    cols = ws[base:base + taps * pix].reshape((taps, pix))
    n_res = 0 if whole else c_out_g
    res = ws[base + taps * pix:base + (taps + n_res) * pix].reshape((n_res, pix))
    has_bias = bias.shape[0] > 0
    for g in range(groups):
        _gather_cols(x, g * c_in_g, n0, m, oh_a, oh_b, ow_a, ow_b, k_h, k_w, sh, sw, dh, dw,
                     top, left, cols)
        if whole:
            dst = out[n0, g * c_out_g:(g + 1) * c_out_g].reshape((c_out_g, pix))
            np.dot(w3[g], cols, dst)
            if has_bias:
                for j in range(c_out_g):
                    bv = bias[g * c_out_g + j]
                    row = dst[j]
                    for q in range(pix):
                        row[q] += bv
            continue
        np.dot(w3[g], cols, res)
        for j in range(c_out_g):
            co = g * c_out_g + j
            for i in range(m):
                for r in range(rows):
                    _write_row(out[n0 + i, co, oh_a + r, ow_a:ow_b],
                               res[j, (i * rows + r) * w_n:(i * rows + r + 1) * w_n], bias, co)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def correlate_gemm_kernel(x, w3, bias, out, tasks, ws, slot, sh, sw, dh, dw, top, left,
                          k_h, k_w):
    """The correlation (see the module docstring) as independent GEMM tasks.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
        The correlated input.
    w3 : ndarray, shape (groups, C_out_g, C_in_g*kH*kW)
        The weight, one matrix per group.
    bias : ndarray, shape (C_out,) or (0,)
        Added to every output pixel of its channel; empty for none.
    out : ndarray, shape (N, C_out, H_out, W_out)
        Overwritten with the result.
    tasks : ndarray of int64, shape (T, 6)
        ``(n0, m, oh_a, oh_b, ow_a, ow_b)``: task ``t`` owns columns ``ow_a .. ow_b`` of
        output rows ``oh_a .. oh_b`` of images ``n0 .. n0+m`` (see :func:`plan_tasks`).
    ws : ndarray, 1-D
        Workspace of ``NUMBA_NUM_THREADS * slot`` elements; thread ``i`` works in
        ``ws[i*slot:(i+1)*slot]``.
    slot : int
        Workspace elements of one thread.
    sh, sw, dh, dw, top, left : int
        Stride, dilation and leading padding.
    k_h, k_w : int
        Kernel size.

    Notes
    -----
    Per group a task gathers the ``(C_in_g*kH*kW, pixels)`` patches of its pixels and
    multiplies the group's weight by them with one single-threaded BLAS GEMM (the caller
    limits the BLAS to one thread: the parallelism is here), then writes its rows plus
    bias. Tasks own disjoint outputs and are fixed by the problem, so the results do
    not depend on the thread count.
    """
    for t in prange(tasks.shape[0]):
        _correlate_task(t, x, w3, bias, out, tasks, ws, slot, sh, sw, dh, dw, top, left,
                        k_h, k_w)


@njit(cache=True, fastmath=FASTMATH)
def _copy_band(src, n, c0, oh, ow_a, ow_b, dst):
    """Columns ``ow_a .. ow_b`` of row ``oh`` of channels ``c0 ..`` of image ``n`` of ``src``
    (N, C, H, W) as the matrix ``dst`` (channels, ow_b - ow_a)."""
    for c in range(dst.shape[0]):
        d = dst[c]
        s = src[n, c0 + c, oh]
        for k in range(ow_b - ow_a):
            d[k] = s[ow_a + k]


@njit(cache=True, fastmath=FASTMATH)
def _weight_grad_task(t, a, b, gw3, part, units, starts, ws, slot, tmp_size, sh, sw, dh, dw,
                      top, left, k_h, k_w):
    """Task ``t`` of :func:`weight_grad_gemm_kernel`."""
    groups, c_a_g, taps = gw3.shape
    c_b_g = taps // (k_h * k_w)
    h_o, w_o = a.shape[2], a.shape[3]
    size = groups * c_a_g * taps
    if t == 0:
        dst = gw3
    else:
        dst = part[(t - 1) * size:t * size].reshape((groups, c_a_g, taps))
    base = numba.get_thread_id() * slot
    # gradient columns per block of a product added through the buffer (all: no buffer)
    q_blk = tmp_size // max(c_a_g, 1) if tmp_size else taps
    tmp0 = base + slot - tmp_size
    for u in range(starts[t], starts[t + 1]):
        n0, m, oh_a, oh_b = units[u, 0], units[u, 1], units[u, 2], units[u, 3]
        ow_a, ow_b = units[u, 4], units[u, 5]
        rows = oh_b - oh_a
        pix = m * rows * (ow_b - ow_a)
        whole = m == 1 and rows == h_o and ow_b - ow_a == w_o   # one image's channels
        cols = ws[base:base + taps * pix].reshape((taps, pix))
        n_at = 0 if whole else c_a_g
        at = ws[base + taps * pix:base + (taps + n_at) * pix].reshape((n_at, pix))
        first = u == starts[t]
        for g in range(groups):
            _gather_cols(b, g * c_b_g, n0, m, oh_a, oh_b, ow_a, ow_b, k_h, k_w, sh, sw, dh, dw,
                         top, left, cols)
            if ow_b - ow_a < w_o:
                _copy_band(a, n0, g * c_a_g, oh_a, ow_a, ow_b, at)
            elif not whole:
                copy_rows(a, n0, m, g * c_a_g, oh_a, at)
            lhs = a[n0, g * c_a_g:(g + 1) * c_a_g].reshape((c_a_g, pix)) if whole else at
            if first and q_blk >= taps:      # the product is the partial: no buffer
                np.dot(lhs, cols.T, dst[g])
                continue
            dg = dst[g]
            # the product in blocks of gradient columns, each through the buffer, so the
            # buffer is bounded by the workspace limit, not by the weight's size
            for q0 in range(0, taps, q_blk):
                q1 = min(taps, q0 + q_blk)
                blk = ws[tmp0:tmp0 + c_a_g * (q1 - q0)].reshape((c_a_g, q1 - q0))
                rhs = ws[base + q0 * pix:base + q1 * pix].reshape((q1 - q0, pix))
                np.dot(lhs, rhs.T, blk)
                for ca in range(c_a_g):      # units are added in a fixed order
                    if first:
                        for q in range(q1 - q0):
                            dg[ca, q0 + q] = blk[ca, q]
                    else:
                        for q in range(q1 - q0):
                            dg[ca, q0 + q] += blk[ca, q]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def weight_grad_gemm_kernel(a, b, gw3, part, units, starts, ws, slot, tmp_size, sh, sw, dh, dw,
                            top, left, k_h, k_w):
    """Partial weight gradients (see the module docstring) as independent GEMM tasks.

    Parameters
    ----------
    a : ndarray, shape (N, C_a, H_o, W_o)
        The operand on the strided grid.
    b : ndarray, shape (N, C_b, H, W)
        The sampled operand.
    gw3 : ndarray, shape (groups, C_a_g, C_b_g*kH*kW)
        Overwritten with task 0's partial gradient.
    part : ndarray, 1-D
        Overwritten with the partial gradients of tasks ``1 .. T-1``, one ``gw3.size``
        block each.
    units : ndarray of int64, shape (U, 6)
        ``(n0, m, oh_a, oh_b, ow_a, ow_b)``: columns ``ow_a .. ow_b`` of rows ``oh_a ..
        oh_b`` of ``a``'s images ``n0 .. n0+m``.
    starts : ndarray of int64, shape (T + 1,)
        Task ``t`` sums units ``starts[t] .. starts[t+1]``, in that order.
    ws : ndarray, 1-D
        Workspace of ``NUMBA_NUM_THREADS * slot`` elements; thread ``i`` works in
        ``ws[i*slot:(i+1)*slot]``, whose last ``tmp_size`` elements hold a block of a
        unit's product (``tmp_size // C_a_g`` gradient columns) while it is added to the
        partial.
    slot, tmp_size : int
        Workspace elements of one thread, and of its product buffer.
    sh, sw, dh, dw, top, left, k_h, k_w : int
        As for :func:`correlate_gemm_kernel`.

    Notes
    -----
    Per unit and group a task gathers the ``(C_b_g*kH*kW, pixels)`` patches of ``b`` and
    multiplies ``a``'s ``(C_a_g, pixels)`` block by their transpose with one
    single-threaded BLAS GEMM. :func:`sum_partials` then adds the partials in task
    order. The tasks are fixed by the problem and ``NUMBA_NUM_THREADS``, so the result
    does not depend on the thread count in use.
    """
    for t in prange(starts.shape[0] - 1):
        _weight_grad_task(t, a, b, gw3, part, units, starts, ws, slot, tmp_size, sh, sw, dh,
                          dw, top, left, k_h, k_w)


#: Elements one iteration of :func:`sum_partials` adds.
_SUM_BLOCK = 4096


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def sum_partials(total, part):
    """Add the partials ``part`` (P blocks of ``total.size``) to ``total``, block 0 first.

    Parameters
    ----------
    total : ndarray, 1-D
        Task 0's partial; becomes the sum.
    part : ndarray, 1-D
        The other tasks' partials, in task order.

    Notes
    -----
    Every element is summed by one iteration, in task order, so the result does not
    depend on the thread count.
    """
    size = total.shape[0]
    n_part = part.shape[0] // max(size, 1)
    for blk in prange((size + _SUM_BLOCK - 1) // _SUM_BLOCK):
        lo = blk * _SUM_BLOCK
        hi = min(size, lo + _SUM_BLOCK)
        dst = total[lo:hi]
        for p in range(n_part):
            src = part[p * size + lo:p * size + hi]
            for i in range(hi - lo):
                dst[i] += src[i]


#: Elements per block of :func:`channel_sums`, and the lanes a block is summed in.
_SUM_RUN = 1024
_LANES = 8


@njit(inline="always")
def _fold(lanes):
    """The lanes' sum, in a fixed tree."""
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + \
        ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))


@njit(parallel=True, cache=True)
def channel_sums(g3, out, last):
    """``out[c]`` = the sum of ``g3`` over all but its channel axis: the bias gradient.

    ``g3`` is C-contiguous, ``(N, C, P)`` (channels first) or with ``last`` ``(N, P, C)``;
    ``out`` ``(C,)`` of ``g3``'s dtype. Each channel is summed in float64, image by image,
    in runs of :data:`_SUM_RUN` pixels, each run in :data:`_LANES` lanes (pixel ``i`` of
    a run in lane ``i % 8``) folded in a fixed tree and added to the total in order: the
    same terms in the same order in both layouts and for every thread count, and callable
    from ``@njit`` code (the gradients there are bitwise Python's). Silent as PyTorch: Inf
    - Inf gives NaN, and a float32 total beyond float32's range gives Inf.
    """
    n = g3.shape[0]
    c = g3.shape[2] if last else g3.shape[1]
    p = g3.shape[1] if last else g3.shape[2]
    if last:
        width = 16
        for blk in prange((c + width - 1) // width):
            c0 = blk * width
            c1 = min(c, c0 + width)
            total = np.zeros(c1 - c0)
            lanes = np.zeros((_LANES, c1 - c0))
            for i in range(n):
                for r0 in range(0, p, _SUM_RUN):
                    lanes[...] = 0.0
                    for q in range(r0, min(p, r0 + _SUM_RUN)):
                        row = lanes[(q - r0) % _LANES]
                        src = g3[i, q, c0:c1]
                        for j in range(c1 - c0):
                            row[j] += src[j]
                    for j in range(c1 - c0):
                        total[j] += _fold(lanes[:, j])
            for j in range(c1 - c0):
                out[c0 + j] = total[j]
    else:
        for ch in prange(c):
            total = 0.0
            for i in range(n):
                src = g3[i, ch]
                for r0 in range(0, p, _SUM_RUN):
                    r1 = min(p, r0 + _SUM_RUN)
                    full = r0 + (r1 - r0) // _LANES * _LANES
                    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0     # the lanes, in registers
                    for q in range(r0, full, _LANES):
                        s0 += src[q]
                        s1 += src[q + 1]
                        s2 += src[q + 2]
                        s3 += src[q + 3]
                        s4 += src[q + 4]
                        s5 += src[q + 5]
                        s6 += src[q + 6]
                        s7 += src[q + 7]
                    for q in range(full, r1):      # the last run's tail: lanes 0 .. 6
                        k, v = q - full, src[q]
                        if k == 0:
                            s0 += v
                        elif k == 1:
                            s1 += v
                        elif k == 2:
                            s2 += v
                        elif k == 3:
                            s3 += v
                        elif k == 4:
                            s4 += v
                        elif k == 5:
                            s5 += v
                        else:
                            s6 += v
                    total += _fold((s0, s1, s2, s3, s4, s5, s6, s7))
            out[ch] = total


# ----------------------------------------------------------------------------
# Python-level runners: plan the tasks, call the kernels, never validate.


@lru_cache(maxsize=128)
def plan_tasks(n, h_o, w_o, per_pixel, itemsize, limit, threads):
    """``(tasks, slot)``: rows ``(n0, m, oh_a, oh_b, ow_a, ow_b)`` cutting ``n`` images of
    ``h_o x w_o`` pixels into tasks, and the workspace elements of the largest.

    As :func:`~convtranspose.cpu.im2col.plan_col2im`: with enough images a task is ``m``
    whole images, about ``_TASKS_PER_THREAD`` tasks per thread; otherwise a band of one
    image's rows, about ``_BANDS_PER_THREAD`` bands per thread over the batch (fewer
    where a band would have under ``_MIN_COLS`` pixels, but one per thread at least). ``per_pixel`` workspace
    elements per pixel, ``threads`` slots in all, fit in ``limit`` bytes (at least one row
    is always taken; where one row is more than a slot holds, bands of its columns, one
    column at least). ``threads`` is the process's fixed thread count, so the
    tasks, and the results, do not change with ``numba.set_num_threads``.
    """
    pix = h_o * w_o
    budget = max(1, limit // (threads * itemsize))          # elements per slot
    per_image = per_pixel * pix
    want = threads * _TASKS_PER_THREAD
    if n >= want and per_image <= budget:
        m = max(1, min(-(-n // want), budget // per_image))
        tasks = [(n0, min(m, n - n0), 0, h_o, 0, w_o) for n0 in range(0, n, m)]
        slot = m * per_image
    elif per_pixel * w_o > budget:     # a row is more than a slot holds: column bands
        cols = max(1, budget // per_pixel)
        tasks = [(n0, 1, oh, oh + 1, ow, min(w_o, ow + cols))
                 for n0 in range(n) for oh in range(h_o) for ow in range(0, w_o, cols)]
        slot = per_pixel * cols
    else:
        want_bands = min(-(-threads * _BANDS_PER_THREAD // max(n, 1)),
                         max(threads, pix // _MIN_COLS))
        b = min(h_o, max(want_bands, -(-per_image // budget)))
        edges = [h_o * i // b for i in range(b + 1)]
        bands = [(lo, hi) for lo, hi in zip(edges[:-1], edges[1:]) if hi > lo]
        tasks = [(n0, 1, lo, hi, 0, w_o) for n0 in range(n) for lo, hi in bands]
        slot = per_pixel * w_o * max(hi - lo for lo, hi in bands)
    return _table(tasks, 6), slot


@lru_cache(maxsize=128)
def plan_weight_grad(n, h_o, w_o, c_a_g, taps, groups, itemsize, limit, threads):
    """``(units, starts, slot, tmp_size)`` of :func:`weight_grad_gemm_kernel`.

    The units are :func:`plan_tasks`' with half the workspace limit; they are dealt, in
    order, to at most ``threads * _BANDS_PER_THREAD`` tasks, as many as the other half
    holds partial gradients for (at least one task: with a weight larger than the limit
    the gradient is summed by one thread). A task with more than one unit adds each
    unit's product to its partial through a buffer of ``tmp_size`` elements at the end of
    its slot: the whole ``(C_a_g, taps)`` product when the limit holds it besides the
    partials, else blocks of as many gradient columns as fit (one at least). So the
    workspace stays within ``limit``, or within one row's task and one column's buffer
    per thread where the limit is smaller than that.
    """
    units, slot = plan_tasks(n, h_o, w_o, taps + c_a_g, itemsize, limit // 2, threads)
    size = groups * c_a_g * taps
    room = max(0, limit // itemsize - threads * slot)
    most = min(len(units), threads * _BANDS_PER_THREAD)
    count = max(1, min(most, 1 + room // max(size, 1)))
    tmp_size = 0
    if len(units) > count:      # some task sums several units: it needs the buffer
        full = c_a_g * taps
        if threads * full <= room // 2:
            tmp_size = full
        else:
            tmp_size = c_a_g * max(1, min(taps, room // 2 // (threads * max(c_a_g, 1))))
        count = max(1, min(most, 1 + (room - threads * tmp_size) // max(size, 1)))
    starts = _table([len(units) * t // count for t in range(count + 1)])
    return units, starts, slot + tmp_size, tmp_size


def _threads():
    """The process's fixed thread count (``NUMBA_NUM_THREADS``), which sizes the tasks."""
    return max(1, numba.config.NUMBA_NUM_THREADS)


def correlate(x, weight, bias, out, stride, dilation, before, groups, method):
    """``out`` = correlation of ``x`` with ``weight`` (see the module docstring).

    ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in // groups, kH, kW), ``bias`` or
    ``None``, ``out`` (N, C_out, H_out, W_out) preallocated; ``before`` is
    ``(top, left)``. ``method`` is ``"direct"`` (the channels-last engine for layers with
    many channels, :func:`~convtranspose.cpu.direct.correlation_uses_engine`, else the
    gather kernel) or
    ``"im2col"``. ``x`` and ``out`` may be in any dense layout: the engine reads and
    writes them in place, the other kernels get C-contiguous copies.
    """
    (sh, sw), (dh, dw), (top, left) = stride, dilation, before
    if method == "direct" and correlation_uses_engine(weight.shape, groups):
        return run_correlation(x, weight, bias, out, stride, dilation, before, groups)
    if not (x.flags.c_contiguous and out.flags.c_contiguous):   # a channels-last operand
        result = correlate(np.ascontiguousarray(x), weight, bias, np.empty(out.shape, out.dtype),
                           stride, dilation, before, groups, method)
        out[...] = result
        return out
    b = np.empty(0, out.dtype) if bias is None else bias
    if method == "direct":
        launch(correlate_kernel, x, weight, b, out, sh, sw, dh, dw, top, left, groups)
        return out
    n, c_out, h_o, w_o = out.shape
    _, c_in_g, k_h, k_w = weight.shape
    if out.size == 0:
        return out
    taps = c_in_g * k_h * k_w
    threads = _threads()
    tasks, slot = plan_tasks(n, h_o, w_o, taps + c_out // groups, out.itemsize,
                             get_workspace_limit(), threads)
    with workspace(out.dtype, threads * slot) as (ws,), single_threaded_blas():
        launch(correlate_gemm_kernel, x, weight.reshape(groups, c_out // groups, taps), b, out,
               tasks, ws, slot, sh, sw, dh, dw, top, left, k_h, k_w)
    return out


def weight_grad(a, b, gw, stride, dilation, before, groups, method):
    """``gw`` = weight gradient of ``a`` on the strided grid against ``b`` sampled.

    ``a`` (N, C_a, H_o, W_o), ``b`` (N, C_b, H, W), ``gw`` (C_a, C_b // groups, kH, kW)
    preallocated; ``before`` is ``(top, left)``; ``method`` ``"direct"`` (the engine for
    layers with many channels, :func:`~convtranspose.cpu.direct.weight_grad_uses_engine`,
    else the gather kernel) or ``"im2col"``. ``a`` and ``b`` may be in any layout: the
    engine reads them through their strides where it lays them out channels-last, the
    other kernels get C-contiguous copies.
    """
    (sh, sw), (dh, dw), (top, left) = stride, dilation, before
    if method == "direct" and weight_grad_uses_engine(gw.shape, groups):
        return deconv.weight_grad(a, b, gw, stride, dilation, before, groups)
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)     # channels-last: copies
    if method == "direct":
        launch(weight_grad_kernel, a, b, gw, sh, sw, dh, dw, top, left, groups)
        return gw
    n, c_a, h_o, w_o = a.shape
    _, c_b_g, k_h, k_w = gw.shape
    if a.size == 0 or gw.size == 0:
        gw[...] = 0
        return gw
    taps = c_b_g * k_h * k_w
    threads = _threads()
    units, starts, slot, tmp_size = plan_weight_grad(n, h_o, w_o, c_a // groups, taps, groups,
                                                     gw.itemsize, get_workspace_limit(),
                                                     threads)
    with workspace(gw.dtype, threads * slot, (len(starts) - 2) * gw.size) as (ws, part):
        with single_threaded_blas():
            launch(weight_grad_gemm_kernel, a, b, gw.reshape(groups, c_a // groups, taps),
                   part, units, starts, ws, slot, tmp_size, sh, sw, dh, dw, top, left, k_h, k_w)
        if part.size:
            launch(sum_partials, gw.reshape(-1), part)
    return gw
