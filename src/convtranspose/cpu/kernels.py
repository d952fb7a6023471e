"""Numba CPU kernels: the direct gather kernel and the col2im gather kernel.

Both are compiled with ``parallel=True`` and cached on disk. They live in one module
with the helpers they call because Numba's cache keys a kernel on its own file only.
Kernels assume valid, C-contiguous arrays of one dtype and a preallocated output; the
column tables come from :mod:`convtranspose.cpu.taps`, and the taps of each output row
are index arithmetic (:func:`_tap_rows`), so no table grows with the output.

Each output row ``out[n, co, oh, :]`` is produced by exactly one ``prange`` iteration,
in a fixed order of taps, so results do not depend on the number of threads.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import prange

from .._jit import njit

# Contraction into FMAs and reassociation; no ``nnan``/``ninf``, so NaN and Inf
# propagate as they do in PyTorch.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True, fastmath=FASTMATH)
def _store_row(acc, out, n, co, oh, bias, add_bias):
    """Write the phase-major accumulator ``acc`` into ``out[n, co, oh, :]``.

    ``out[..., q*phases + ph] = acc[ph, q]``, looped without division.
    """
    phases, q_len = acc.shape
    row = out[n, co, oh]
    w_out = row.shape[0]
    has_bias = add_bias and bias.shape[0] > 0
    for ph in range(phases):
        src = acc[ph]
        q_end = (w_out - ph + phases - 1) // phases      # outputs of this phase
        if has_bias:
            bv = bias[co]
            for q in range(q_end):
                row[q * phases + ph] = src[q] + bv
        else:
            for q in range(q_end):
                row[q * phases + ph] = src[q]


@njit(cache=True, fastmath=FASTMATH)
def _load_row(acc, out, n, co, oh):
    """Read ``out[n, co, oh, :]`` into the phase-major accumulator ``acc``."""
    phases = acc.shape[0]
    row = out[n, co, oh]
    w_out = row.shape[0]
    for ph in range(phases):
        dst = acc[ph]
        for q in range((w_out - ph + phases - 1) // phases):
            dst[q] = row[q * phases + ph]


@njit(cache=True)
def _tap_rows(oh, k_h, s_h, d_h, top, h0, h1):
    """Kernel rows ``[lo, hi)`` that may send input rows ``h0 <= ih < h1`` to output row
    ``oh``: ``h0*s_h <= oh + top - kh*d_h <= (h1 - 1)*s_h``. Of these, row ``kh`` does when
    ``oh + top - kh*d_h`` is a multiple of ``s_h``, from input row ``ih`` = that / ``s_h``
    (the arithmetic of :func:`convtranspose.cpu.taps.tap_inputs`)."""
    num = oh + top
    lo = max(0, -(((h1 - 1) * s_h - num) // d_h))
    hi = min(k_h, (num - h0 * s_h) // d_h + 1)
    return lo, hi


@njit(cache=True, fastmath=FASTMATH)
def _direct_row(r, x, weight, bias, out, s_h, d_h, top,
                col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """Compute output row ``r`` (flat index over N, C_out, H_out) of the direct kernel."""
    c_in = x.shape[1]
    c_out_g, k_w = weight.shape[1], weight.shape[3]
    c_out, h_out = out.shape[1], out.shape[2]
    c_in_g = c_in // groups
    oh = r % h_out
    co = (r // h_out) % c_out
    n = r // (h_out * c_out)
    g = co // c_out_g
    j = co - g * c_out_g
    acc = np.zeros((phases, q_len), out.dtype)
    kh_lo, kh_hi = _tap_rows(oh, weight.shape[2], s_h, d_h, top, 0, x.shape[2])
    for kh in range(kh_lo, kh_hi):
        num = oh + top - kh * d_h
        if num % s_h != 0:
            continue
        ih = num // s_h
        for ci in range(g * c_in_g, (g + 1) * c_in_g):
            xrow = x[n, ci, ih]
            for kw in range(k_w):
                wv = weight[ci, j, kh, kw]
                # unsigned indices: no negative-index wraparound test, so LLVM
                # vectorises the multiply-add (and no view is built per segment)
                lo = np.uint64(col_lo[kw])
                base = np.uint64(col_q0[kw] + col_lo[kw])
                ph = col_phase[kw]
                for i in range(np.uint64(col_hi[kw] - col_lo[kw])):
                    acc[ph, base + i] += wv * xrow[lo + i]
    _store_row(acc, out, n, co, oh, bias, True)


@njit(cache=True, fastmath=FASTMATH)
def _direct_rows4(r, x, weight, bias, out, s_h, d_h, top,
                  col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """Output row ``oh`` of four consecutive channels of one group, task ``r`` (flat over
    N, C_out/4, H_out): each input value loaded feeds four multiply-adds. Every element
    sums the same terms in the same order as :func:`_direct_row`, so results are identical.
    """
    c_in = x.shape[1]
    c_out_g, k_w = weight.shape[1], weight.shape[3]
    c_out4, h_out = out.shape[1] // 4, out.shape[2]
    c_in_g = c_in // groups
    oh = r % h_out
    co0 = ((r // h_out) % c_out4) * 4
    n = r // (h_out * c_out4)
    g = co0 // c_out_g
    j0 = co0 - g * c_out_g
    acc = np.zeros((4, phases, q_len), out.dtype)
    kh_lo, kh_hi = _tap_rows(oh, weight.shape[2], s_h, d_h, top, 0, x.shape[2])
    for kh in range(kh_lo, kh_hi):
        num = oh + top - kh * d_h
        if num % s_h != 0:
            continue
        ih = num // s_h
        for ci in range(g * c_in_g, (g + 1) * c_in_g):
            xrow = x[n, ci, ih]
            for kw in range(k_w):
                w0 = weight[ci, j0, kh, kw]
                w1 = weight[ci, j0 + 1, kh, kw]
                w2 = weight[ci, j0 + 2, kh, kw]
                w3 = weight[ci, j0 + 3, kh, kw]
                lo = np.uint64(col_lo[kw])
                base = np.uint64(col_q0[kw] + col_lo[kw])
                ph = col_phase[kw]
                a0, a1, a2, a3 = acc[0, ph], acc[1, ph], acc[2, ph], acc[3, ph]
                for i in range(np.uint64(col_hi[kw] - col_lo[kw])):
                    xv = xrow[lo + i]
                    a0[base + i] += w0 * xv
                    a1[base + i] += w1 * xv
                    a2[base + i] += w2 * xv
                    a3[base + i] += w3 * xv
    for b in range(4):
        _store_row(acc[b], out, n, co0 + b, oh, bias, True)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def direct_kernel(x, weight, bias, out, s_h, d_h, top,
                  col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """Gather-form transposed convolution, one output row (of four channels when the
    group has a multiple of four) per iteration.

    ``x`` (N, C_in, H, W), ``weight`` (C_in, C_out_g, kH, kW), ``bias`` (C_out,) or
    empty, ``out`` (N, C_out, H_out, W_out): all C-contiguous, one dtype.
    """
    if weight.shape[1] % 4 == 0:
        for r in prange(out.shape[0] * (out.shape[1] // 4) * out.shape[2]):
            _direct_rows4(r, x, weight, bias, out, s_h, d_h, top,
                          col_lo, col_hi, col_phase, col_q0, phases, q_len, groups)
    else:
        for r in prange(out.shape[0] * out.shape[1] * out.shape[2]):
            _direct_row(r, x, weight, bias, out, s_h, d_h, top,
                        col_lo, col_hi, col_phase, col_q0, phases, q_len, groups)


@njit(cache=True, fastmath=FASTMATH)
def direct_kernel_serial(x, weight, bias, out, s_h, d_h, top,
                         col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """:func:`direct_kernel` on the calling thread alone, for problems too small to share:
    it skips the thread pool's wake-up and barrier (tens of microseconds)."""
    for r in range(out.shape[0] * out.shape[1] * out.shape[2]):
        _direct_row(r, x, weight, bias, out, s_h, d_h, top,
                    col_lo, col_hi, col_phase, col_q0, phases, q_len, groups)


