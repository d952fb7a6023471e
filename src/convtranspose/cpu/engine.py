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

The same macro-kernel computes a transposed convolution (:func:`deconv_kernel`, planned
and called by :mod:`convtranspose.cpu.deconv`): per stride phase and group, ``A`` is the
phase's taps of the weight (:func:`pack_a_phases`, packed once per call), ``B`` is packed
straight from the input (:func:`pack_b_from_input_phase`), and a store step places each
phase's pixels, plus the bias, in the output. The correlation runs on
:func:`deconv_kernel` too (one phase, the input read at the stride), the weight gradient
on :func:`weight_grad_kernel`.

Kernels take C-contiguous arrays and plain ints and never validate; :func:`gemm` is the
validating entry. The backends reach the engine through :mod:`convtranspose.cpu.deconv`:
``direct`` runs on it the layers with enough channels per group
(``convtranspose.cpu.direct.ENGINE_MIN_ROWS`` and ``ENGINE_MIN_DEPTH``), and ``auto``
weighs it against ``im2col`` on the forward and picks it for the gradients there.
"""
from __future__ import annotations

import numba
import numpy as np

from .._jit import njit
from . import simd
from .simd import add, broadcast, fmadd, load, prefetch, store, width, zero

__all__ = ["gemm", "blocking", "pack_a", "pack_b", "pack_a_phases", "pack_b_from_input_phase",
           "deconv_kernel", "pack_a_pixels", "pack_b_sampled", "weight_grad_kernel"]

# The micro-kernel below is written out for this shape (12 named accumulators).
assert (simd.MR, simd.NR_VECTORS) == (6, 2)
MR = simd.MR

_KC = 256
_B_CHUNK = 16        # B micro-panels packed at a time while the first row block runs
_PACK_ROWS = 8       # rows of B copied per sweep across the panels: 8 sequential read streams
_A_CHANNELS = 16          # input channels per weight-packing task
_SWEEP_ALL_BYTES = 1024   # images this small are packed a whole panel at a time (see below)
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
# the transposed convolution on the engine: packing straight from the operands, one
# GEMM per (stride phase, group), stores that place each phase's pixels (issue 11)


@njit(cache=True, parallel=True)
def pack_a_phases(weight, ap, meta, k_rows, k_cols, groups, kc):
    """Pack every (phase, group)'s ``A`` into ``ap``; return how many packed weights are
    not finite (the caller falls back when any is).

    ``weight`` (C_in, C_out_g, kH, kW); ``meta`` as :func:`deconv_kernel` takes it. The
    ``A = (C_out_g, C_in_g*taps)`` of phase ``p`` and group ``g`` is ``A[co, k] =
    weight[g*C_in_g + k // taps, co, k_rows[r0 + tp // T_w], k_cols[c0 + tp % T_w]]``
    with ``tp = k % taps``: channels outer, the phase's taps row-major inner. Every ``KC``
    block of its depth is packed as :func:`pack_a` packs it, one after the other from
    ``off = a_off + g * Mp * C_in_g * taps``: block ``pc`` starts at ``off + pc * Mp``
    (``Mp``: ``C_out_g`` rounded up to whole ``MR``-row panels, the padding rows zero),
    so the micro-panel of its rows ``ic ..`` is at ``off + pc * Mp + ic * kb``. Tasks
    take ``_A_CHANNELS`` input channels each: their weights (read from cache for every
    phase) and a panel's rows for them (``_A_CHANNELS * MR`` consecutive values) are
    both at hand (one phase at a time over all channels read the whole weight from
    memory once per phase, 4x slower on a 1x1-image problem with 16 phases).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.engine import pack_a_phases, MR
    >>> w = np.arange(4.0).reshape(1, 1, 2, 2)          # one phase with all four taps
    >>> meta = np.array([[0, 0, 1, 1, 2, 2, 0, 0, 0]])
    >>> ap = np.full(MR * 4, np.nan)
    >>> int(pack_a_phases(w, ap, meta, np.arange(2), np.arange(2), 1, 256))
    0
    >>> ap.reshape(4, MR)[:, 0].tolist()               # k-major, rows padded with zeros
    [0.0, 1.0, 2.0, 3.0]
    """
    c_in_g = weight.shape[0] // groups
    blocks = (c_in_g + _A_CHANNELS - 1) // _A_CHANNELS
    bad = 0
    for u in numba.prange(groups * blocks):
        c_lo = (u % blocks) * _A_CHANNELS
        bad += _pack_a_channels(weight, ap, meta, k_rows, k_cols, groups, kc, u // blocks, c_lo,
                                min(c_in_g, c_lo + _A_CHANNELS))
    return bad


@njit(cache=True)
def _pack_a_channels(weight, ap, meta, k_rows, k_cols, groups, kc, g, c_lo, c_hi):
    """The part of :func:`pack_a_phases` for channels ``c_lo .. c_hi`` of group ``g``;
    return how many of them are not finite."""
    c_in, m = weight.shape[0], weight.shape[1]
    c_in_g = c_in // groups
    mp = (m + MR - 1) // MR * MR
    bad = 0
    for p in range(meta.shape[0]):
        t_h, t_w, r0, c0, a_off = meta[p, 4], meta[p, 5], meta[p, 6], meta[p, 7], meta[p, 8]
        taps = t_h * t_w
        k_total = c_in_g * taps
        off = a_off + g * mp * k_total
        for tp in range(taps):
            kh, kw = k_rows[r0 + tp // t_w], k_cols[c0 + tp % t_w]
            for q in range(0, mp, MR):
                for c in range(c_lo, c_hi):
                    kk = c * taps + tp
                    pc = kk // kc * kc
                    dst = off + pc * mp + q * min(kc, k_total - pc) + (kk - pc) * MR
                    ci = g * c_in_g + c
                    for r in range(MR):
                        if q + r < m:
                            v = weight[ci, q + r, kh, kw]
                            ap[dst + r] = v
                            if not np.isfinite(v):
                                bad += 1
                        else:
                            ap[dst + r] = 0
    return bad


@njit(inline="always")
def _describe_panel(desc, sn, sh, sw, mi, a, b, n_a, n_b, cols, s_r, s_c):
    """Columns of one micro-panel from phase pixel ``(a, b)`` of image ``mi`` on, the
    pixels ``s_r`` rows and ``s_c`` columns of the input apart (which is ``sn``, ``sh``,
    ``sw`` elements between images, rows and columns): ``desc[0, j]`` the flat offset
    ``mi*sn + s_r*a*sh + s_c*b*sw``, ``desc[1, j]`` and ``desc[2, j]`` the pixel's row
    ``s_r*a`` and column ``s_c*b``. Return the next panel's ``(mi, a, b)`` and the
    bounds ``r_min, r_max, c_min, c_max`` of the panel's rows and columns."""
    r_min, r_max, c_min, c_max = s_r * a, s_r * a, s_c * b, s_c * b
    for j in range(cols):
        desc[0, j] = mi * sn + s_r * a * sh + s_c * b * sw
        desc[1, j] = s_r * a
        desc[2, j] = s_c * b
        r_max = max(r_max, s_r * a)
        c_min = min(c_min, s_c * b)
        c_max = max(c_max, s_c * b)
        b += 1
        if b == n_b:
            b = 0
            a += 1
            if a == n_a:
                a = 0
                mi += 1
                r_min = 0
    return mi, a, b, r_min, r_max, c_min, c_max


@njit(cache=True)
def pack_b_from_input_phase(xf, xg, n0, ci0, taps, off_r, off_c, a0, n_a, b0, n_b, pc, kb, jr,
                            cols, bp, s_r=1, s_c=1):
    """Pack ``B[pc:pc+kb, jr:jr+cols]`` of one phase task straight from the input ``x``.

    ``x`` (N, C_in, H, W) is read in place in any dense layout: ``xf`` holds its elements
    (NCHW or NHWC order, or any other), ``xg`` is ``(C_in, H, W, sN, sC, sH, sW)``, its
    sizes and its strides in elements (:func:`convtranspose.cpu.layout.geometry`).

    The task's ``B`` has a row per (channel, tap), ``k = c*taps + th*T_w + tw``, and a
    column per phase pixel ``(a, b)`` of images ``n0 + mi``, ``n = (mi*n_a + a)*n_b + b``::

        B[k, n] = x[n0 + mi, ci0 + c, off_r[th] + s_r*(a0 + a), off_c[tw] + s_c*(b0 + b)]

    zero where that pixel lies outside the input. The transposed convolution's phases read
    the input with unit steps ``s_r = s_c = 1``; a strided correlation (``conv2d``, the
    input gradient) reads it with its stride. The layout is :func:`pack_b`'s
    (``bp[q*NR*kb + k*NR + j]``, the last micro-panel zero-padded). As :func:`pack_b`
    does, it sweeps ``_PACK_ROWS`` rows across the micro-panels (a sweep writes whole
    cache lines one after the other, not one line per panel ``KC*NR`` values apart);
    for images of at most ``_SWEEP_ALL_BYTES`` a sweep is all ``kb`` rows, one panel after
    the other, so that it reads ``x`` along its channels, which are then consecutive in
    memory (5x faster on 4x4 images than 8-row sweeps, which read one cache line of each
    image in turn). Per micro-panel it lists its columns' pixels once per sweep; a row of the panel
    whose pixels all lie inside the input is then a copy (two vector copies where they
    are contiguous in ``x``), any other a copy that selects zero outside the input.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu import simd
    >>> from convtranspose.cpu.engine import pack_b_from_input_phase
    >>> x = np.arange(6.0).reshape(1, 1, 2, 3)
    >>> xg = np.array([1, 2, 3, 6, 6, 3, 1])          # C, H, W and the strides of NCHW
    >>> nr = simd.tile(np.float64)[1]
    >>> bp = np.full(2 * nr, np.nan)                   # taps at column offsets 0 and -1
    >>> pack_b_from_input_phase(x.ravel(), xg, 0, 0, 2, np.zeros(1, np.int64),
    ...                         np.array([0, -1]), 0, 2, 0, 3, 0, 2, 0, 6, bp)
    >>> bp.reshape(2, nr)[:, :6].tolist()
    [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0], [0.0, 0.0, 1.0, 0.0, 3.0, 4.0]]
    """
    h, w = xg[1], xg[2]
    sn, sc, sh, sw = xg[3], xg[4], xg[5], xg[6]
    vw = width(bp)
    nr = 2 * vw
    t_w = off_c.shape[0]
    t0 = jr // n_b
    b_first, a_first, mi_first = jr - t0 * n_b, t0 % n_a, t0 // n_a
    # channels-last: a pixel's channels are consecutive, so whole panels, read along k
    sweep = kb if h * w * xf.itemsize <= _SWEEP_ALL_BYTES or sc == 1 else _PACK_ROWS
    rows = np.empty((sweep, 3), np.int64)           # per row of a sweep: offset, dr, dc
    desc = np.empty((3, nr), np.int64)              # per column of a panel (_describe_panel)
    for k0 in range(0, kb, sweep):
        k1 = min(kb, k0 + sweep)
        for k in range(k0, k1):
            ci = ci0 + (pc + k) // taps
            tp = (pc + k) % taps
            dr = off_r[tp // t_w] + s_r * a0
            dc = off_c[tp % t_w] + s_c * b0
            rows[k - k0, 0] = n0 * sn + ci * sc + dr * sh + dc * sw
            rows[k - k0, 1] = dr
            rows[k - k0, 2] = dc
        mi, a, b = mi_first, a_first, b_first
        for p in range(0, cols, nr):
            pcols = min(nr, cols - p)
            first = mi * sn + s_r * a * sh + s_c * b * sw
            mi, a, b, r_min, r_max, c_min, c_max = _describe_panel(desc, sn, sh, sw, mi, a, b,
                                                                   n_a, n_b, pcols, s_r, s_c)
            contiguous = s_c * sw == 1 and pcols == nr and desc[0, nr - 1] - first == nr - 1
            for k in range(k0, k1):
                src, dr, dc = rows[k - k0, 0], rows[k - k0, 1], rows[k - k0, 2]
                dst = p * kb + k * nr
                if dr + r_min >= 0 and dr + r_max < h and dc + c_min >= 0 and dc + c_max < w:
                    if contiguous:
                        store(bp, dst, load(xf, src + first))
                        store(bp, dst + vw, load(xf, src + first + vw))
                    else:
                        for j in range(pcols):
                            bp[dst + j] = xf[src + desc[0, j]]
                else:
                    for j in range(pcols):
                        ih = dr + desc[1, j]
                        iw = dc + desc[2, j]
                        inside = (ih >= 0) & (ih < h) & (iw >= 0) & (iw < w)
                        v = xf[src + desc[0, j] if inside else 0]
                        bp[dst + j] = v if inside else 0
                for j in range(pcols, nr):
                    bp[dst + j] = 0


@njit(cache=True)
def _store_phase_block(c, m_rows, of, og, bias, n0, co0, m, n_a, n_b, o_r, o_c, s_h, s_w):
    """``out[n0 + mi, co0 + co, o_r + s_h*a, o_c + s_w*b] = c[co, (mi*n_a + a)*n_b + b]``
    (``co < m_rows``) plus ``bias[co0 + co]`` when ``bias`` is not empty: a task's pixels
    in their places. ``out`` is written in place in any dense layout: ``of`` holds its
    elements, ``og`` is ``(C_out, H_out, W_out, sN, sC, sH, sW)`` (flat offsets, no view
    per output row). Channels-last outputs are written a pixel's channels at a time."""
    sn, sc, sh, sw = og[3], og[4], og[5], og[6]
    has_bias = bias.shape[0] > 0
    nb = m * n_a * n_b
    if sc == 1 and m_rows > 1:
        for mi in range(m):
            for a in range(n_a):
                dst = (n0 + mi) * sn + co0 + (o_r + s_h * a) * sh + o_c * sw
                src = mi * n_a * n_b + a * n_b
                for b in range(n_b):
                    for co in range(m_rows):
                        v = c[co * nb + src + b]
                        of[dst + co] = v + bias[co0 + co] if has_bias else v
                    dst += s_w * sw
        return
    for co in range(m_rows):
        bv = bias[co0 + co] if has_bias else of[0] * 0
        for mi in range(m):
            dst = (n0 + mi) * sn + (co0 + co) * sc + o_r * sh + o_c * sw
            src = co * nb + mi * n_a * n_b
            for a in range(n_a):
                if has_bias:
                    for b in range(n_b):
                        of[dst + s_w * sw * b] = c[src + b] + bv
                else:
                    for b in range(n_b):
                        of[dst + s_w * sw * b] = c[src + b]
                dst += s_h * sh
                src += n_b


@njit(cache=True)
def _deconv_task(t, xf, xg, ap, bias, of, og, meta, off_rows, off_cols, tasks, s_h, s_w, groups,
                 kc, mc, ws, slot, b_size, in_h, in_w):
    """Task ``t`` of :func:`deconv_kernel`: pack ``B`` from ``x``, multiply, store."""
    c_in_g = xg[0] // groups
    m_rows = og[0] // groups
    mp = (m_rows + MR - 1) // MR * MR
    p, g, n0, m, a0, n_a, b0, n_b = (tasks[t, 0], tasks[t, 1], tasks[t, 2], tasks[t, 3],
                                     tasks[t, 4], tasks[t, 5], tasks[t, 6], tasks[t, 7])
    o0r, o0c, t_h, t_w = meta[p, 0], meta[p, 1], meta[p, 4], meta[p, 5]
    r0, c0, a_off = meta[p, 6], meta[p, 7], meta[p, 8]
    taps = t_h * t_w
    k_total = c_in_g * taps
    a_base = a_off + g * mp * k_total
    off_r = off_rows[r0:r0 + t_h]
    off_c = off_cols[c0:c0 + t_w]
    nb = m * n_a * n_b
    nr = 2 * width(ws)
    base = numba.get_thread_id() * slot
    bp = ws[base:base + b_size]
    c = ws[base + b_size:base + b_size + m_rows * nb]
    edge = ws[base + slot - MR * nr:base + slot]
    for pc in range(0, k_total, kc):
        kb = min(kc, k_total - pc)
        for ic in range(0, m_rows, mc):
            mb = min(mc, m_rows - ic)
            # as in _gemm_range: the first row block packs B a chunk at a time just
            # before its use; later row blocks reuse the packed block
            step = _B_CHUNK * nr if ic == 0 else nb
            for jr in range(0, nb, step):
                cols = min(step, nb - jr)
                if ic == 0:
                    pack_b_from_input_phase(xf, xg, n0, g * c_in_g, taps, off_r, off_c, a0, n_a,
                                            b0, n_b, pc, kb, jr, cols, bp[jr * kb:], in_h, in_w)
                _macro_kernel(ap[a_base + pc * mp + ic * kb:], bp[jr * kb:], mb, cols, kb, c,
                              ic * nb + jr, nb, pc > 0, edge)
    _store_phase_block(c, m_rows, of, og, bias, n0, g * m_rows, m, n_a, n_b, o0r + s_h * a0,
                       o0c + s_w * b0, s_h, s_w)


@njit(cache=True, parallel=True)
def deconv_kernel(xf, xg, ap, bias, of, og, meta, off_rows, off_cols, tasks, s_h, s_w, groups,
                  kc, mc, ws, slot, b_size, in_h, in_w):
    """A transposed convolution as one packed GEMM per (stride phase, group), in tasks.

    ``x`` (N, C_in, H, W) and ``out`` (N, C_out, H_out, W_out) in any dense layouts, each
    given as its elements and its geometry (``xf, xg`` and ``of, og``, see
    :func:`pack_b_from_input_phase`); ``bias`` (C_out,) or empty;
    ``ap`` the weights packed by :func:`pack_a_phases`. Phase ``p`` owns the output pixels
    ``(o0r + s_h*a, o0c + s_w*b)``, ``a < rows``, ``b < cols``; ``meta[p]`` is ``o0r, o0c,
    rows, cols, T_h, T_w, r0, c0, a_off``: its taps read input pixel ``(off_rows[r0 + th]
    + in_h*a, off_cols[c0 + tw] + in_w*b)`` (``in_h = in_w = 1`` for a transposed
    convolution's phases; for a correlation, whose one phase is the whole output with
    ``s_h = s_w = 1``, its stride) and its packed ``A`` starts at ``ap[a_off]`` (group
    ``g`` at ``a_off + g * Mp * C_in_g * T_h * T_w``).

    Task ``t`` is ``tasks[t] = (p, g, n0, m, a0, n_a, b0, n_b)``: the output channels of
    group ``g`` at phase pixels ``a0 <= a < a0 + n_a``, ``b0 <= b < b0 + n_b`` of images
    ``n0 .. n0+m``. It computes them as ``C = A @ B`` with ``B`` packed from ``x`` block
    by block (:func:`pack_b_from_input_phase`), ``C`` accumulated in its thread's slot
    ``ws[i*slot:(i+1)*slot]`` (``b_size`` elements of packed ``B``, then ``C``, then an
    edge tile), and stores ``C`` plus the bias into its pixels (:func:`_store_phase_block`).
    Tasks own disjoint outputs and every element's sum runs in ascending ``k`` per ``KC``
    block, blocks in order, then plus the bias: results do not depend on the thread
    count, the batch size or the cut into tasks. The zeros packed for taps that read
    outside the input are multiplied, so the weights must be finite.
    """
    for t in numba.prange(tasks.shape[0]):
        _deconv_task(t, xf, xg, ap, bias, of, og, meta, off_rows, off_cols, tasks, s_h, s_w,
                     groups, kc, mc, ws, slot, b_size, in_h, in_w)


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


@njit(cache=True)
def _weight_grad_task(t, a, b, first, rest, tasks, k_w, taps, sh, sw, dh, dw, top, left, groups,
                      kc, mc, ws, slot, b_size, a_size):
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
    c = first if part == 0 else rest
    off = (0 if part == 0 else (part - 1) * first.shape[0]) + g * c_a_g * ldc + j0
    for pc in range(p0, p1, kc):
        kb = min(kc, p1 - pc)
        pack_b_sampled(b, g * c_b_g, k_w, taps, sh, sw, dh, dw, top, left, w_o, hw_o, pc, kb,
                       j0, nb, bp, tab)
        for ic in range(0, c_a_g, mc):
            mb = min(mc, c_a_g - ic)
            pack_a_pixels(a, g * c_a_g + ic, mb, pc, kb, ap)
            _macro_kernel(ap, bp, mb, nb, kb, c, off + ic * ldc, ldc, pc > p0, edge)


@njit(cache=True, parallel=True)
def weight_grad_kernel(a, b, first, rest, tasks, k_w, taps, sh, sw, dh, dw, top, left, groups,
                       kc, mc, ws, slot, b_size, a_size):
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
                          groups, kc, mc, ws, slot, b_size, a_size)
