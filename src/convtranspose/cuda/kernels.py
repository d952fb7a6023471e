"""``numba.cuda`` kernels of the ``cuda`` backend: a gather kernel and a tiled kernel.

Both kernels are in gather form: every output element is written by exactly one thread,
once, from the kernel taps that land on the stride grid, so no product with an inserted
zero is formed and results do not depend on the launch shape.

* :func:`gather_kernel` -- one output element per thread (grid-stride loop); for each
  tap ``(kh, kw)`` with ``oh + top - kh*dH`` and ``ow + left - kw*dW`` divisible by the
  stride it sums over the input channels of the output channel's group. Memory bound;
  the choice for depthwise and few-channel problems.
* :func:`tiled_kernel` -- for many channels per group. The output pixels are split into
  ``sH*sW`` residue classes (``(oh + top) % sH``, ``(ow + left) % sW``); inside one class
  every pixel uses the same taps, so the problem becomes a GEMM per class:
  ``out[co, p] = sum_{ci, kh, kw} weight[ci, co, kh, kw] * x[ci, ih(p, kh), iw(p, kw)]``.
  A block owns ``TILE_CO`` output channels by ``TILE_P`` pixels of one class (the
  batch is folded into the pixels, so small images with a large batch fill tiles); it stages ``TILE_K`` input channels of weights and (zero-filled at the
  borders) inputs in shared memory, and each thread keeps ``REG_CO x REG_P`` results in
  registers.

Kernels are made by factories cached per dtype and launch shape; the launch-shape
constants below are read at call time, so a test can patch them (the simulator wants
tiny blocks). Float32 kernels compute in float32: accumulators start from a typed zero
and every operand is cast to the result type (``tests/cuda/test_ptx.py`` checks the PTX
for ``.f64``). Kernels assume valid arguments and never allocate the result.
"""
from __future__ import annotations

import functools
import warnings

import numba
import numpy as np
from numba import cuda
from numba.core.errors import NumbaPerformanceWarning

__all__ = ["GATHER_THREADS", "GATHER_MAX_BLOCKS", "TILE_CO", "TILE_P", "TILE_K", "REG_CO",
           "REG_P", "TILED_MAX_BLOCKS", "TILED_MIN_CHANNELS", "gather_kernel", "tiled_kernel",
           "pick_kernel", "launch"]

# ---------------------------------------------------------------------------------------
# launch shapes (patched small by tests/cuda/conftest.py)

#: Threads per block of the gather kernel, and the most blocks it launches (grid-stride).
GATHER_THREADS = 256
GATHER_MAX_BLOCKS = 1 << 20
#: Tiled kernel: output channels x pixels per block, input channels per shared-memory
#: stage, and output channels x pixels per thread. ``TILE_CO % REG_CO == 0`` and
#: ``TILE_P % REG_P == 0``; a block has ``(TILE_CO // REG_CO) * (TILE_P // REG_P)`` threads.
TILE_CO = 64
TILE_P = 64
TILE_K = 16
REG_CO = 4
REG_P = 4
TILED_MAX_BLOCKS = 1 << 20
#: The tiled kernel runs when input and output channels per group are both at least this.
TILED_MIN_CHANNELS = 16

_NB_TYPES = {np.dtype(np.float32): numba.float32, np.dtype(np.float64): numba.float64}


