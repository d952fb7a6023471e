"""Numba CPU kernels: the direct gather kernel and the col2im gather kernel.

Both are compiled with ``parallel=True`` and cached on disk. They live in one module
with the helpers they call because Numba's cache keys a kernel on its own file only.
Kernels assume valid, C-contiguous arrays of one dtype and a preallocated output; the
index tables come from :mod:`convtranspose.cpu.taps`.

Each output row ``out[n, co, oh, :]`` is produced by exactly one ``prange`` iteration,
in a fixed order of taps, so results do not depend on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

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


@njit(cache=True, fastmath=FASTMATH)
def _direct_row(r, x, weight, bias, out, row_count, row_k, row_i,
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
    for t in range(row_count[oh]):
        kh = row_k[oh, t]
        ih = row_i[oh, t]
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
def _direct_rows4(r, x, weight, bias, out, row_count, row_k, row_i,
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
    for t in range(row_count[oh]):
        kh = row_k[oh, t]
        ih = row_i[oh, t]
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
def direct_kernel(x, weight, bias, out, row_count, row_k, row_i,
                  col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """Gather-form transposed convolution, one output row (of four channels when the
    group has a multiple of four) per iteration.

    ``x`` (N, C_in, H, W), ``weight`` (C_in, C_out_g, kH, kW), ``bias`` (C_out,) or
    empty, ``out`` (N, C_out, H_out, W_out): all C-contiguous, one dtype.
    """
    if weight.shape[1] % 4 == 0:
        for r in prange(out.shape[0] * (out.shape[1] // 4) * out.shape[2]):
            _direct_rows4(r, x, weight, bias, out, row_count, row_k, row_i,
                          col_lo, col_hi, col_phase, col_q0, phases, q_len, groups)
    else:
        for r in prange(out.shape[0] * out.shape[1] * out.shape[2]):
            _direct_row(r, x, weight, bias, out, row_count, row_k, row_i,
                        col_lo, col_hi, col_phase, col_q0, phases, q_len, groups)


@njit(cache=True, fastmath=FASTMATH)
def direct_kernel_serial(x, weight, bias, out, row_count, row_k, row_i,
                         col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """:func:`direct_kernel` on the calling thread alone, for problems too small to share:
    it skips the thread pool's wake-up and barrier (tens of microseconds)."""
    for r in range(out.shape[0] * out.shape[1] * out.shape[2]):
        _direct_row(r, x, weight, bias, out, row_count, row_k, row_i,
                    col_lo, col_hi, col_phase, col_q0, phases, q_len, groups)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def col2im_kernel(cols, bias, out, n0, h0, first, oh_lo, oh_hi, row_count, row_k, row_i,
                  col_lo, col_hi, col_phase, col_q0, phases, q_len):
    """Gather the GEMM's columns of one chunk into output rows ``oh_lo <= oh < oh_hi``.

    ``cols`` (groups, C_out_g, kH, kW, n_chunk, h_chunk, W) holds, for images
    ``n0 .. n0 + n_chunk`` and input rows ``h0 .. h0 + h_chunk``, the product of every
    input pixel with every kernel tap. With ``first`` the rows are overwritten (and the
    bias added); otherwise this chunk's taps are added to what earlier chunks wrote.
    """
    groups, c_out_g, k_w = cols.shape[0], cols.shape[1], cols.shape[3]
    n_chunk, h_chunk = cols.shape[4], cols.shape[5]
    c_out = groups * c_out_g
    n_rows = oh_hi - oh_lo
    h1 = h0 + h_chunk
    # a task is `per_task` consecutive rows of one (image, channel): whole planes when
    # there are enough planes to share out, else single rows
    per_task = n_rows if n_chunk * c_out >= 64 else 1
    tasks_per_plane = (n_rows + per_task - 1) // per_task
    for r in prange(n_chunk * c_out * tasks_per_plane):
        task = r % tasks_per_plane
        co = (r // tasks_per_plane) % c_out
        nl = r // (tasks_per_plane * c_out)
        g = co // c_out_g
        j = co - g * c_out_g
        acc = np.empty((phases, q_len), out.dtype)
        for oh in range(oh_lo + task * per_task, min(oh_hi, oh_lo + (task + 1) * per_task)):
            if first:
                acc[:] = 0
            else:
                _load_row(acc, out, n0 + nl, co, oh)
            for t in range(row_count[oh]):
                ih = row_i[oh, t]
                if ih < h0 or ih >= h1:
                    continue
                kh = row_k[oh, t]
                for kw in range(k_w):
                    lo = np.uint64(col_lo[kw])
                    base = np.uint64(col_q0[kw] + col_lo[kw])
                    ph = col_phase[kw]
                    src = cols[g, j, kh, kw, nl, ih - h0]
                    for i in range(np.uint64(col_hi[kw] - col_lo[kw])):
                        acc[ph, base + i] += src[lo + i]
            _store_row(acc, out, n0 + nl, co, oh, bias, first)


@njit(cache=True, fastmath=FASTMATH)
def _gather_plane(r, x, cols, n0, a0, row_off, col_off):
    """Fill plane ``r`` (flat over C_in, T_h, T_w, m) of :func:`gather_kernel`'s ``cols``."""
    c_in, t_h, t_w, m, n_a, n_b = cols.shape
    h, w = x.shape[2], x.shape[3]
    mi = r % m
    rest = r // m
    tw = rest % t_w
    rest = rest // t_w
    th = rest % t_h
    ci = rest // t_h
    ih0 = row_off[th] + a0
    iw0 = col_off[tw]
    b_lo = min(n_b, max(0, -iw0))
    b_hi = max(b_lo, min(n_b, w - iw0))
    for a in range(n_a):
        dst = cols[ci, th, tw, mi, a]
        ih = ih0 + a
        if ih < 0 or ih >= h:
            for b in range(n_b):
                dst[b] = 0
            continue
        src = x[n0 + mi, ci, ih]
        for b in range(b_lo):
            dst[b] = 0
        for b in range(b_hi - b_lo):
            dst[b_lo + b] = src[iw0 + b_lo + b]
        for b in range(b_hi, n_b):
            dst[b] = 0


@njit(cache=True, fastmath=FASTMATH)
def gather_kernel(x, cols, n0, a0, row_off, col_off):
    """Gather the input pixels one sub-pixel phase reads: the phase's im2col matrix.

    ``cols`` (C_in, T_h, T_w, m, A, B) receives, for images ``n0 .. n0 + m``, phase rows
    ``a0 .. a0 + A`` and phase columns ``0 .. B``, the input pixel
    ``x[n, ci, row_off[th] + a0 + a, col_off[tw] + b]`` that kernel tap ``(th, tw)`` sends
    to output pixel ``(a, b)`` of the phase, or zero where that pixel lies outside the input.

    Serial on purpose, like :func:`scatter_kernel`: they run between BLAS calls, and
    waking Numba's thread pool there while OpenBLAS's threads still spin made the phase
    form several times slower on two cores.
    """
    c_in, t_h, t_w, m = cols.shape[:4]
    for r in range(c_in * t_h * t_w * m):
        _gather_plane(r, x, cols, n0, a0, row_off, col_off)


@njit(cache=True, fastmath=FASTMATH)
def scatter_kernel(res, bias, out, n0, oh0, ow0, s_h, s_w):
    """Write one phase's GEMM result ``res`` (C_out, m, A, B) into its output pixels.

    ``out[n0 + mi, co, oh0 + s_h*a, ow0 + s_w*b] = res[co, mi, a, b] + bias[co]`` (``bias``
    holds C_out values, zeros without a bias): phases are disjoint, so every output pixel
    has exactly one writer.
    """
    c_out, m, n_a, n_b = res.shape
    for r in range(m * c_out * n_a):
        a = r % n_a
        rest = r // n_a
        co = rest % c_out
        mi = rest // c_out
        row = out[n0 + mi, co, oh0 + s_h * a]
        src = res[co, mi, a]
        bv = bias[co]
        for b in range(n_b):
            row[ow0 + s_w * b] = src[b] + bv