@njit(cache=True, fastmath=FASTMATH)
def _col2im_rows(cols, g, j, nl, n0, co, oh_a, oh_b, h0, first, bias, out, acc, s_h, d_h, top,
                 col_lo, col_hi, col_phase, col_q0):
    """Rows ``oh_a <= oh < oh_b`` of ``out[n0 + nl, co]`` from channel ``j`` of group ``g``
    of ``cols``, accumulated in ``acc`` (``(phases, q_len)``, see :mod:`.taps`).

    ``cols`` (groups, C_out_g, kH, kW, images, rows, W) holds the product of every
    kernel tap with input rows ``h0 ..`` of the images; taps from other input rows are
    skipped. With ``first`` the rows are overwritten (bias added), else added to.
    """
    k_h, k_w = cols.shape[2], cols.shape[3]
    h1 = h0 + cols.shape[5]
    for oh in range(oh_a, oh_b):
        if first:
            acc[:] = 0
        else:
            _load_row(acc, out, n0 + nl, co, oh)
        kh_lo, kh_hi = _tap_rows(oh, k_h, s_h, d_h, top, h0, h1)
        for kh in range(kh_lo, kh_hi):
            num = oh + top - kh * d_h
            if num % s_h != 0:
                continue
            ih = num // s_h
            for kw in range(k_w):
                lo = np.uint64(col_lo[kw])
                base = np.uint64(col_q0[kw] + col_lo[kw])
                ph = col_phase[kw]
                src = cols[g, j, kh, kw, nl, ih - h0]
                for i in range(np.uint64(col_hi[kw] - col_lo[kw])):
                    acc[ph, base + i] += src[lo + i]
        _store_row(acc, out, n0 + nl, co, oh, bias, first)


