"""A packed, register-blocked GEMM: ``C[M, N] (+)= A[M, K] @ B[K, N]`` in float32 and float64.

The structure is Goto and van de Geijn's ("Anatomy of high-performance matrix
multiplication", ACM TOMS 2008), as BLIS names it: three parts, each its own function.

* **Packing** (:func:`pack_a`, :func:`pack_b`): copy a block of an operand into the order
  in which the micro-kernel reads it. ``A[ic:ic+mb, pc:pc+kb]`` becomes micro-panels of
  ``MR`` rows stored ``k``-major (``ap[p*MR*kb + k*MR + r]``); ``B[pc:pc+kb, jc:jc+nb]``
  becomes micro-panels of ``NR`` columns (``bp[q*NR*kb + k*NR + j]``). Edges are
  zero-padded to whole panels, so the micro-kernel never branches on them. *The packing
  routines are the only code that knows the operands' layout*: the weight gradient feeds
  the same macro-kernel by packing its operands straight from its arrays
  (:func:`pack_a_pixels`, :func:`pack_b_sampled`).
* **Micro-kernel** (:func:`_micro_kernel`): an ``MR x NR`` tile of ``C`` in 12 vector
  registers (:mod:`convtranspose.cpu.simd`: 6 rows x 2 vectors, 6x16 float32 on AVX2);
  per ``k`` step 2 vector loads of ``B``, 6 broadcasts of ``A`` and 12 FMAs; then one
  read-add-write of the tile of ``C`` (through a small buffer at the edges).
* **Macro loops** (:func:`_gemm_range`): ``jc`` over ``NC`` columns, ``pc`` over ``KC``
  of the depth, ``ic`` over ``MC`` rows (pack ``A``), then ``jr`` over the ``NR``-column
  micro-panels of ``B`` and, innermost, ``ir`` over the ``MR``-row micro-panels of ``A``, so
  one ``B`` micro-panel stays in L1 while the ``A`` block streams from L2. ``B`` is packed
  during the first ``ic`` block, ``_B_CHUNK`` micro-panels at a time just before they are
  used (as OpenBLAS does), and reused from the packed block by the later ``ic`` blocks.

Blocking (:func:`blocking`), for the caches of current x86 cores (32-48 KiB L1d,
512 KiB-2 MiB L2, a shared L3):

* ``KC = 256``: a ``B`` micro-panel is ``KC * NR`` values (16 KiB float32 on AVX2, 32 KiB
  on AVX-512), which with the ``A`` micro-panel being read fits L1. 384 and 512 were
  measured too (Zen 3): within the noise, and a larger ``KC`` would not fit AVX-512's L1.
* ``MC = 144`` (float32) / ``72`` (float64): the packed ``A`` block is ``MC * KC`` values,
  144 KiB, a third to a quarter of L2, so it stays there while all ``B`` micro-panels pass.
* ``NC = 3072`` (float32) / ``1536`` (float64): the packed ``B`` block, 3 MiB, lives in L3.
* ``_B_CHUNK = 16`` micro-panels (256 KiB at ``KC = 256``): each row of ``B`` is read in
  runs of 1 KiB, which the hardware prefetchers follow; one panel at a time (64 B runs,
  a new page every row) ran at half the speed on skinny GEMMs, 4 at a time 10% slower.
  Packing sweeps ``_PACK_ROWS`` rows across the chunk and prefetches the next sweep's.

Summation order: for every element ``C[i, j]`` the products ``A[i, k] * B[k, j]`` are
accumulated from zero in ascending ``k`` within each ``KC`` block (fused where the
target has FMA), and the block sums are added to ``C`` block after block. That order
depends only on ``K`` and ``KC``, not on ``M``, ``N``, ``MC``, ``NC``, where a tile sits
or which thread computes it: a sub-matrix of ``C`` computed on its own is bitwise equal
to the same rows and columns of the whole, and :func:`gemm` with ``threads=2`` is
bitwise equal to ``threads=1``.

The same macro-kernel computes the weight gradient (:func:`weight_grad_kernel`, planned
and called by :mod:`convtranspose.cpu.deconv`): per group one GEMM whose depth is the
pixels, ``A`` packed from the array on the strided grid (:func:`pack_a_pixels`), ``B``
sampled from the other (:func:`pack_b_sampled`), the result written in the gradient's
own layout.

Kernels take C-contiguous arrays and plain ints and never validate; :func:`gemm` is the
validating entry. The backends reach the engine through :mod:`convtranspose.cpu.deconv`:
``direct`` computes on it the weight gradients of layers with enough channels per group
(:func:`convtranspose.cpu.direct.weight_grad_uses_engine`), and ``auto`` picks it for
them there; ``direct``'s transposed convolution and correlations run on
:mod:`convtranspose.cpu.nd_engine`.
"""
from __future__ import annotations

