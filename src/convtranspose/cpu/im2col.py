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

import numpy as np

from .._alloc import allocate
from .._threading import launch
from .kernels import col2im_kernel, col2im_kernel_serial
from .taps import tap_tables

__all__ = ["run", "plan_chunks", "get_workspace_limit", "set_workspace_limit"]

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


def run(x, weight, bias, params, out):
    """Compute into ``out``; all arrays C-contiguous, 4-D, one native float dtype."""
    n, c_in, h, w = x.shape
    _, c_out_g, k_h, k_w = weight.shape
    groups = params.groups
    c_in_g, taps_n = c_in // groups, c_out_g * k_h * k_w
    t = tap_tables((h, w), (k_h, k_w), out.shape[2:], params)
    bias = np.empty(0, out.dtype) if bias is None else bias
    images, rows, _ = plan_chunks(x.shape, weight.shape, groups, x.itemsize)
    cols_buf = allocate(groups * taps_n * images * rows * w, out.dtype, "im2col column buffer")
    x_buf = (allocate(c_in * images * rows * w, out.dtype, "im2col input copy")
             if (images, rows) != (1, h) else None)
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
            # NaN and Inf propagate silently, as in the direct kernel and in PyTorch
            with np.errstate(invalid="ignore", over="ignore"):
                for g in range(groups):
                    np.matmul(w_t[g],
                              xt[g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g, m * hh * w),
                              out=cols[g].reshape(taps_n, m * hh * w))
            first = h0 == 0
            oh_lo = 0 if first else max(0, h0 * s - top)
            oh_hi = h_out if first else min(h_out, (h0 + hh - 1) * s - top + d * (k_h - 1) + 1)
            launch(col2im_kernel, col2im_kernel_serial,
                   cols, bias, out, n0, h0, first, oh_lo, oh_hi,
                   t.row_count, t.row_k, t.row_i, t.col_lo, t.col_hi,
                   t.col_phase, t.col_q0, t.phases, t.q_len)
    return out