@njit(cache=True, fastmath=FASTMATH)
def copy_rows(src, n0, m, c0, r0, dst):
    """Rows ``r0 ..`` of channels ``c0 ..`` of images ``n0 .. n0+m`` of ``src`` (N, C, H, W)
    as the matrix ``dst`` (channels, images*rows*W): ``dst[c, (i*rows + r)*W + w] =
    src[n0 + i, c0 + c, r0 + r, w]``, with ``channels`` and ``rows`` from ``dst``'s shape."""
    w = src.shape[3]
    channels = dst.shape[0]
    rows = dst.shape[1] // (m * w) if m * w else 0
    for c in range(channels):
        for i in range(m):
            for r in range(rows):
                d = dst[c, (i * rows + r) * w:(i * rows + r + 1) * w]
                s = src[n0 + i, c0 + c, r0 + r]
                for k in range(w):
                    d[k] = s[k]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def col2im_gemm_kernel(x, weight, bias, out, tasks, ws, slot, s_h, d_h, top,
                       col_lo, col_hi, col_phase, col_q0, phases, q_len):
    """The col2im form of the ``im2col`` backend as independent tasks.

    ``x`` (N, C_in, H, W); ``weight`` (groups, C_in_g, C_out_g*kH*kW); ``out`` (N, C_out,
    H_out, W_out). Task ``tasks[t] = (n0, m, ih_a, ih_b, oh_a, oh_b)`` owns output rows
    ``oh_a .. oh_b`` of images ``n0 .. n0+m``; input rows ``ih_a .. ih_b`` are all that
    reach them. Per group it multiplies the weight's transpose by those input pixels
    with one single-threaded BLAS GEMM (the caller limits the BLAS to one thread: the
    parallelism is here), giving every (channel, tap, pixel) product, and gathers the
    products into its output rows (:func:`_col2im_rows`). Thread ``i`` works in
    ``ws[i*slot:(i+1)*slot]``. Tasks own disjoint outputs and are fixed by the problem,
    so the results do not depend on the thread count.
    """
    for t in prange(tasks.shape[0]):
        _col2im_task(t, x, weight, bias, out, tasks, ws, slot, s_h, d_h, top,
                     col_lo, col_hi, col_phase, col_q0, phases, q_len)


