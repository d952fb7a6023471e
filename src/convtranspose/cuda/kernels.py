"""``numba.cuda`` kernels of the ``cuda`` backend: a gather kernel and a tiled kernel.

Both kernels are in gather form: every output element is written by exactly one thread,
once, from the kernel taps that land on the stride grid, so no product with an inserted
zero is formed and results do not depend on the launch shape.

* :func:`gather_kernel` -- one output element per thread (grid-stride loops); it reads
  the taps that reach its row and column from small tables (the CPU backends' tap
  arithmetic, uploaded once per shape) and sums over the input channels of the output
  channel's group. No integer division per element. Memory bound; the choice for
  depthwise and few-channel problems.
* :func:`tiled_kernel` -- for many channels per group. The output pixels are split into
  residue classes (``(oh + top) % sH``, ``(ow + left) % sW``), only the ``min(sH, H_out)
  * min(sW, W_out)`` that hold pixels (a stride wider than the output leaves the others
  empty, and they get no tiles); inside one class every pixel uses the same taps, so the
  problem becomes a GEMM per class:
  ``out[co, p] = sum_{ci, kh, kw} weight[ci, co, kh, kw] * x[ci, ih(p, kh), iw(p, kw)]``.
  A block owns ``TILE_CO`` output channels by ``TILE_P`` pixels of one class (the
  batch is folded into the pixels, so small images with a large batch fill tiles); it stages ``TILE_K`` input channels of weights and (zero-filled at the
  borders) inputs in shared memory, and each thread keeps ``REG_CO x REG_P`` results in
  registers.

The tiled kernel's GEMM multiplies the zeros it loads for taps that fall outside the
input, so a non-finite weight would give NaN (``0 * inf``) at pixels the definition
leaves finite (no padded or inserted zero is ever multiplied). So a problem for the tiled
kernel is launched as three kernels on its stream, with no host synchronisation:
:func:`nonfinite_kernel` writes a device flag saying whether the weight holds an Inf or
NaN, then the tiled kernel runs only where the flag is clear and the gather kernel only
where it is set (the other's blocks return at once). The gather kernel run alone gets a
flag that is always set.

Kernels are made by factories cached per dtype and launch shape; the launch-shape
constants below are read at call time, so a test can patch them (the simulator wants
tiny blocks). Float32 kernels compute in float32: accumulators start from a typed zero
and every operand is cast to the result type (``tests/cuda/test_ptx.py`` checks the PTX
for ``.f64``). Kernels assume valid arguments and never allocate the result.
"""
from __future__ import annotations

import functools
import math
import warnings

import numba
import numpy as np
from numba import cuda
from numba.core.errors import NumbaPerformanceWarning

from ..cpu.taps import _row_table as tap_list   # one definition of the tap arithmetic

__all__ = ["GATHER_THREADS", "GATHER_MAX_GRID", "TILE_CO", "TILE_P", "TILE_K", "REG_CO",
           "REG_P", "TILED_MAX_BLOCKS", "TILED_MIN_CHANNELS", "CHECK_THREADS", "gather_kernel",
           "tiled_kernel", "nonfinite_kernel", "pick_kernel", "launch"]

# ---------------------------------------------------------------------------------------
# launch shapes (patched small by tests/cuda/conftest.py)

#: Threads per block of the gather kernel (a 3-D block: output columns, rows, planes), and the
#: most blocks along each grid axis (x: columns, y: rows, z: images x channels); the
#: kernel loops over what a smaller grid does not cover.
GATHER_THREADS = 256
GATHER_MAX_GRID = (65535, 65535, 65535)
#: Tiled kernel: output channels x pixels per block, input channels per shared-memory
#: stage, and output channels x pixels per thread. ``TILE_CO % REG_CO == 0`` and
#: ``TILE_P % REG_P == 0``; a block has ``(TILE_CO // REG_CO) * (TILE_P // REG_P)``
#: threads, and that number must divide ``TILE_P`` or be a multiple of it.
TILE_CO = 64
TILE_P = 64
TILE_K = 16
REG_CO = 4
REG_P = 4
TILED_MAX_BLOCKS = 1 << 20
#: The tiled kernel runs when input and output channels per group are both at least this.
TILED_MIN_CHANNELS = 16
#: Threads of the one block of :func:`nonfinite_kernel`.
CHECK_THREADS = 256

_NB_TYPES = {np.dtype(np.float32): numba.float32, np.dtype(np.float64): numba.float64}


