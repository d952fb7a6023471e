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
``prange`` iteration, in a fixed order of taps) and a GEMM form (``im2col``: a
parallel gather of patches, then one BLAS GEMM per group and chunk of images; chunks
are summed in a fixed order). No result depends on the thread count. The kernels and
the helpers they call live in this one module because Numba's disk cache keys a
kernel on its own file.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from .im2col import get_workspace_limit

__all__ = ["correlate", "weight_grad", "correlate_kernel", "weight_grad_kernel",
           "im2col_kernel"]

# Contraction and reassociation; no ``nnan``/``ninf``, so NaN and Inf propagate.
FASTMATH = {"contract", "reassoc", "nsz", "arcp"}


@njit(cache=True)
def _span(off, s, src_len, dst_len):
    """Range ``lo <= o < hi`` of ``o`` in ``[0, dst_len)`` with ``0 <= o*s + off < src_len``."""
    lo = max(0, -(off // s))                 # ceil(-off / s)
    hi = min(dst_len, (src_len - 1 - off) // s + 1)
    return lo, max(lo, hi)


@njit(parallel=True, cache=True, fastmath=FASTMATH)
def correlate_kernel(x, weight, bias, out, sh, sw, dh, dw, top, left, groups):
    """Gather-form strided, dilated, grouped correlation, one output row per iteration.

    ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in // groups, kH, kW), ``bias`` (C_out,)
    or empty, ``out`` (N, C_out, H_out, W_out): C-contiguous, one dtype. Taps that fall
    outside ``x`` read zero.
    """
    n_img, h, w = x.shape[0], x.shape[2], x.shape[3]
    c_out, c_in_g, k_h, k_w = weight.shape
    h_out, w_out = out.shape[2], out.shape[3]
    c_out_g = c_out // groups
    for r in prange(n_img * c_out * h_out):
        oh = r % h_out
        co = (r // h_out) % c_out
        n = r // (h_out * c_out)
        g = co // c_out_g
        acc = np.zeros(w_out, out.dtype)
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
                    if sw == 1:
                        for ow in range(lo, hi):
                            acc[ow] += wv * xrow[ow + off]
                    else:
                        for ow in range(lo, hi):
                            acc[ow] += wv * xrow[ow * sw + off]
        row = out[n, co, oh]
        if bias.shape[0] > 0:
            bv = bias[co]
            for ow in range(w_out):
                row[ow] = acc[ow] + bv
        else:
            for ow in range(w_out):
                row[ow] = acc[ow]


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


@njit(parallel=True, cache=True)
def im2col_kernel(src, cols, n0, sh, sw, dh, dw, top, left):
    """Patches of images ``n0 ..`` of ``src`` (N, C, H, W) into ``cols``.

    ``cols`` (C, kH, kW, m, H_o, W_o) gets ``src[n0 + i, c, oh*sH + kh*dH - top,
    ow*sW + kw*dW - left]``, or zero where that falls outside ``src``.
    """
    c_n, k_h, k_w, m, h_o, w_o = cols.shape
    h, w = src.shape[2], src.shape[3]
    for r in prange(c_n * k_h * k_w * m * h_o):
        oh = r % h_o
        i = (r // h_o) % m
        kw = (r // (h_o * m)) % k_w
        kh = (r // (h_o * m * k_w)) % k_h
        c = r // (h_o * m * k_w * k_h)
        dst = cols[c, kh, kw, i, oh]
        ih = oh * sh + kh * dh - top
        if ih < 0 or ih >= h:
            for ow in range(w_o):
                dst[ow] = 0
            continue
        srow = src[n0 + i, c, ih]
        off = kw * dw - left
        lo, hi = _span(off, sw, w, w_o)
        for ow in range(lo):
            dst[ow] = 0
        if sw == 1:              # contiguous: a plain copy the compiler vectorises
            for ow in range(lo, hi):
                dst[ow] = srow[ow + off]
        else:
            for ow in range(lo, hi):
                dst[ow] = srow[ow * sw + off]
        for ow in range(hi, w_o):
            dst[ow] = 0


# ----------------------------------------------------------------------------
# Python-level runners: choose the chunking, call BLAS, never validate.


def _images_per_chunk(per_image_bytes, n):
    return max(1, min(n, get_workspace_limit() // max(1, per_image_bytes)))


def correlate(x, weight, bias, out, stride, dilation, before, groups, method):
    """``out`` = correlation of ``x`` with ``weight`` (see the module docstring).

    ``x`` (N, C_in, H, W), ``weight`` (C_out, C_in // groups, kH, kW), ``bias`` or
    ``None``, ``out`` (N, C_out, H_out, W_out) preallocated; ``before`` is
    ``(top, left)``. ``method`` is ``"direct"`` or ``"im2col"``.
    """
    (sh, sw), (dh, dw), (top, left) = stride, dilation, before
    if method == "direct":
        b = np.empty(0, out.dtype) if bias is None else bias
        correlate_kernel(x, weight, b, out, sh, sw, dh, dw, top, left, groups)
        return out
    n, c_in = x.shape[:2]
    c_out, c_in_g, k_h, k_w = weight.shape
    h_o, w_o = out.shape[2:]
    taps = c_in_g * k_h * k_w
    pix = h_o * w_o
    m = _images_per_chunk((c_in * k_h * k_w + c_out) * pix * x.itemsize, n)
    cols_buf = np.empty(c_in * k_h * k_w * m * pix, out.dtype)
    res_buf = np.empty(c_out * m * pix, out.dtype)
    w3 = weight.reshape(groups, c_out // groups, taps)
    for n0 in range(0, n, m):
        mm = min(m, n - n0)
        cols = cols_buf[:c_in * k_h * k_w * mm * pix].reshape(c_in, k_h, k_w, mm, h_o, w_o)
        im2col_kernel(x, cols, n0, sh, sw, dh, dw, top, left)
        res = res_buf[:c_out * mm * pix].reshape(groups, c_out // groups, mm * pix)
        np.matmul(w3, cols.reshape(groups, taps, mm * pix), out=res)
        res4 = res.reshape(c_out, mm, h_o, w_o).transpose(1, 0, 2, 3)
        if bias is None:
            out[n0:n0 + mm] = res4
        else:
            np.add(res4, bias[:, None, None], out=out[n0:n0 + mm])
    return out


def weight_grad(a, b, gw, stride, dilation, before, groups, method):
    """``gw`` = weight gradient of ``a`` on the strided grid against ``b`` sampled.

    ``a`` (N, C_a, H_o, W_o), ``b`` (N, C_b, H, W), ``gw`` (C_a, C_b // groups, kH, kW)
    preallocated; ``before`` is ``(top, left)``; ``method`` ``"direct"`` or ``"im2col"``.
    """
    (sh, sw), (dh, dw), (top, left) = stride, dilation, before
    if method == "direct":
        weight_grad_kernel(a, b, gw, sh, sw, dh, dw, top, left, groups)
        return gw
    n, c_a, h_o, w_o = a.shape
    c_b = b.shape[1]
    _, c_b_g, k_h, k_w = gw.shape
    taps = c_b_g * k_h * k_w
    pix = h_o * w_o
    if n == 0:
        gw[...] = 0
        return gw
    m = _images_per_chunk((c_b * k_h * k_w + c_a) * pix * a.itemsize, n)
    cols_buf = np.empty(c_b * k_h * k_w * m * pix, gw.dtype)
    a_buf = np.empty(c_a * m * pix, gw.dtype)
    g3 = gw.reshape(groups, c_a // groups, taps)
    part = np.empty_like(g3) if m < n else None
    for n0 in range(0, n, m):
        mm = min(m, n - n0)
        cols = cols_buf[:c_b * k_h * k_w * mm * pix].reshape(c_b, k_h, k_w, mm, h_o, w_o)
        im2col_kernel(b, cols, n0, sh, sw, dh, dw, top, left)
        at = a_buf[:c_a * mm * pix].reshape(c_a, mm, h_o, w_o)
        np.copyto(at, a[n0:n0 + mm].transpose(1, 0, 2, 3))
        lhs = at.reshape(groups, c_a // groups, mm * pix)
        rhs = cols.reshape(groups, taps, mm * pix).transpose(0, 2, 1)
        if n0 == 0:
            np.matmul(lhs, rhs, out=g3)
        else:            # chunks are added in a fixed order
            np.matmul(lhs, rhs, out=part)
            g3 += part
    return gw