@njit(cache=True, fastmath=FASTMATH)
def _col2im_task(t, x, weight, bias, out, tasks, ws, slot, s_h, d_h, top,
                 col_lo, col_hi, col_phase, col_q0, phases, q_len):
    """Task ``t`` of :func:`col2im_gemm_kernel`."""
    h, w = x.shape[2], x.shape[3]
    groups, c_in_g, rows = weight.shape
    c_out_g = out.shape[1] // groups
    k_w = col_lo.shape[0]
    k_h = rows // (c_out_g * k_w)
    n0, m, ih_a, ih_b = tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3]
    oh_a, oh_b = tasks[t, 4], tasks[t, 5]
    hh = ih_b - ih_a
    pix = m * hh * w
    whole = m == 1 and hh == h      # one image's pixels of a group: a matrix already
    base = numba.get_thread_id() * slot
    cols = ws[base:base + rows * pix].reshape((rows, pix))
    n_xt = 0 if whole else c_in_g
    xt = ws[base + rows * pix:base + (rows + n_xt) * pix].reshape((n_xt, pix))
    acc = np.empty((phases, q_len), out.dtype)
    for g in range(groups):
        if pix > 0:
            if whole:
                np.dot(weight[g].T, x[n0, g * c_in_g:(g + 1) * c_in_g].reshape((c_in_g, h * w)),
                       cols)
            else:
                copy_rows(x, n0, m, g * c_in_g, ih_a, xt)
                np.dot(weight[g].T, xt, cols)
        c7 = cols.reshape((1, c_out_g, k_h, k_w, m, hh, w))
        for nl in range(m):
            for j in range(c_out_g):
                _col2im_rows(c7, 0, j, nl, n0, g * c_out_g + j, oh_a, oh_b, ih_a, True,
                             bias, out, acc, s_h, d_h, top, col_lo, col_hi,
                             col_phase, col_q0)


@njit(cache=True, fastmath=FASTMATH)
def _gather_tap(src, dst, dr, dc, n_a, n_b):
    """``dst[a*n_b + b] = src[dr + a, dc + b]`` for ``a < n_a``, ``b < n_b``; zero where
    that pixel lies outside ``src`` (H, W)."""
    h, w = src.shape
    b_lo = min(n_b, max(0, -dc))              # columns b_lo <= b < b_hi lie inside
    b_hi = max(b_lo, min(n_b, w - dc))
    for a in range(n_a):
        row = dst[a * n_b:(a + 1) * n_b]
        ih = dr + a
        if ih < 0 or ih >= h:
            row[:] = 0     # stored as dst's dtype; no allocation per call
            continue
        s = src[ih]
        for b in range(b_lo):
            row[b] = 0
        for b in range(b_lo, b_hi):
            row[b] = s[dc + b]
        for b in range(b_hi, n_b):
            row[b] = 0


