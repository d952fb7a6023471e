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
    """Write the phase-major accumulator ``acc`` into ``out[n, co, oh, :]``."""
    phases = acc.shape[0]
    row = out[n, co, oh]
    if add_bias and bias.shape[0] > 0:
        bv = bias[co]
        for ow in range(row.shape[0]):
            row[ow] = acc[ow % phases, ow // phases] + bv
    else:
        for ow in range(row.shape[0]):
            row[ow] = acc[ow % phases, ow // phases]


@njit(cache=True, fastmath=FASTMATH)
def _load_row(acc, out, n, co, oh):
    """Read ``out[n, co, oh, :]`` into the phase-major accumulator ``acc``."""
    phases = acc.shape[0]
    row = out[n, co, oh]
    for ow in range(row.shape[0]):
        acc[ow % phases, ow // phases] = row[ow]


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def direct_kernel(x, weight, bias, out, row_count, row_k, row_i,
                  col_lo, col_hi, col_phase, col_q0, phases, q_len, groups):
    """Gather-form transposed convolution, one output row per iteration.

    ``x`` (N, C_in, H, W), ``weight`` (C_in, C_out_g, kH, kW), ``bias`` (C_out,) or
    empty, ``out`` (N, C_out, H_out, W_out): all C-contiguous, one dtype.
    """
    n_img, c_in = x.shape[0], x.shape[1]
    c_out_g, k_w = weight.shape[1], weight.shape[3]
    c_out, h_out = out.shape[1], out.shape[2]
    c_in_g = c_in // groups
    for r in prange(n_img * c_out * h_out):
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
                    dst = acc[col_phase[kw]]
                    q0 = col_q0[kw]
                    for iw in range(col_lo[kw], col_hi[kw]):
                        dst[q0 + iw] += wv * xrow[iw]
        _store_row(acc, out, n, co, oh, bias, True)


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
    for r in prange(n_chunk * c_out * n_rows):
        oh = oh_lo + r % n_rows
        co = (r // n_rows) % c_out
        nl = r // (n_rows * c_out)
        g = co // c_out_g
        j = co - g * c_out_g
        acc = np.zeros((phases, q_len), out.dtype)
        if not first:
            _load_row(acc, out, n0 + nl, co, oh)
        for t in range(row_count[oh]):
            ih = row_i[oh, t]
            if ih < h0 or ih >= h1:
                continue
            kh = row_k[oh, t]
            for kw in range(k_w):
                src = cols[g, j, kh, kw, nl, ih - h0]
                dst = acc[col_phase[kw]]
                q0 = col_q0[kw]
                for iw in range(col_lo[kw], col_hi[kw]):
                    dst[q0 + iw] += src[iw]
        _store_row(acc, out, n0 + nl, co, oh, bias, first)


# Serial builds of the same kernels (``prange`` runs as ``range``): used where a parallel
# launch is unsafe, see :mod:`convtranspose._threading`. Not cached: Numba's disk cache
# keys a function by its name and file, not its flags, so a cached serial build would be
# loaded in place of the parallel one (and the reverse).
direct_kernel_serial = njit(fastmath=FASTMATH)(direct_kernel.py_func)
col2im_kernel_serial = njit(fastmath=FASTMATH)(col2im_kernel.py_func)