@functools.lru_cache(maxsize=None)
def gather_kernel(dtype):
    """The gather kernel computing in ``dtype`` (float32 or float64).

    Signature ``(x, weight, bias, out, row_count, row_k, row_i, col_count, col_k, col_i,
    groups, has_bias, use_gather)`` with ``x`` (N, C_in, H, W), ``weight`` (C_in, C_out_g, kH, kW),
    ``bias`` (C_out,) (read only when ``has_bias``), ``out`` (N, C_out, H_out, W_out) and
    int32 (int64 for huge images) tap tables (``convtranspose.cpu.taps._row_table``, built
    once per shape): output row ``oh`` receives ``row_count[oh]`` taps, tap ``t`` being
    kernel row ``row_k[oh, t]`` on input row ``row_i[oh, t]``; likewise for columns. So the
    kernel does no division at all. It computes nothing unless ``use_gather[0]`` (an
    int32 device array of one element) is non-zero.
    Launch with 3-D blocks and grid over (columns, rows, N*C_out).
    """
    nbt = _NB_TYPES[np.dtype(dtype)]
    zero = nbt(0)

    @cuda.jit
    def kernel(x, weight, bias, out, row_count, row_k, row_i, col_count, col_k, col_i,
               groups, has_bias, use_gather):
        if use_gather[0] == 0:
            return
        c_in = x.shape[1]
        c_out_g = weight.shape[1]
        n_img, c_out, h_out, w_out = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
        c_in_g = c_in // groups
        ow_start = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        oh_start = cuda.blockIdx.y * cuda.blockDim.y + cuda.threadIdx.y
        ow_step = cuda.gridDim.x * cuda.blockDim.x
        oh_step = cuda.gridDim.y * cuda.blockDim.y
        plane_start = cuda.blockIdx.z * cuda.blockDim.z + cuda.threadIdx.z
        plane_step = cuda.gridDim.z * cuda.blockDim.z
        for plane in range(plane_start, n_img * c_out, plane_step):
            n = plane // c_out
            co = plane - n * c_out
            g = co // c_out_g
            j = co - g * c_out_g
            ci0 = g * c_in_g
            bv = zero
            if has_bias:
                bv = nbt(bias[co])
            for oh in range(oh_start, h_out, oh_step):
                for ow in range(ow_start, w_out, ow_step):
                    acc = zero
                    for th in range(row_count[oh]):
                        kh = row_k[oh, th]
                        ih = row_i[oh, th]
                        for tw in range(col_count[ow]):
                            kw = col_k[ow, tw]
                            iw = col_i[ow, tw]
                            for ci in range(ci0, ci0 + c_in_g):
                                acc += nbt(x[n, ci, ih, iw]) * nbt(weight[ci, j, kh, kw])
                    out[n, co, oh, ow] = acc + bv

    return kernel