@njit(cache=True, fastmath=FASTMATH)
def _phase_task(t, x, wt, bias, out, meta, off_rows, off_cols, tasks, s_h, s_w, groups, ws,
                slot):
    """Task ``t`` of :func:`phase_gemm_kernel`: gather, GEMM and scatter one block."""
    c_in, h, w = x.shape[1], x.shape[2], x.shape[3]
    c_out = out.shape[1]
    c_in_g, c_out_g = c_in // groups, c_out // groups
    p, n0, m, a0, n_a = tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3], tasks[t, 4]
    b0, n_b = tasks[t, 5], tasks[t, 6]
    o0r, o0c, taps = meta[p, 0], meta[p, 1], meta[p, 4]
    w_off, x_is_b, r0, c0, t_w = meta[p, 5], meta[p, 6], meta[p, 7], meta[p, 8], meta[p, 9]
    k = c_in_g * taps
    per_img = n_a * n_b
    pix = m * per_img
    # this thread's slot of the workspace: no allocation (and no page faults) per task
    base = numba.get_thread_id() * slot
    res = ws[base:base + c_out_g * pix].reshape((c_out_g, pix))
    cols = ws[base + c_out_g * pix:base + (c_out_g + (0 if x_is_b else k)) * pix].reshape(
        (0 if x_is_b else k, pix))
    has_bias = bias.shape[0] > 0
    for g in range(groups):
        wg = wt[w_off + g * k * c_out_g:w_off + (g + 1) * k * c_out_g].reshape((k, c_out_g)).T
        if x_is_b:      # one tap at offset (0, 0) over whole images: the input is the matrix
            np.dot(wg, x[n0, g * c_in_g:(g + 1) * c_in_g].reshape((c_in_g, h * w)), res)
        else:
            for kk in range(k):
                ci = g * c_in_g + kk // taps
                tp = kk % taps
                dr = off_rows[r0 + tp // t_w] + a0      # the tap reads a shifted window
                dc = off_cols[c0 + tp % t_w] + b0
                for mi in range(m):
                    _gather_tap(x[n0 + mi, ci], cols[kk, mi * per_img:(mi + 1) * per_img],
                                dr, dc, n_a, n_b)
            np.dot(wg, cols, res)
        for r in range(c_out_g * m * n_a):
            a = r % n_a
            rest = r // n_a
            mi = rest % m
            j = rest // m
            co = g * c_out_g + j
            row = out[n0 + mi, co, o0r + s_h * (a0 + a)]
            src = res[j, (mi * n_a + a) * n_b:(mi * n_a + a + 1) * n_b]
            o0 = o0c + s_w * b0
            if has_bias:
                bv = bias[co]
                for b in range(n_b):
                    row[o0 + s_w * b] = src[b] + bv
            else:
                for b in range(n_b):
                    row[o0 + s_w * b] = src[b]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def phase_gemm_kernel(x, wt, bias, out, meta, off_rows, off_cols, tasks, s_h, s_w, groups, ws,
                      slot):
    """The sub-pixel phase form of the ``im2col`` backend: independent tasks in parallel.

    ``x`` (N, C_in, H, W); ``out`` (N, C_out, H_out, W_out); ``bias`` (C_out,) or empty.
    Phase ``p`` owns output pixels ``(o0r + s_h*a, o0c + s_w*b)``, ``a < rows``, ``b <
    cols``; ``meta[p]`` holds ``o0r, o0c, rows, cols, taps, weight offset, x_is_b, r0, c0,
    T_w``. Its weight is ``wt[w_off:]`` as ``(groups, C_in_g*taps, C_out_g)`` (see
    :func:`pack_phase_weights`). Its tap ``tp`` reads input pixel ``(off_rows[r0 + tp //
    T_w] + a, off_cols[c0 + tp % T_w] + b)`` for phase pixel ``(a, b)``, zero outside the
    input: index arithmetic, no per-pixel tables.

    Task ``t`` is ``tasks[t] = (p, n0, m, a0, n_a, b0, n_b)``: images ``n0 .. n0+m``,
    phase rows ``a0 .. a0+n_a``, phase columns ``b0 .. b0+n_b``. It gathers the input
    pixels into a ``(C_in_g*taps, pixels)`` matrix, multiplies by the phase's weight with
    one single-threaded BLAS GEMM per group (the caller limits the BLAS to one thread:
    the parallelism is here), and writes the products plus bias into its own output
    pixels. Thread ``i`` works in ``ws[i*slot:(i+1)*slot]``. Tasks are disjoint and fixed
    by the problem, not by the thread count, so results do not depend on it. The gathered
    zeros are multiplied, so the weight's taps must be finite (:func:`pack_phase_weights`
    counts those that are not).
    """
    for t in prange(tasks.shape[0]):
        _phase_task(t, x, wt, bias, out, meta, off_rows, off_cols, tasks, s_h, s_w, groups,
                    ws, slot)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def pack_phase_weights(weight, wt, k_rows, k_cols, tap_start, w_offs):
    """Copy each phase's taps of ``weight`` (C_in, C_out_g, kH, kW) into ``wt``; return
    how many of the copied values are not finite.

    Phase ``p`` uses kernel rows ``k_rows[tap_start[p, 0]:tap_start[p + 1, 0]]`` and
    columns ``k_cols[tap_start[p, 1]:tap_start[p + 1, 1]]``; its block of ``wt`` from
    ``w_offs[p]`` is ``(C_in, T_h, T_w, C_out_g)``: per group the ``(C_in_g*taps,
    C_out_g)`` matrix whose transpose the GEMM multiplies by.
    """
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    n_ph = w_offs.shape[0]
    bad = 0
    for r in prange(n_ph * c_in):
        p = r // c_in
        ci = r % c_in
        r0, r1 = tap_start[p, 0], tap_start[p + 1, 0]
        c0, c1 = tap_start[p, 1], tap_start[p + 1, 1]
        dst = w_offs[p] + ci * (r1 - r0) * (c1 - c0) * c_out_g
        n_bad = 0
        for th in range(r1 - r0):
            for tw in range(c1 - c0):
                src = weight[ci, :, k_rows[r0 + th], k_cols[c0 + tw]]
                for co in range(c_out_g):
                    v = src[co]
                    wt[dst + co] = v
                    if not np.isfinite(v):
                        n_bad += 1
                dst += c_out_g
        bad += n_bad
    return bad
