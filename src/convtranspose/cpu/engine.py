"""A packed, register-blocked GEMM: ``C[M, N] (+)= A[M, K] @ B[K, N]`` in float32 and float64.

The structure is Goto and van de Geijn's ("Anatomy of high-performance matrix
multiplication", ACM TOMS 2008), as BLIS names it: three parts, each its own function.

* **Packing** (:func:`pack_a`, :func:`pack_b`): copy a block of an operand into the order
  in which the micro-kernel reads it. ``A[ic:ic+mb, pc:pc+kb]`` becomes micro-panels of
  ``MR`` rows stored ``k``-major (``ap[p*MR*kb + k*MR + r]``); ``B[pc:pc+kb, jc:jc+nb]``
  becomes micro-panels of ``NR`` columns (``bp[q*NR*kb + k*NR + j]``). Edges are
  zero-padded to whole panels, so the micro-kernel never branches on them. *The packing
  routines are the only code that knows the operands' layout*: a transposed convolution
  feeds the same macro-kernel by packing its weight as ``A`` and, per stride phase, its
  input as ``B`` (a ``pack_b_from_input_phase`` beside :func:`pack_b`).
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

Kernels take C-contiguous arrays and plain ints and never validate; :func:`gemm` is the
validating entry. Nothing here is wired into the backends yet (issue 11).
"""
from __future__ import annotations

import numba
import numpy as np

from .._jit import njit
from . import simd
from .simd import add, broadcast, fmadd, load, prefetch, store, width, zero

__all__ = ["gemm", "blocking", "pack_a", "pack_b"]

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
