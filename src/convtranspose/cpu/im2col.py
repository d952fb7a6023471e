"""The ``im2col`` backend: one BLAS GEMM per group and chunk, then a gather col2im.

For group ``g`` the GEMM computes every product of an input pixel and a kernel tap::

    cols[g] (C_out_g*kH*kW, n*h*W) = weight[g].T (C_out_g*kH*kW, C_in_g) @ x[g] (C_in_g, n*h*W)

over a chunk of ``n`` images and ``h`` input rows, so the batch goes through one large
GEMM rather than one per image. :func:`~convtranspose.cpu.kernels.col2im_kernel` then
gathers each output row from the columns that reach it.

Workspace
---------
The column buffer plus a transposed copy of the input chunk is bounded by the
workspace limit (default 256 MiB; :func:`set_workspace_limit`, or the environment
variable ``CONVTRANSPOSE_WORKSPACE_BYTES`` read at import). The batch is cut into
chunks of whole images that fit; an image that alone exceeds the limit is cut into
bands of input rows. One input row is the smallest chunk, so a limit below
``(C_out*kH*kW + C_in) * W * itemsize`` bytes is exceeded by that much.
"""
from __future__ import annotations

import os
import threading
from typing import NamedTuple

import numpy as np

from .kernels import col2im_kernel, gather_kernel, scatter_kernel
from .taps import tap_tables

__all__ = ["run", "run_col2im", "run_phases", "FORMS", "phase_plan", "plan_chunks",
           "get_workspace_limit", "set_workspace_limit", "release_workspace"]

_DEFAULT_LIMIT = 256 * 2**20
_limit = int(os.environ.get("CONVTRANSPOSE_WORKSPACE_BYTES", _DEFAULT_LIMIT))


def get_workspace_limit():
    """Return the im2col workspace limit in bytes."""
    return _limit


def set_workspace_limit(nbytes):
    """Set the im2col workspace limit in bytes; return the previous limit.

    Parameters
    ----------
    nbytes : int
        Largest number of bytes the ``im2col`` backend may allocate for its column
        buffer and input copy in one call; at least one input row's worth is always used.

    Examples
    --------
    >>> import convtranspose as ct
    >>> old = ct.set_workspace_limit(64 * 2**20)
    >>> _ = ct.set_workspace_limit(old)
    """
    global _limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1:
        raise ValueError(f"nbytes must be a positive int, got {nbytes!r}")
    old, _limit = _limit, int(nbytes)
    return old


_local = threading.local()
_KEEP_BYTES = 64 * 2**20     # workspace kept between calls, per thread, when no larger