@functools.lru_cache(maxsize=None)
def tiled_kernel(dtype, tile_co, tile_p, tile_k, reg_co, reg_p):
    """The tiled shared-memory kernel for ``dtype`` and one launch shape.

    Signature ``(x, weight, bias, out, s_h, s_w, top, left, d_h, d_w, groups, has_bias,
    use_gather)``; it computes nothing when ``use_gather[0]`` is non-zero. Launch it
    with ``(tile_co // reg_co) * (tile_p // reg_p)`` threads per block and any
    number of blocks (the blocks loop over tiles).

    Inside residue class ``(rh, rw)`` (output rows with ``(oh + top) % sH == rh``), the
    valid kernel rows satisfy ``kh*dH = rh + sH*m_kh``, and ``oh + top = rh + sH*(q0 + a)``
    for the class's ``a``-th row, so the input row is ``ih = q0 + a - m_kh``: no division
    per element. Each thread decodes the pixels it loads once per tile. The classes are
    numbered by their first output row ``oh0 < min(sH, H_out)`` (and column), so the tile
    count stays below 10 per output element whatever the stride (no int64 overflow).
    """
    nbt = _NB_TYPES[np.dtype(dtype)]
    zero = nbt(0)
    ty_n = tile_co // reg_co
    tx_n = tile_p // reg_p
    nthreads = ty_n * tx_n
    if tile_co % reg_co or tile_p % reg_p or (nthreads % tile_p and tile_p % nthreads):
        raise ValueError(f"bad tiled launch shape: tile {tile_co}x{tile_p}, registers "
                         f"{reg_co}x{reg_p}, {nthreads} threads")
    nps = max(1, tile_p // nthreads)        # pixel slots each thread loads
    kstep = max(1, nthreads // tile_p)      # threads per pixel column of the x tile
    kreps = (tile_k + kstep - 1) // kstep

    @cuda.jit
    def kernel(x, weight, bias, out, s_h, s_w, top, left, d_h, d_w, groups, has_bias,
               use_gather):
        if use_gather[0] != 0:
            return                                   # the same for the whole grid
        c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
        c_out_g, k_h, k_w = weight.shape[1], weight.shape[2], weight.shape[3]
        n_img, h_out, w_out = out.shape[0], out.shape[2], out.shape[3]
        c_in_g = c_in // groups
        # the classes that exist: one per first row oh0 < min(s_h, h_out) (a stride wider
        # than the output leaves the other classes empty, and they get no tiles); as in
        # _tiled_tiles. cls_nh * cls_h < 2 * h_out (likewise for columns), so n_tiles is
        # below 10 per output element: no int64 overflow, whatever the stride
        cls_nh = s_h if s_h < h_out else h_out     # (min() makes compile_ptx need a GPU)
        cls_nw = s_w if s_w < w_out else w_out
        cls_h = (h_out - 1) // s_h + 1             # most rows in one residue class
        cls_w = (w_out - 1) // s_w + 1
        p_tiles = (n_img * cls_h * cls_w + tile_p - 1) // tile_p
        co_tiles = (c_out_g + tile_co - 1) // tile_co
        n_tiles = cls_nh * cls_nw * groups * co_tiles * p_tiles

        w_s = cuda.shared.array((tile_k, tile_co), nbt)
        x_s = cuda.shared.array((tile_k, tile_p), nbt)
        acc = cuda.local.array((reg_co, reg_p), nbt)
        ld_n = cuda.local.array(nps, numba.int64)
        ld_ih = cuda.local.array(nps, numba.int64)
        ld_iw = cuda.local.array(nps, numba.int64)
        tid = cuda.threadIdx.x
        ty = tid // tx_n
        tx = tid - ty * tx_n
        ld_pp = tid % tile_p
        ld_kk = tid // tile_p

        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            pt = tile % p_tiles
            r = tile // p_tiles
            ct = r % co_tiles
            r = r // co_tiles
            g = r % groups
            r = r // groups
            # the class of first output row oh0 and column ow0: rows oh with
            # (oh + top) % s_h == rh, starting from input row q0h; columns likewise
            oh0 = r // cls_nw
            ow0 = r - oh0 * cls_nw
            q0h = (oh0 + top) // s_h
            q0w = (ow0 + left) // s_w
            rh = oh0 + top - q0h * s_h
            rw = ow0 + left - q0w * s_w
            nh = (h_out - 1 - oh0) // s_h + 1
            nw = (w_out - 1 - ow0) // s_w + 1
            npix = nh * nw                           # pixels of the class in one image
            total = n_img * npix                     # ... in the whole batch
            p0 = pt * tile_p
            j0 = ct * tile_co
            if p0 >= total:
                continue                             # the same for the whole block
            for sl in range(nps):                    # decode the pixels this thread loads
                p = p0 + ld_pp + sl * nthreads
                if p < total:
                    n = p // npix
                    p = p - n * npix
                    pa = p // nw
                    ld_n[sl] = n
                    ld_ih[sl] = q0h + pa
                    ld_iw[sl] = q0w + p - pa * nw
                else:
                    ld_n[sl] = -1
            for a in range(reg_co):
                for b in range(reg_p):
                    acc[a, b] = zero
            cbase = g * c_in_g
            for kh in range(k_h):
                if (kh * d_h) % s_h != rh:
                    continue
                m_kh = (kh * d_h - rh) // s_h
                for kw in range(k_w):
                    if (kw * d_w) % s_w != rw:
                        continue
                    m_kw = (kw * d_w - rw) // s_w
                    for ci0 in range(0, c_in_g, tile_k):
                        for e in range(tid, tile_k * tile_co, nthreads):
                            kk = e // tile_co
                            cc = e - kk * tile_co
                            ci = ci0 + kk
                            jj = j0 + cc
                            v = zero
                            if ci < c_in_g and jj < c_out_g:
                                v = nbt(weight[cbase + ci, jj, kh, kw])
                            w_s[kk, cc] = v
                        for sl in range(nps):
                            pp = ld_pp + sl * nthreads
                            n = ld_n[sl]
                            ih = ld_ih[sl] - m_kh
                            iw = ld_iw[sl] - m_kw
                            inside = n >= 0 and ih >= 0 and ih < h_in and iw >= 0 and iw < w_in
                            for m in range(kreps):
                                kk = ld_kk + m * kstep
                                if kk < tile_k:
                                    ci = ci0 + kk
                                    v = zero
                                    if inside and ci < c_in_g:
                                        v = nbt(x[n, cbase + ci, ih, iw])
                                    x_s[kk, pp] = v
                        cuda.syncthreads()
                        for kk in range(tile_k):
                            for a in range(reg_co):
                                wv = w_s[kk, ty + a * ty_n]
                                for b in range(reg_p):
                                    acc[a, b] += wv * x_s[kk, tx + b * tx_n]
                        cuda.syncthreads()
            for b in range(reg_p):
                p = p0 + tx + b * tx_n
                if p < total:
                    n = p // npix
                    p = p - n * npix
                    pa = p // nw
                    oh = oh0 + pa * s_h
                    ow = ow0 + (p - pa * nw) * s_w
                    for a in range(reg_co):
                        jj = j0 + ty + a * ty_n
                        if jj < c_out_g:
                            co = g * c_out_g + jj
                            bv = zero
                            if has_bias:
                                bv = nbt(bias[co])
                            out[n, co, oh, ow] = acc[a, b] + bv

    return kernel


@functools.lru_cache(maxsize=None)
def nonfinite_kernel(threads):
    """The weight check of the tiled path, for one block of ``threads`` threads.

    Signature ``(weight, flag)`` with ``weight`` 4-D (any strides, either dtype) and
    ``flag`` an int32 device array of one element, set to 1 when ``weight`` holds an Inf
    or NaN, else 0. Launch exactly one block of ``threads`` threads.
    """

    @cuda.jit
    def kernel(weight, flag):
        seen = cuda.shared.array(1, numba.int32)
        tid = cuda.threadIdx.x
        if tid == 0:
            seen[0] = 0
        cuda.syncthreads()
        s1, s2, s3 = weight.shape[1], weight.shape[2], weight.shape[3]
        for e in range(tid, weight.size, threads):
            kw = e % s3
            r = e // s3
            kh = r % s2
            r = r // s2
            j = r % s1
            if not math.isfinite(weight[r // s1, j, kh, kw]):
                seen[0] = 1                          # every writer writes the same value
        cuda.syncthreads()
        if tid == 0:
            flag[0] = seen[0]

    return kernel


def pick_kernel(x_shape, w_shape, groups):
    """``"tiled"`` when both channel counts per group reach ``TILED_MIN_CHANNELS``, else
    ``"gather"``."""
    c_in_g = x_shape[1] // groups
    c_out_g = w_shape[1]
    return "tiled" if min(c_in_g, c_out_g) >= TILED_MIN_CHANNELS else "gather"


#: The largest index an int32 tap table holds; larger images or kernels get int64 tables.
TABLE_INT32_MAX = 2**31 - 1
_TABLES = {}


def _tables(out_len, in_len, k, s, d, before):
    """Device tap tables ``(count, k, i)`` of one dimension, cached per GPU: int32, or
    int64 when an input index or kernel tap could exceed ``TABLE_INT32_MAX`` (an image
    of 2**31 rows fits on a large GPU; int32 would wrap its row numbers silently)."""
    itype = np.int32 if max(in_len, k) <= TABLE_INT32_MAX else np.int64
    key = (out_len, in_len, k, s, d, before, itype, id(cuda.current_context()))
    if key not in _TABLES:
        if len(_TABLES) > 256:
            _TABLES.clear()
        _TABLES[key] = tuple(cuda.to_device(np.ascontiguousarray(t, itype))
                             for t in tap_list(out_len, in_len, k, s, d, before))
    return _TABLES[key]


def _pow2_at_least(v):
    return 1 << max(0, v - 1).bit_length()


def _tiled_tiles(n_img, c_out_g, h_out, w_out, s_h, s_w, groups, tile_co, tile_p):
    """The tiled kernel's ``n_tiles`` (the same arithmetic, in Python ints): ``tile_co x
    tile_p`` tiles of each group and of each residue class that exists, ``min(s_h, h_out)
    * min(s_w, w_out)`` classes (the others are empty when the stride exceeds the output).
    Fewer than 10 per output element, whatever the stride."""
    p_tiles = -(-(n_img * -(-h_out // s_h) * -(-w_out // s_w)) // tile_p)
    co_tiles = -(-c_out_g // tile_co)
    return min(s_h, h_out) * min(s_w, w_out) * groups * co_tiles * p_tiles


def _gather_launch(n_img, c_out, h_out, w_out):
    """A 3-D block (columns, rows, planes) of ``GATHER_THREADS`` threads that small images
    fill too, and a grid covering the output up to ``GATHER_MAX_GRID``."""
    tx = min(GATHER_THREADS, _pow2_at_least(w_out))
    ty = min(max(1, GATHER_THREADS // tx), _pow2_at_least(h_out))
    tz = min(64, max(1, GATHER_THREADS // (tx * ty)))      # CUDA allows at most 64 in z
    grid = (min(-(-w_out // tx), GATHER_MAX_GRID[0]), min(-(-h_out // ty), GATHER_MAX_GRID[1]),
            min(-(-(n_img * c_out) // tz), GATHER_MAX_GRID[2]))
    return grid, (tx, ty, tz)


def _run(kern, config, stream, *args):
    """Launch ``kern`` with ``config = (blocks, threads)`` on ``stream``: every launch of
    the ``cuda`` backend goes through here."""
    with warnings.catch_warnings():
        # small problems legitimately launch few blocks
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        if numba.config.ENABLE_CUDASIM:
            # The simulator runs the kernels on NumPy scalars, one Python thread per CUDA
            # thread (np.errstate does not reach them, the warning filters do), and those
            # warn where a GPU gives the IEEE result silently: 0 * inf and inf - inf (NaN,
            # PyTorch's rule for padding zeros), overflow (inf). Only warnings raised in
            # this package's kernel modules are ignored.
            warnings.filterwarnings("ignore", r"(invalid value|overflow) encountered",
                                    RuntimeWarning, r"convtranspose\.cuda\.")
        kern[config[0], config[1], stream](*args)


def _tiled(x, weight, bias, out, params, has_bias, use_gather, stream):
    n, _, h_out, w_out = out.shape
    (s_h, s_w), (d_h, d_w) = params.stride, params.dilation
    tiles = _tiled_tiles(n, weight.shape[1], h_out, w_out, s_h, s_w, params.groups,
                         TILE_CO, TILE_P)
    config = (max(1, min(tiles, TILED_MAX_BLOCKS)), (TILE_CO // REG_CO) * (TILE_P // REG_P))
    _run(tiled_kernel(np.dtype(out.dtype), TILE_CO, TILE_P, TILE_K, REG_CO, REG_P), config,
         stream, x, weight, bias, out, s_h, s_w, params.pad_h[0], params.pad_w[0], d_h, d_w,
         params.groups, has_bias, use_gather)


def _gather(x, weight, bias, out, params, has_bias, use_gather, stream):
    n, c_out, h_out, w_out = out.shape
    (s_h, s_w), (d_h, d_w) = params.stride, params.dilation
    k_h, k_w = weight.shape[2:]
    _run(gather_kernel(np.dtype(out.dtype)), _gather_launch(n, c_out, h_out, w_out), stream,
         x, weight, bias, out, *_tables(h_out, x.shape[2], k_h, s_h, d_h, params.pad_h[0]),
         *_tables(w_out, x.shape[3], k_w, s_w, d_w, params.pad_w[0]), params.groups, has_bias,
         use_gather)


def launch(kind, x, weight, bias, out, params, stream=0):
    """Launch kernel ``kind`` ("gather" or "tiled") on device arrays; returns ``out``.

    ``x``, ``weight``, ``out`` are 4-D device arrays (any strides), ``bias`` a 1-D device
    array or ``None``; ``out.dtype`` picks the compute type. The launch shape comes from
    this module's constants, read now. ``"tiled"`` checks the weight on the device first
    and leaves a weight holding Inf or NaN to the gather kernel (the module docstring).
    """
    has_bias = bias is not None
    if not has_bias:
        bias = _dummy(out.dtype)
    if kind != "tiled":
        _gather(x, weight, bias, out, params, has_bias, _always_gather(), stream)
        return out
    flag = cuda.device_array(1, np.int32) if _SIM else cuda.device_array(1, np.int32,
                                                                          stream=stream)
    _run(nonfinite_kernel(CHECK_THREADS), (1, CHECK_THREADS), stream, weight, flag)
    _tiled(x, weight, bias, out, params, has_bias, flag, stream)
    _gather(x, weight, bias, out, params, has_bias, flag, stream)
    return out


_SIM = bool(numba.config.ENABLE_CUDASIM)
_DUMMIES = {}
_ALWAYS = {}


def _always_gather():
    """A device flag, cached per GPU, that lets the gather kernel run."""
    key = id(cuda.current_context())
    if key not in _ALWAYS:
        _ALWAYS[key] = cuda.to_device(np.ones(1, np.int32))
    return _ALWAYS[key]


def _dummy(dtype):
    """A one-element device array standing in for a missing bias (never read)."""
    key = (np.dtype(dtype), id(cuda.current_context()))
    if key not in _DUMMIES:
        _DUMMIES[key] = cuda.to_device(np.zeros(1, key[0]))
    return _DUMMIES[key]