import numba
import numpy as np

from .._jit import njit
from . import simd
from .simd import add, broadcast, fmadd, load, prefetch, store, width, zero

__all__ = ["gemm", "blocking", "pack_a", "pack_b", "pack_a_pixels", "pack_b_sampled",
           "pack_b_channels_last", "weight_grad_kernel"]

# The micro-kernel below is written out for this shape (12 named accumulators).
assert (simd.MR, simd.NR_VECTORS) == (6, 2)
MR = simd.MR

_KC = 256
_B_CHUNK = 16        # B micro-panels packed at a time while the first row block runs
_PACK_ROWS = 8       # rows of B copied per sweep across the panels: 8 sequential read streams
_MC = {np.dtype(np.float32): 144, np.dtype(np.float64): 72}
_NC = {np.dtype(np.float32): 3072, np.dtype(np.float64): 1536}


def blocking(dtype):
    """The cache blocking ``(KC, MC, NC)`` that :func:`gemm` uses for ``dtype``.

    ``KC`` is part of the summation order (see the module notes); ``MC`` and ``NC``
    change only speed.

    Parameters
    ----------
    dtype : numpy dtype or type
        ``float32`` or ``float64``.

    Returns
    -------
    tuple of int
        ``MC`` is a multiple of the micro-tile's rows and ``NC`` of its columns.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.engine import blocking
    >>> blocking(np.float32)[0]
    256
    """
    dtype = np.dtype(dtype)
    return _KC, _MC[dtype], _NC[dtype]


@njit(cache=True)
def pack_a(a, ic, mb, pc, kb, ap):
    """Pack ``a[ic:ic+mb, pc:pc+kb]`` into ``MR``-row micro-panels, zero-padding the last.

    ``ap[p*MR*kb + k*MR + r] = a[ic + p*MR + r, pc + k]``; ``ap`` holds at least
    ``ceil(mb / MR) * MR * kb`` values. ``a`` is C-contiguous 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.engine import pack_a, MR
    >>> a = np.arange(12.0).reshape(3, 4)
    >>> ap = np.full(MR * 2, np.nan)
    >>> pack_a(a, 1, 2, 1, 2, ap)         # rows 1-2, columns 1-2
    >>> ap.reshape(2, MR)[:, :3].tolist()  # k-major, padded with zeros
    [[5.0, 9.0, 0.0], [6.0, 10.0, 0.0]]
    """
    lda = a.shape[1]
    for p in range(0, mb, MR):
        rows = min(MR, mb - p)
        base = p * kb
        for r in range(rows):
            src = (ic + p + r) * lda + pc
            for k in range(kb):
                ap[base + k * MR + r] = a.flat[src + k]
        for r in range(rows, MR):
            for k in range(kb):
                ap[base + k * MR + r] = 0