def _buffers(dtype, *sizes):
    """Flat arrays of ``dtype`` with the given element counts, carved from one workspace.

    Freshly mapped memory costs a page fault per 4 KiB on first touch (about as long
    as the GEMM for many suite shapes), so each Python thread keeps its workspace of up
    to ``_KEEP_BYTES`` for the next call; larger ones are freed when the call returns.
    """
    itemsize = np.dtype(dtype).itemsize
    spans = [-(-n * itemsize // 64) * 64 for n in sizes]
    total = sum(spans)
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < total:
        buf = np.empty(total, np.uint8)
        _local.buf = buf if total <= _KEEP_BYTES else None
    out, start = [], 0
    for n, span in zip(sizes, spans):
        out.append(buf[start:start + n * itemsize].view(dtype))
        start += span
    return out


def release_workspace():
    """Free the workspace this thread keeps between ``im2col`` calls."""
    _local.buf = None


def plan_chunks(x_shape, w_shape, groups, itemsize, limit=None):
    """Choose ``(images, rows)`` per chunk and the workspace bytes that takes."""
    limit = _limit if limit is None else limit
    n, c_in, h, w = x_shape
    c_out_taps = w_shape[1] * groups * w_shape[2] * w_shape[3]
    per_row = (c_out_taps + c_in) * w * itemsize
    per_image = per_row * h
    if per_image <= limit:
        images, rows = max(1, min(n, limit // per_image)), h
    else:
        images, rows = 1, max(1, min(h, limit // per_row))
    return images, rows, images * rows * per_row


def run_col2im(x, weight, bias, params, out):
    """The col2im form: GEMM over ``C_in``, then gather the columns into the output."""
    n, c_in, h, w = x.shape
    _, c_out_g, k_h, k_w = weight.shape
    groups = params.groups
    c_in_g, taps_n = c_in // groups, c_out_g * k_h * k_w
    t = tap_tables((h, w), (k_h, k_w), out.shape[2:], params)
    bias = np.empty(0, out.dtype) if bias is None else bias
    images, rows, _ = plan_chunks(x.shape, weight.shape, groups, x.itemsize)
    copy_x = (images, rows) != (1, h)
    cols_buf, x_buf = _buffers(out.dtype, groups * taps_n * images * rows * w,
                               c_in * images * rows * w if copy_x else 0)
    x_buf = x_buf if copy_x else None
    w_t = weight.reshape(groups, c_in_g, taps_n).transpose(0, 2, 1)
    (s, d, top), h_out = (params.stride[0], params.dilation[0], params.pad_h[0]), out.shape[2]
    for n0 in range(0, n, images):
        m = min(images, n - n0)
        for h0 in range(0, h, rows):
            hh = min(rows, h - h0)
            if x_buf is None:
                xt = x[n0][:, None]                  # a view: (C_in, 1, H, W)
            else:
                xt = x_buf[:c_in * m * hh * w].reshape(c_in, m, hh, w)
                np.copyto(xt, x[n0:n0 + m, :, h0:h0 + hh].transpose(1, 0, 2, 3))
            cols = cols_buf[:groups * taps_n * m * hh * w].reshape(
                groups, c_out_g, k_h, k_w, m, hh, w)
            for g in range(groups):
                np.matmul(w_t[g], xt[g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g, m * hh * w),
                          out=cols[g].reshape(taps_n, m * hh * w))
            first = h0 == 0
            oh_lo = 0 if first else max(0, h0 * s - top)
            oh_hi = h_out if first else min(h_out, (h0 + hh - 1) * s - top + d * (k_h - 1) + 1)
            col2im_kernel(cols, bias, out, n0, h0, first, oh_lo, oh_hi,
                          t.row_count, t.row_k, t.row_i, t.col_lo, t.col_hi,
                          t.col_phase, t.col_q0, t.phases, t.q_len)
    return out


# ----------------------------------------------------------------------------
# the sub-pixel phase form


class _Phase(NamedTuple):
    """Output positions ``o0 + s*a`` (``0 <= a < count``) of one dimension, and the kernel
    taps ``k_idx`` that reach them from input position ``offsets + a``."""

    o0: int
    count: int
    k_idx: tuple
    offsets: tuple


def _dim_phases(in_len, out_len, k, s, d, before):
    """Split one dimension's output into ``s`` phases; return ``(stride, phases)``.

    Output ``o`` receives tap ``kk`` from input ``i = (o + before - kk*d) / s`` when that is
    an integer, so outputs ``o0, o0 + s, ...`` share the taps for which
    ``(o0 + before - kk*d) % s == 0``, each reading input ``offset + a``. Taps whose
    inputs all lie outside ``[0, in_len)`` are dropped. With a single input position the
    stride does not change the result, so a larger one is used, which leaves at most
    one tap per phase and no multiplication by padding.
    """
    if in_len == 1:
        s = max(s, out_len + before + d * (k - 1) + 1)
    phases = []
    for o0 in range(min(s, out_len)):
        count = (out_len - o0 + s - 1) // s
        k_idx, offsets = [], []
        for kk in range(k):
            num = o0 + before - kk * d
            if num % s == 0 and num // s <= in_len - 1 and num // s + count - 1 >= 0:
                k_idx.append(kk)
                offsets.append(num // s)
        phases.append(_Phase(o0, count, tuple(k_idx), tuple(offsets)))
    return s, phases


def phase_plan(in_hw, k_hw, out_hw, params):
    """Row and column phases of one problem: ``((s_h, rows), (s_w, cols))``."""
    return (_dim_phases(in_hw[0], out_hw[0], k_hw[0], params.stride[0], params.dilation[0],
                        params.pad_h[0]),
            _dim_phases(in_hw[1], out_hw[1], k_hw[1], params.stride[1], params.dilation[1],
                        params.pad_w[0]))


def _dense_1x1(x, weight, bias, params, out):
    """``H = W = 1``, one group: one GEMM gives every (image, channel, tap) product.

    Tap ``(kh, kw)`` lands on output pixel ``(kh*dH - top, kw*dW - left)``, so the taps
    that land inside the output are a block of the GEMM's result and their pixels a
    strided block of the output: both are plain slices.
    """
    n, c_in = x.shape[:2]
    _, c_out, k_h, k_w = weight.shape
    h_out, w_out = out.shape[2:]
    k_sl, o_sl = [], []
    for k, d, before, size in ((k_h, params.dilation[0], params.pad_h[0], h_out),
                               (k_w, params.dilation[1], params.pad_w[0], w_out)):
        lo = -(-before // d)                          # first tap at output >= 0
        hi = min(k, (size - 1 + before) // d + 1)     # past the last tap inside
        hi = max(hi, lo)
        k_sl.append(slice(lo, hi))
        o_sl.append(slice(lo * d - before, (hi - 1) * d - before + 1, d) if hi > lo
                    else slice(0, 0))
    w2 = weight.reshape(c_in, c_out * k_h * k_w)
    x2 = x.reshape(n, c_in)
    if (k_h, k_w) == (h_out, w_out) and k_sl == [slice(0, k_h), slice(0, k_w)] \
            and params.dilation == (1, 1):
        np.matmul(x2, w2, out=out.reshape(n, -1))     # the output is the GEMM's result
        if bias is not None:
            out += bias[:, None, None]
        return out
    covered = (o_sl[0].stop - o_sl[0].start >= h_out and o_sl[1].stop - o_sl[1].start >= w_out
               and params.dilation == (1, 1))
    if not covered:
        out[...] = 0 if bias is None else bias[:, None, None]
    per_image = c_out * k_h * k_w * x.itemsize
    m = max(1, min(n, _limit // per_image))
    full_buf, = _buffers(out.dtype, m * c_out * k_h * k_w)
    for n0 in range(0, n, m):
        mm = min(m, n - n0)
        full = full_buf[:mm * c_out * k_h * k_w].reshape(mm, c_out, k_h, k_w)
        np.matmul(x2[n0:n0 + mm], w2, out=full.reshape(mm, -1))
        sel = full[:, :, k_sl[0], k_sl[1]]
        dst = out[n0:n0 + mm, :, o_sl[0], o_sl[1]]
        if bias is not None:
            np.add(sel, bias[:, None, None], out=dst)
        else:
            dst[...] = sel
    return out


def _phase_weights(weight, groups, ph_r, ph_c):
    """Weight of one phase as ``(groups, C_out_g, C_in_g*T_h*T_w)``, K ordered (ci, th, tw)."""
    c_in, c_out_g = weight.shape[:2]
    wp = weight[:, :, list(ph_r.k_idx)][:, :, :, list(ph_c.k_idx)]
    t = len(ph_r.k_idx) * len(ph_c.k_idx)
    wp = wp.reshape(groups, c_in // groups, c_out_g, t).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(wp).reshape(groups, c_out_g, (c_in // groups) * t)


def run_phases(x, weight, bias, params, out):
    """The sub-pixel phase form: per phase, gather the input taps, then one GEMM over
    ``C_in * taps``, then scatter the result onto the phase's output grid.

    No product with an inserted zero is computed, and for stride 1 the GEMM writes the
    output directly.
    """
    n, c_in, h, w = x.shape
    _, c_out_g, k_h, k_w = weight.shape
    groups = params.groups
    c_out, c_in_g = c_out_g * groups, c_in // groups
    if h == 1 and w == 1 and groups == 1:
        return _dense_1x1(x, weight, bias, params, out)
    h_out, w_out = out.shape[2:]
    (s_h, rows), (s_w, cols) = phase_plan((h, w), (k_h, k_w), (h_out, w_out), params)
    bias_v = np.zeros(c_out, out.dtype) if bias is None else bias
    isz = x.itemsize
    # phases with taps get a GEMM; the others hold only the bias
    work = []
    for pr in rows:
        for pc in cols:
            if pr.k_idx and pc.k_idx:
                work.append((pr, pc, _phase_weights(weight, groups, pr, pc)))
            else:
                out[:, :, pr.o0::s_h, pc.o0::s_w] = bias_v[:, None, None]
    if not work:
        return out
    # one phase and one image: the GEMM writes `out` itself. With several images one GEMM
    # over all of them and a scatter beat a GEMM per image: each BLAS call wakes its threads.
    straight = s_h == 1 and s_w == 1 and n == 1
    per_row = max((c_in * len(pr.k_idx) * len(pc.k_idx) + (0 if straight else c_out))
                  * pc.count * isz for pr, pc, _ in work)
    max_rows = max(pr.count for pr, _, _ in work)
    if per_row * max_rows <= _limit:
        images, band = max(1, min(n, _limit // (per_row * max_rows))), max_rows
    else:
        images, band = 1, max(1, min(max_rows, _limit // per_row))
    cols_buf, res_buf = _buffers(
        out.dtype,
        max(c_in * len(pr.k_idx) * len(pc.k_idx) * pc.count for pr, pc, _ in work) * images * band,
        0 if straight else c_out * images * band * max(pc.count for _, pc, _ in work))
    for pr, pc, wp in work:
        t_h, t_w, n_b = len(pr.k_idx), len(pc.k_idx), pc.count
        row_off = np.array(pr.offsets, np.int64)
        col_off = np.array(pc.offsets, np.int64)
        k = c_in_g * t_h * t_w
        for n0 in range(0, n, images):
            m = min(images, n - n0)
            for a0 in range(0, pr.count, band):
                n_a = min(band, pr.count - a0)
                cl = cols_buf[:c_in * t_h * t_w * m * n_a * n_b].reshape(
                    c_in, t_h, t_w, m, n_a, n_b)
                gather_kernel(x, cl, n0, a0, row_off, col_off)
                cl = cl.reshape(groups, k, m * n_a * n_b)
                if straight:
                    dst = out[0].reshape(c_out, h_out * w_out)[:, a0 * w_out:(a0 + n_a) * w_out]
                    for g in range(groups):
                        np.matmul(wp[g], cl[g], out=dst[g * c_out_g:(g + 1) * c_out_g])
                    if bias is not None:
                        dst += bias[:, None]
                else:
                    res = res_buf[:c_out * m * n_a * n_b].reshape(c_out, m, n_a, n_b)
                    r2 = res.reshape(groups, c_out_g, m * n_a * n_b)
                    for g in range(groups):
                        np.matmul(wp[g], cl[g], out=r2[g])
                    scatter_kernel(res, bias_v, out, n0, pr.o0 + s_h * a0, pc.o0, s_h, s_w)
    return out


#: The two forms of the backend; :mod:`convtranspose.dispatch` picks one per problem.
FORMS = {"phases": run_phases, "col2im": run_col2im}


def run(x, weight, bias, params, out):
    """Compute into ``out`` with the form the cost model picks (as ``backend="im2col"``)."""
    from .. import dispatch   # the cost model lives there; imported late to avoid a cycle
    return dispatch.BACKENDS["im2col"](x, weight, bias, params, out)