@functools.lru_cache(maxsize=None)
def gather_kernel(dtype):
    """The gather kernel computing in ``dtype`` (float32 or float64).

    Signature ``(x, weight, bias, out, s_h, s_w, top, left, d_h, d_w, groups, has_bias)``
    with ``x`` (N, C_in, H, W), ``weight`` (C_in, C_out_g, kH, kW), ``bias`` (C_out,) (read
    only when ``has_bias``) and ``out`` (N, C_out, H_out, W_out).
    """
    nbt = _NB_TYPES[np.dtype(dtype)]
    zero = nbt(0)

    @cuda.jit
    def kernel(x, weight, bias, out, s_h, s_w, top, left, d_h, d_w, groups, has_bias):
        c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
        c_out_g, k_h, k_w = weight.shape[1], weight.shape[2], weight.shape[3]
        n_img, c_out, h_out, w_out = out.shape[0], out.shape[1], out.shape[2], out.shape[3]
        c_in_g = c_in // groups
        total = n_img * c_out * h_out * w_out
        for e in range(cuda.grid(1), total, cuda.gridsize(1)):
            ow = e % w_out
            r = e // w_out
            oh = r % h_out
            r = r // h_out
            co = r % c_out
            n = r // c_out
            g = co // c_out_g
            j = co - g * c_out_g
            acc = zero
            for kh in range(k_h):
                t = oh + top - kh * d_h
                if t < 0:
                    break                    # t only decreases with kh
                if t % s_h != 0:
                    continue
                ih = t // s_h
                if ih >= h_in:
                    continue
                for kw in range(k_w):
                    u = ow + left - kw * d_w
                    if u < 0:
                        break
                    if u % s_w != 0:
                        continue
                    iw = u // s_w
                    if iw >= w_in:
                        continue
                    for ci in range(g * c_in_g, (g + 1) * c_in_g):
                        acc += nbt(x[n, ci, ih, iw]) * nbt(weight[ci, j, kh, kw])
            if has_bias:
                acc += nbt(bias[co])
            out[n, co, oh, ow] = acc

    return kernel


@functools.lru_cache(maxsize=None)
def tiled_kernel(dtype, tile_co, tile_p, tile_k, reg_co, reg_p):
    """The tiled shared-memory kernel for ``dtype`` and one launch shape.

    Same signature as :func:`gather_kernel`; launch it with
    ``(tile_co // reg_co) * (tile_p // reg_p)`` threads per block and any number of blocks
    (the blocks loop over tiles).
    """
    nbt = _NB_TYPES[np.dtype(dtype)]
    zero = nbt(0)
    ty_n = tile_co // reg_co
    tx_n = tile_p // reg_p
    nthreads = ty_n * tx_n

    @cuda.jit
    def kernel(x, weight, bias, out, s_h, s_w, top, left, d_h, d_w, groups, has_bias):
        c_in, h_in, w_in = x.shape[1], x.shape[2], x.shape[3]
        c_out_g, k_h, k_w = weight.shape[1], weight.shape[2], weight.shape[3]
        n_img, h_out, w_out = out.shape[0], out.shape[2], out.shape[3]
        c_in_g = c_in // groups
        cls_h = (h_out + s_h - 1) // s_h           # most rows in one residue class
        cls_w = (w_out + s_w - 1) // s_w
        p_tiles = (n_img * cls_h * cls_w + tile_p - 1) // tile_p
        co_tiles = (c_out_g + tile_co - 1) // tile_co
        n_tiles = s_h * s_w * groups * co_tiles * p_tiles

        w_s = cuda.shared.array((tile_k, tile_co), nbt)
        x_s = cuda.shared.array((tile_k, tile_p), nbt)
        acc = cuda.local.array((reg_co, reg_p), nbt)
        tid = cuda.threadIdx.x
        ty = tid // tx_n
        tx = tid - ty * tx_n

        for tile in range(cuda.blockIdx.x, n_tiles, cuda.gridDim.x):
            pt = tile % p_tiles
            r = tile // p_tiles
            ct = r % co_tiles
            r = r // co_tiles
            g = r % groups
            r = r // groups
            rw = r % s_w
            rh = r // s_w
            # the class: rows oh with (oh + top) % s_h == rh, columns likewise
            oh0 = (rh + s_h - top % s_h) % s_h
            ow0 = (rw + s_w - left % s_w) % s_w
            nh = (h_out - oh0 + s_h - 1) // s_h if oh0 < h_out else 0
            nw = (w_out - ow0 + s_w - 1) // s_w if ow0 < w_out else 0
            npix = nh * nw                           # pixels of the class in one image
            total = n_img * npix                     # ... in the whole batch
            p0 = pt * tile_p
            j0 = ct * tile_co
            if p0 >= total:
                continue                             # the same for the whole block
            for a in range(reg_co):
                for b in range(reg_p):
                    acc[a, b] = zero
            for kh in range(k_h):
                if (kh * d_h) % s_h != rh:
                    continue
                for kw in range(k_w):
                    if (kw * d_w) % s_w != rw:
                        continue
                    for ci0 in range(0, c_in_g, tile_k):
                        for e in range(tid, tile_k * tile_co, nthreads):
                            kk = e // tile_co
                            cc = e - kk * tile_co
                            ci = ci0 + kk
                            jj = j0 + cc
                            v = zero
                            if ci < c_in_g and jj < c_out_g:
                                v = nbt(weight[g * c_in_g + ci, jj, kh, kw])
                            w_s[kk, cc] = v
                        for e in range(tid, tile_k * tile_p, nthreads):
                            kk = e // tile_p
                            pp = e - kk * tile_p
                            ci = ci0 + kk
                            p = p0 + pp
                            v = zero
                            if ci < c_in_g and p < total:
                                n = p // npix
                                p = p - n * npix
                                pa = p // nw
                                t = oh0 + pa * s_h + top - kh * d_h
                                u = ow0 + (p - pa * nw) * s_w + left - kw * d_w
                                if t >= 0 and u >= 0:
                                    ih = t // s_h
                                    iw = u // s_w
                                    if ih < h_in and iw < w_in:
                                        v = nbt(x[n, g * c_in_g + ci, ih, iw])
                            x_s[kk, pp] = v
                        cuda.syncthreads()
                        for kk in range(tile_k):
                            for a in range(reg_co):
                                wv = w_s[kk, ty + a * ty_n]
                                for b in range(reg_p):
                                    acc[a, b] += wv * x_s[kk, tx + b * tx_n]
                        cuda.syncthreads()
            for a in range(reg_co):
                jj = j0 + ty + a * ty_n
                if jj < c_out_g:
                    co = g * c_out_g + jj
                    bv = zero
                    if has_bias:
                        bv = nbt(bias[co])
                    for b in range(reg_p):
                        p = p0 + tx + b * tx_n
                        if p < total:
                            n = p // npix
                            p = p - n * npix
                            pa = p // nw
                            out[n, co, oh0 + pa * s_h, ow0 + (p - pa * nw) * s_w] = acc[a, b] + bv

    return kernel