@njit(cache=True)
def pack_b(b, pc, kb, jc, nb, nr, bp):
    """Pack ``b[pc:pc+kb, jc:jc+nb]`` into ``nr``-column micro-panels, zero-padding the last.

    ``bp[q*nr*kb + k*nr + j] = b[pc + k, jc + q*nr + j]``; ``bp`` holds at least
    ``ceil(nb / nr) * nr * kb`` values. ``b`` is C-contiguous 2-D.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.engine import pack_b
    >>> b = np.arange(12.0).reshape(3, 4)
    >>> bp = np.full(2 * 3 * 2, np.nan)
    >>> pack_b(b, 0, 3, 1, 3, 2, bp)       # all rows, columns 1-3, panels of 2
    >>> bp.reshape(2, 3, 2).tolist()
    [[[1.0, 2.0], [5.0, 6.0], [9.0, 10.0]], [[3.0, 0.0], [7.0, 0.0], [11.0, 0.0]]]
    """
    ldb = b.shape[1]
    vector_rows = nr % width(bp) == 0
    for k0 in range(0, kb, _PACK_ROWS):
        k1 = min(kb, k0 + _PACK_ROWS)
        for q in range(0, nb, nr):
            cols = min(nr, nb - q)
            dst = q * kb + k0 * nr
            src = (pc + k0) * ldb + jc + q
            if cols == nr and vector_rows:
                for k in range(k0, k1):
                    if k + _PACK_ROWS < kb:         # the next sweep's row, on its way
                        prefetch(b, src + _PACK_ROWS * ldb)
                    for v in range(0, nr, width(bp)):
                        store(bp, dst + v, load(b, src + v))
                    dst += nr
                    src += ldb
            else:
                for _ in range(k0, k1):
                    for j in range(cols):
                        bp[dst + j] = b.flat[src + j]
                    for j in range(cols, nr):
                        bp[dst + j] = 0
                    dst += nr
                    src += ldb


@njit(inline="always")
def _update_row(c, off, v0, v1, w, accumulate):
    """``c.flat[off : off + 2w] (+)= (v0, v1)``."""
    if accumulate:
        v0 = add(load(c, off), v0)
        v1 = add(load(c, off + w), v1)
    store(c, off, v0)
    store(c, off + w, v1)


@njit(inline="always")
def _micro_kernel(kb, ap, pa, bp, pb, c, off, ldc, mr, nr, accumulate, edge):
    """``C[tile] (+)= Ap[panel] @ Bp[panel]`` for one ``MR x NR`` tile held in registers.

    ``c.flat[off + r*ldc + j]`` is the tile's element ``(r, j)``; only ``r < mr`` and
    ``j < nr`` are written (a partial tile goes through ``edge``, ``MR * NR`` values).
    """
    w = width(c)
    for r in range(mr):
        prefetch(c, off + r * ldc)
        prefetch(c, off + r * ldc + nr - 1)
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
    for _ in range(kb):
        b0 = load(bp, pb)
        b1 = load(bp, pb + w)
        a = broadcast(ap, pa)
        c00 = fmadd(c00, a, b0)
        c01 = fmadd(c01, a, b1)
        a = broadcast(ap, pa + 1)
        c10 = fmadd(c10, a, b0)
        c11 = fmadd(c11, a, b1)
        a = broadcast(ap, pa + 2)
        c20 = fmadd(c20, a, b0)
        c21 = fmadd(c21, a, b1)
        a = broadcast(ap, pa + 3)
        c30 = fmadd(c30, a, b0)
        c31 = fmadd(c31, a, b1)
        a = broadcast(ap, pa + 4)
        c40 = fmadd(c40, a, b0)
        c41 = fmadd(c41, a, b1)
        a = broadcast(ap, pa + 5)
        c50 = fmadd(c50, a, b0)
        c51 = fmadd(c51, a, b1)
        pa += MR
        pb += 2 * w
    if mr == MR and nr == 2 * w:
        _update_row(c, off, c00, c01, w, accumulate)
        _update_row(c, off + ldc, c10, c11, w, accumulate)
        _update_row(c, off + 2 * ldc, c20, c21, w, accumulate)
        _update_row(c, off + 3 * ldc, c30, c31, w, accumulate)
        _update_row(c, off + 4 * ldc, c40, c41, w, accumulate)
        _update_row(c, off + 5 * ldc, c50, c51, w, accumulate)
    else:
        ld = 2 * w
        _update_row(edge, 0, c00, c01, w, False)
        _update_row(edge, ld, c10, c11, w, False)
        _update_row(edge, 2 * ld, c20, c21, w, False)
        _update_row(edge, 3 * ld, c30, c31, w, False)
        _update_row(edge, 4 * ld, c40, c41, w, False)
        _update_row(edge, 5 * ld, c50, c51, w, False)
        for r in range(mr):
            for j in range(nr):
                v = edge[r * ld + j]
                if accumulate:
                    v = c[off + r * ldc + j] + v
                c[off + r * ldc + j] = v


