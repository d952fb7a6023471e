"""The weight gradient with the taps as rows: both operands read in place, nothing packed.

:mod:`convtranspose.cpu.deconv`'s weight gradient is, per group, the GEMM
``gw[ca, j] = sum_p A[ca, p] * B[p, j]`` over the pixels ``p`` of ``a``, its columns
``j = (kh, kw, cb)`` read from a zero-bordered channels-last copy of ``b``. Where ``b``
has few channels per group (a decoder's RGB output, a stride-1 layer of 16 channels) the
macro-kernel's ``B`` micro-panels straddle taps and are packed a value at a time, and the
channels of ``b`` fill few of the vector lanes. This kernel computes the transposed
product instead, ``gw^T[j, ca]``, with the register tile turned round: 6 columns ``j`` by
two vectors of ``a``'s channels. Per pixel it broadcasts the 6 values of ``b``'s copy that
the tile's columns read (6 offsets, any taps and channels) and loads two vectors of
``a``'s channels from a channels-last copy of ``a``: both read in place, one relayout
pass each. (Copying blocks of ``a`` channels-last into a small buffer instead was slower
from channels-first ``a``: 9.2 against 6.0 ms from channels-last memory, ``dcgan_g5``,
one thread.)

It runs the same tasks as :func:`~convtranspose.cpu.engine.weight_grad_kernel` (pixel
ranges, ``KC`` blocks from each range's start, block sums stored then added in order)
and each element's products in the same order, with the same fused multiply-adds (their
operands swapped, which a product does not see): the result is bitwise the macro-kernel's,
so the choice between them changes only the speed.
"""
from __future__ import annotations

import numba
import numpy as np

from .._jit import njit
from .engine import pixel_offsets
from .simd import add, broadcast, fmadd, load, store, width, zero

__all__ = ["tap_rows_kernel"]

ROWS = 6


@njit(inline="always")
def _put(c, off, v0, v1, w, cols, accumulate, edge):
    """``c[off : off + cols] (+)= (v0, v1)[:cols]`` (through ``edge`` when ``cols`` is
    short of two vectors)."""
    if cols == 2 * w:
        if accumulate:
            v0 = add(load(c, off), v0)
            v1 = add(load(c, off + w), v1)
        store(c, off, v0)
        store(c, off + w, v1)
        return
    store(edge, 0, v0)
    store(edge, w, v1)
    for j in range(cols):
        v = edge[j]
        if accumulate:
            v = c[off + j] + v
        c[off + j] = v


@njit(inline="always")
def _tile(xa, x0, ldx, bb, pix, o0, o1, o2, o3, o4, o5, kb, c, off, ldc, rows, cols,
          accumulate, edge):
    """One tile: rows ``o0..o5`` (offsets into ``bb``) by two vectors of ``a``'s channels
    from ``xa[x0 + k*ldx]``, summed over ``kb`` pixels, into ``c[off + r*ldc + j]``."""
    w = width(c)
    c00 = zero(c)
    c01 = zero(c)
    c10 = zero(c)
    c11 = zero(c)
    c20 = zero(c)
    c21 = zero(c)
    c30 = zero(c)
    c31 = zero(c)
    c40 = zero(c)
    c41 = zero(c)
    c50 = zero(c)
    c51 = zero(c)
    xo = x0
    for k in range(kb):
        v0 = load(xa, xo)
        v1 = load(xa, xo + w)
        base = pix[k]
        s = broadcast(bb, base + o0)
        c00 = fmadd(c00, s, v0)
        c01 = fmadd(c01, s, v1)
        s = broadcast(bb, base + o1)
        c10 = fmadd(c10, s, v0)
        c11 = fmadd(c11, s, v1)
        s = broadcast(bb, base + o2)
        c20 = fmadd(c20, s, v0)
        c21 = fmadd(c21, s, v1)
        s = broadcast(bb, base + o3)
        c30 = fmadd(c30, s, v0)
        c31 = fmadd(c31, s, v1)
        s = broadcast(bb, base + o4)
        c40 = fmadd(c40, s, v0)
        c41 = fmadd(c41, s, v1)
        s = broadcast(bb, base + o5)
        c50 = fmadd(c50, s, v0)
        c51 = fmadd(c51, s, v1)
        xo += ldx
    _put(c, off, c00, c01, w, cols, accumulate, edge)
    if rows > 1:
        _put(c, off + ldc, c10, c11, w, cols, accumulate, edge)
    if rows > 2:
        _put(c, off + 2 * ldc, c20, c21, w, cols, accumulate, edge)
    if rows > 3:
        _put(c, off + 3 * ldc, c30, c31, w, cols, accumulate, edge)
    if rows > 4:
        _put(c, off + 4 * ldc, c40, c41, w, cols, accumulate, edge)
    if rows > 5:
        _put(c, off + 5 * ldc, c50, c51, w, cols, accumulate, edge)


@njit(cache=True, parallel=True)
def tap_rows_kernel(xa, c_a, bb, col_off, geo, first, rest, tasks, kc):
    """The weight gradient's transposed product, task by task.

    ``xa`` is ``a`` channels-last and flat (pixel ``p``'s channel ``ca`` at ``p*C_a + ca``,
    two vectors of padding after the last pixel, read in place: the lanes past a group's
    channels are computed and dropped); ``bb``, ``col_off`` and ``geo`` are
    :func:`~convtranspose.cpu.engine.pack_b_channels_last`'s. Task ``t`` is ``tasks[t] =
    (g, j0, nb, p0, p1, part)`` as for :func:`~convtranspose.cpu.engine.weight_grad_kernel`:
    columns ``j0 .. j0+nb`` of group ``g`` over pixels ``p0 .. p1`` in ``KC`` blocks, into
    ``first`` (part 0) or block ``part - 1`` of ``rest``, both laid out ``[g][j][ca]``
    (``C_a // groups`` values per ``j``).
    """
    groups = col_off.shape[0]
    cols_g = col_off.shape[1]
    c_a_g = c_a // groups
    size = groups * cols_g * c_a_g
    w = width(first)
    for t in numba.prange(tasks.shape[0]):
        g, j0, nb, p0, p1, part = (tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3],
                                   tasks[t, 4], tasks[t, 5])
        c = first if part == 0 else rest
        base_c = (0 if part == 0 else (part - 1) * size) + (g * cols_g + j0) * c_a_g
        pix = np.empty(kc, np.int64)
        edge = np.empty(2 * w, first.dtype)
        offs = np.empty(ROWS, np.int64)
        for pc in range(p0, p1, kc):
            kb = min(kc, p1 - pc)
            pixel_offsets(geo, pc, kb, pix)
            accumulate = pc > p0
            for r0 in range(0, nb, ROWS):
                rows = min(ROWS, nb - r0)
                for r in range(ROWS):
                    offs[r] = col_off[g, j0 + r0 + min(r, rows - 1)]
                for q in range(0, c_a_g, 2 * w):
                    _tile(xa, pc * c_a + g * c_a_g + q, c_a, bb, pix, offs[0], offs[1],
                          offs[2], offs[3], offs[4], offs[5], kb, c,
                          base_c + r0 * c_a_g + q, c_a_g, rows, min(2 * w, c_a_g - q),
                          accumulate, edge)