def pick_kernel(x_shape, w_shape, groups):
    """``"tiled"`` when both channel counts per group reach ``TILED_MIN_CHANNELS``, else
    ``"gather"``."""
    c_in_g = x_shape[1] // groups
    c_out_g = w_shape[1]
    return "tiled" if min(c_in_g, c_out_g) >= TILED_MIN_CHANNELS else "gather"


def _args(params):
    return (params.stride[0], params.stride[1], params.pad_h[0], params.pad_w[0],
            params.dilation[0], params.dilation[1], params.groups)


def launch(kind, x, weight, bias, out, params, stream=0):
    """Launch kernel ``kind`` ("gather" or "tiled") on device arrays; returns ``out``.

    ``x``, ``weight``, ``out`` are 4-D device arrays (any strides), ``bias`` a 1-D device
    array or ``None``; ``out.dtype`` picks the compute type. The launch shape comes from
    this module's constants, read now.
    """
    dtype = np.dtype(out.dtype)
    has_bias = bias is not None
    if not has_bias:
        bias = _dummy(dtype)
    total = out.size
    if kind == "tiled":
        kern = tiled_kernel(dtype, TILE_CO, TILE_P, TILE_K, REG_CO, REG_P)
        n, _, h_out, w_out = out.shape
        s_h, s_w = params.stride
        p_tiles = -(-(n * -(-h_out // s_h) * -(-w_out // s_w)) // TILE_P)
        co_tiles = -(-weight.shape[1] // TILE_CO)
        tiles = s_h * s_w * params.groups * co_tiles * p_tiles
        threads = (TILE_CO // REG_CO) * (TILE_P // REG_P)
        blocks = max(1, min(tiles, TILED_MAX_BLOCKS))
    else:
        kern = gather_kernel(dtype)
        threads = GATHER_THREADS
        blocks = max(1, min(-(-total // threads), GATHER_MAX_BLOCKS))
    with warnings.catch_warnings():
        # small problems legitimately launch few blocks
        warnings.simplefilter("ignore", NumbaPerformanceWarning)
        kern[blocks, threads, stream](x, weight, bias, out, *_args(params), has_bias)
    return out


_DUMMIES = {}


def _dummy(dtype):
    """A one-element device array standing in for a missing bias (never read)."""
    key = (np.dtype(dtype), id(cuda.current_context()))
    if key not in _DUMMIES:
        _DUMMIES[key] = cuda.to_device(np.zeros(1, key[0]))
    return _DUMMIES[key]