@njit()
def _macro_kernel(ap, bp, mb, nb, kb, c, off, ldc, accumulate, edge):
    """``C[block] (+)= Ap @ Bp``: every ``B`` micro-panel against every ``A`` micro-panel."""
    nr_full = 2 * width(c)
    for jr in range(0, nb, nr_full):
        nr = min(nr_full, nb - jr)
        for ir in range(0, mb, MR):
            _micro_kernel(kb, ap, ir * kb, bp, jr * kb, c, off + ir * ldc + jr, ldc,
                          min(MR, mb - ir), nr, accumulate, edge)


@njit()
def _gemm_range(a, b, c, accumulate, i0, i1, j0, j1, kc, mc, nc):
    """``c[i0:i1, j0:j1] (+)= a[i0:i1] @ b[:, j0:j1]`` with its own packing buffers."""
    k_total = a.shape[1]
    ldc = c.shape[1]
    flat = c.reshape(c.size)
    nr = 2 * width(c)
    mb_max = min(mc, i1 - i0)
    nb_max = min(nc, j1 - j0)
    kb_max = min(kc, k_total)
    ap = np.empty(((mb_max + MR - 1) // MR) * MR * kb_max, c.dtype)
    bp = np.empty(((nb_max + nr - 1) // nr) * nr * kb_max, c.dtype)
    edge = np.empty(MR * nr, c.dtype)
    if k_total == 0 and not accumulate:
        for i in range(i0, i1):
            for j in range(j0, j1):
                c[i, j] = 0
    for jc in range(j0, j1, nc):
        nb = min(nc, j1 - jc)
        for pc in range(0, k_total, kc):
            kb = min(kc, k_total - pc)
            for ic in range(i0, i1, mc):
                mb = min(mc, i1 - ic)
                pack_a(a, ic, mb, pc, kb, ap)
                # the first row block packs B a few micro-panels at a time, each chunk just
                # before its use (still in L1/L2 then); later row blocks reuse the packed B
                step = _B_CHUNK * nr if ic == i0 else nb
                for jr in range(0, nb, step):
                    cols = min(step, nb - jr)
                    if ic == i0:
                        pack_b(b, pc, kb, jc + jr, cols, nr, bp[jr * kb:])
                    _macro_kernel(ap, bp[jr * kb:], mb, cols, kb, flat, ic * ldc + jc + jr, ldc,
                                  accumulate or pc > 0, edge)


@njit(cache=True)
def _gemm(a, b, c, accumulate, kc, mc, nc):
    """``c (+)= a @ b`` on one thread."""
    _gemm_range(a, b, c, accumulate, 0, a.shape[0], 0, b.shape[1], kc, mc, nc)


@njit(cache=True, parallel=True)
def _gemm_parallel(a, b, c, accumulate, kc, mc, nc, parts):
    """``c (+)= a @ b`` cut into ``parts`` independent column (or row) ranges, one per task."""
    m, n = c.shape
    nr = 2 * width(c)
    by_columns = (n + nr - 1) // nr >= (m + MR - 1) // MR
    unit = nr if by_columns else MR
    units = ((n if by_columns else m) + unit - 1) // unit
    for t in numba.prange(parts):
        lo = min(units * t // parts * unit, n if by_columns else m)
        hi = min(units * (t + 1) // parts * unit, n if by_columns else m)
        if by_columns:
            _gemm_range(a, b, c, accumulate, 0, m, lo, hi, kc, mc, nc)
        else:
            _gemm_range(a, b, c, accumulate, lo, hi, 0, n, kc, mc, nc)


def gemm(a, b, c=None, *, accumulate=False, threads=1, blocks=None):
    """``c = a @ b`` (or ``c += a @ b``) with the packed register-blocked engine.

    Parameters
    ----------
    a : ndarray, shape (M, K)
    b : ndarray, shape (K, N)
        Same dtype as ``a``: float32 or float64. Copied if not C-contiguous.
    c : ndarray, shape (M, N), optional
        C-contiguous, of that dtype; allocated when omitted.
    accumulate : bool
        Add the product to ``c`` instead of overwriting it (needs ``c``).
    threads : int
        Independent column (or row) ranges computed in parallel with Numba's ``prange``;
        the result is bitwise the same for every value.
    blocks : tuple of int, optional
        ``(KC, MC, NC)`` instead of :func:`blocking`'s; ``KC`` changes the summation order.

    Returns
    -------
    ndarray
        ``c``.

    Raises
    ------
    TypeError
        For dtypes other than float32 and float64, or mixed dtypes.
    ValueError
        For shapes that do not chain, a ``c`` of the wrong shape or not C-contiguous,
        ``accumulate`` without ``c``, or ``threads`` or a block size below 1.

    Notes
    -----
    Each ``c[i, j]`` is ``sum_k a[i, k] * b[k, j]`` accumulated from zero in ascending
    ``k`` within each ``KC`` block, the block sums added in order (see the module notes).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.engine import gemm
    >>> a = np.arange(6.0).reshape(2, 3); b = np.ones((3, 4))
    >>> gemm(a, b)
    array([[ 3.,  3.,  3.,  3.],
           [12., 12., 12., 12.]])
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.dtype != b.dtype or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"gemm: a and b must both be float32 or float64, got {a.dtype} and {b.dtype}")
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"gemm: shapes {a.shape} and {b.shape} do not chain")
    shape = (a.shape[0], b.shape[1])
    if c is None:
        if accumulate:
            raise ValueError("gemm: accumulate=True needs c")
        c = np.empty(shape, a.dtype)
    elif c.shape != shape or c.dtype != a.dtype or not c.flags.c_contiguous:
        raise ValueError(f"gemm: c must be a C-contiguous {a.dtype} array of shape {shape}, "
                         f"got {c.dtype} {c.shape}")
    kc, mc, nc = blocking(a.dtype) if blocks is None else blocks
    if min(kc, mc, nc, threads) < 1:
        raise ValueError(f"gemm: threads {threads} and blocks {(kc, mc, nc)} must be >= 1")
    a = np.ascontiguousarray(a)
    b = np.ascontiguousarray(b)
    if threads == 1:
        _gemm(a, b, c, bool(accumulate), int(kc), int(mc), int(nc))
    else:
        _gemm_parallel(a, b, c, bool(accumulate), int(kc), int(mc), int(nc), int(threads))
    return c


# ----------------------------------------------------------------------------
# the weight gradient on the engine: per group one GEMM whose depth is the pixels,
#   gw[g*C_a_g + i, j] = sum_p A[i, p] * B[p, j],
# A[i, p] = a[n, g*C_a_g + i, oh, ow] (pixel p = (n, oh, ow)) and
# B[p, j] = b[n, g*C_b_g + cb, oh*sH + kh*dH - top, ow*sW + kw*dW - left], j = (cb, kh, kw)


@njit(cache=True)
def pack_a_pixels(a, ca0, mb, pc, kb, ap):
    """Pack ``A[ca0:ca0+mb, pc:pc+kb]`` of a weight gradient, channels by pixels, straight
    from ``a`` (N, C_a, H_o, W_o): ``ap[q*kb + k*MR + r] = a[n, ca0 + q + r, oh, ow]`` for
    pixel ``pc + k = (n*H_o + oh)*W_o + ow`` (``q`` a multiple of ``MR``), the rows past
    ``mb`` zero. The pixels of one image are consecutive in ``a``, so each row is copied in
    runs that end only at an image's edge.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.engine import pack_a_pixels, MR
    >>> a = np.arange(8.0).reshape(2, 2, 1, 2)          # 2 images, 2 channels, 2 pixels
    >>> ap = np.full(MR * 3, np.nan)
    >>> pack_a_pixels(a, 1, 1, 1, 3, ap)                # channel 1, pixels 1..3
    >>> ap.reshape(3, MR)[:, :2].tolist()
    [[3.0, 0.0], [6.0, 0.0], [7.0, 0.0]]
    """
    c_a = a.shape[1]
    hw = a.shape[2] * a.shape[3]
    af = a.reshape(a.size)
    for q in range(0, mb, MR):
        rows = min(MR, mb - q)
        base = q * kb
        k = 0
        while k < kb:
            n = (pc + k) // hw
            pix = pc + k - n * hw
            seg = min(kb - k, hw - pix)
            for r in range(MR):
                dst = base + k * MR + r
                if r < rows:
                    src = (n * c_a + ca0 + q + r) * hw + pix
                    for i in range(seg):
                        ap[dst + i * MR] = af[src + i]
                else:
                    for i in range(seg):
                        ap[dst + i * MR] = 0
            k += seg


@njit(inline="always")
def _first_inside(off, s):
    """The least ``o >= 0`` with ``o*s + off >= 0``."""
    return max(0, -(off // s))


@njit(cache=True)
def pack_b_sampled(b, cb0, k_w, taps, sh, sw, dh, dw, top, left, w_o, hw_o, pc, kb, j0, nb, bp,
                   tab):
    """Pack ``B[pc:pc+kb, j0:j0+nb]`` of a weight gradient, pixels by (channel, tap),
    straight from ``b`` (N, C_b, H, W) in :func:`pack_b`'s layout:

        B[p, j] = b[n, cb0 + j // taps, oh*sH + kh*dH - top, ow*sW + kw*dW - left]

    for pixel ``p = (n*H_o + oh)*W_o + ow`` and tap ``j % taps = kh*k_w + kw``; zero
    where that lies outside ``b``. ``tab`` is ``int64`` scratch of at least ``(8, nb)``.

    Per column it first finds the output rows and columns whose reads lie inside ``b``;
    the pixels are then walked in runs along an output row, and each (run, column) is a
    strided copy between two bounds, with zeros outside them: no test per value.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import simd
    >>> from convtranspose.cpu.engine import pack_b_sampled
    >>> b = np.arange(9.0).reshape(1, 1, 3, 3)
    >>> nr = simd.tile(np.float64)[1]
    >>> bp = np.full(2 * nr, np.nan)                    # 2 pixels x 2 taps (kw = 0, 1)
    >>> pack_b_sampled(b, 0, 2, 2, 2, 2, 1, 1, 0, 1, 2, 4, 0, 2, 0, 2, bp,
    ...                np.empty((8, 2), np.int64))
    >>> bp.reshape(2, nr)[:, :2].tolist()               # pixel (0, 0), then (0, 1)
    [[0.0, 0.0], [1.0, 2.0]]
    """
    c_b, h, w = b.shape[1], b.shape[2], b.shape[3]
    bf = b.reshape(b.size)
    nr = 2 * width(bp)
    img = c_b * h * w
    h_o = hw_o // w_o
    for j in range(nb):
        tp = (j0 + j) % taps
        r_off = tp // k_w * dh - top
        c_off = tp % k_w * dw - left
        tab[0, j] = (cb0 + (j0 + j) // taps) * h * w + r_off * w + c_off
        tab[1, j] = _first_inside(r_off, sh)                       # rows oh inside: [1], [2]
        tab[2, j] = max(tab[1, j], min(h_o, _first_inside(r_off - h, sh)))
        tab[3, j] = min(w_o, _first_inside(c_off, sw))              # columns ow: [3], [4]
        tab[4, j] = max(tab[3, j], min(w_o, _first_inside(c_off - w, sw)))
        tab[5, j] = j // nr * nr * kb + j % nr                      # where column j goes
    cols = nb % nr
    if cols:                                        # the last panel's padding columns
        last = (nb - cols) * kb
        for k in range(kb):
            for j in range(cols, nr):
                bp[last + k * nr + j] = 0
    n = pc // hw_o
    oh = (pc - n * hw_o) // w_o
    ow = pc - n * hw_o - oh * w_o
    k = 0
    while k < kb:
        run = min(kb - k, w_o - ow)
        row = n * img + oh * sh * w
        for j in range(nb):
            dst = tab[5, j] + k * nr
            if oh < tab[1, j] or oh >= tab[2, j]:
                for i in range(run):
                    bp[dst + i * nr] = 0
                continue
            lo = min(run, max(0, tab[3, j] - ow))
            hi = max(lo, min(run, tab[4, j] - ow))
            src = row + tab[0, j] + ow * sw
            for i in range(lo):
                bp[dst + i * nr] = 0
            for i in range(lo, hi):
                bp[dst + i * nr] = bf[src + i * sw]
            for i in range(hi, run):
                bp[dst + i * nr] = 0
        k += run
        ow += run
        if ow == w_o:
            ow = 0
            oh += 1
            if oh == h_o:
                oh = 0
                n += 1


@njit(inline="always")
def pixel_offsets(geo, pc, kb, pix):
    """``pix[k]``: where pixel ``pc + k = (n*H_o + oh)*W_o + ow`` of ``a``'s grid reads tap
    ``(0, 0)``'s first channel in a zero-bordered channels-last copy of ``b``,
    ``((n*Hp + oh*sH + row0)*Wp + ow*sW + col0)*C_b`` for ``geo = (H_o, W_o, Hp, Wp, C_b,
    sH, sW, row0, col0)``."""
    h_o, w_o, hp, wp, c_b = geo[0], geo[1], geo[2], geo[3], geo[4]
    sh, sw, row0, col0 = geo[5], geo[6], geo[7], geo[8]
    hw_o = h_o * w_o
    n = pc // hw_o
    oh = (pc - n * hw_o) // w_o
    ow = pc - n * hw_o - oh * w_o
    for k in range(kb):
        pix[k] = ((n * hp + oh * sh + row0) * wp + ow * sw + col0) * c_b
        ow += 1
        if ow == w_o:
            ow = 0
            oh += 1
            if oh == h_o:
                oh = 0
                n += 1


@njit(cache=True)
def pack_b_channels_last(bb, col_off, geo, pc, kb, j0, nb, bp, pix):
    """Pack ``B[pc:pc+kb, j0:j0+nb]`` of a weight gradient whose columns run ``j = (kh, kw,
    cb)`` (channels innermost) from ``bb``, a zero-bordered channels-last copy of ``b``
    (:func:`convtranspose.cpu.nd_engine.relayout`) seen flat, in :func:`pack_b`'s layout::

        B[p, j] = bb.flat[pix(p) + col_off[j]]

    with ``pix(p)`` :func:`pixel_offsets`' and ``col_off[j]`` column ``j``'s tap and
    channel offset. The
    border holds every read, so no value is tested: a micro-panel whose columns are
    consecutive in ``bb`` (one tap, or neighbouring taps that meet) is two vector copies per
    pixel. ``pix`` is ``int64`` scratch of at least ``kb``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import simd
    >>> from convtranspose.cpu.engine import pack_b_channels_last
    >>> bb = np.arange(6.0)                               # 3 pixels x 2 channels, no border
    >>> nr = simd.tile(np.float64)[1]
    >>> bp = np.full(2 * nr, np.nan)                       # pixels 1, 2 of a 1x3 grid
    >>> geo = np.array([1, 3, 1, 3, 2, 1, 1, 0, 0])
    >>> pack_b_channels_last(bb, np.array([0, 1]), geo, 1, 2, 0, 2, bp, np.empty(2, np.int64))
    >>> bp.reshape(2, nr)[:, :3].tolist()                # channels 0, 1, then zeros
    [[2.0, 3.0, 0.0], [4.0, 5.0, 0.0]]
    """
    w = width(bp)
    nr = 2 * w
    pixel_offsets(geo, pc, kb, pix)
    for q in range(0, nb, nr):
        cols = min(nr, nb - q)
        base = q * kb
        src = col_off[j0 + q]
        runs = cols == nr
        for j in range(1, cols):
            runs = runs and col_off[j0 + q + j] == src + j
        if runs:
            for k in range(kb):
                s = pix[k] + src
                store(bp, base + k * nr, load(bb, s))
                store(bp, base + k * nr + w, load(bb, s + w))
        else:
            for k in range(kb):
                d = base + k * nr
                for j in range(cols):
                    bp[d + j] = bb[pix[k] + col_off[j0 + q + j]]
                for j in range(cols, nr):
                    bp[d + j] = 0


@njit(cache=True)
def _weight_grad_task(t, a, b, first, rest, tasks, k_w, taps, sh, sw, dh, dw, top, left, groups,
                      kc, mc, ws, slot, b_size, a_size, bb, col_off, geo):
    """Task ``t`` of :func:`weight_grad_kernel`."""
    g, j0, nb, p0, p1, part = (tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3], tasks[t, 4],
                               tasks[t, 5])
    c_a_g = a.shape[1] // groups
    c_b_g = b.shape[1] // groups
    ldc = c_b_g * taps
    w_o = a.shape[3]
    hw_o = a.shape[2] * w_o
    nr = 2 * width(ws)
    base = numba.get_thread_id() * slot
    bp = ws[base:base + b_size]
    ap = ws[base + b_size:base + b_size + a_size]
    edge = ws[base + slot - MR * nr:base + slot]
    tab = np.empty((8, nb), np.int64)
    pix = np.empty(kc, np.int64)
    c = first if part == 0 else rest
    off = (0 if part == 0 else (part - 1) * first.shape[0]) + g * c_a_g * ldc + j0
    for pc in range(p0, p1, kc):
        kb = min(kc, p1 - pc)
        if bb.size:
            pack_b_channels_last(bb, col_off[g], geo, pc, kb, j0, nb, bp, pix)
        else:
            pack_b_sampled(b, g * c_b_g, k_w, taps, sh, sw, dh, dw, top, left, w_o, hw_o, pc,
                           kb, j0, nb, bp, tab)
        for ic in range(0, c_a_g, mc):
            mb = min(mc, c_a_g - ic)
            pack_a_pixels(a, g * c_a_g + ic, mb, pc, kb, ap)
            _macro_kernel(ap, bp, mb, nb, kb, c, off + ic * ldc, ldc, pc > p0, edge)


@njit(cache=True, parallel=True)
def weight_grad_kernel(a, b, first, rest, tasks, k_w, taps, sh, sw, dh, dw, top, left, groups,
                       kc, mc, ws, slot, b_size, a_size, bb, col_off, geo):
    """A weight gradient as one packed GEMM per group whose depth is the pixels, in tasks.

    ``a`` (N, C_a, H_o, W_o) lies on the strided grid, ``b`` (N, C_b, H, W) is sampled;
    the gradient ``gw`` (C_a, C_b // groups, kH, kW) is, per group ``g``, the GEMM
    ``gw[g*C_a_g + i, j] = sum_p A[i, p] B[p, j]`` (:func:`pack_a_pixels`,
    :func:`pack_b_sampled`) with ``j = (cb, kh, kw)``: ``gw``'s own layout, so the
    macro-kernel writes it in place. Task ``t`` is ``tasks[t] = (g, j0, nb, p0, p1,
    part)``: columns ``j0 .. j0+nb`` of group ``g`` summed over pixels ``p0 .. p1``, into
    ``first`` (``gw`` flat) for part 0 and into block ``part - 1`` of ``rest`` otherwise;
    the caller adds the parts in order. Each element is summed in ascending pixel order
    per ``KC`` block, blocks in order, so results depend on the tasks (fixed by the
    problem and ``NUMBA_NUM_THREADS``) and not on the threads in use.
    """
    for t in numba.prange(tasks.shape[0]):
        _weight_grad_task(t, a, b, first, rest, tasks, k_w, taps, sh, sw, dh, dw, top, left,
                          groups, kc, mc, ws, slot, b_size, a_size, bb, col_off, geo)
