"""Float64 NumPy references written from the definition: the oracle of the tests.

Two independent formulations of the same operator, both slow and obviously right:

* :func:`conv_transpose2d_scatter` -- the definition: every input pixel stamps the
  kernel, scaled by its value, onto the output at ``stride`` spacing, and the
  padding crops the result;
* :func:`conv_transpose2d_zero_insertion` -- the tutorial's view: insert
  ``stride - 1`` zeros between input pixels, pad by ``dilation*(k - 1) - padding``,
  and correlate with the spatially flipped kernel (a stride-1 convolution).

Both take already-valid arguments (use :func:`convtranspose.params.normalise` or the
public API first) and always compute in float64.
"""
from __future__ import annotations

import numpy as np

from .params import normalise

__all__ = ["conv_transpose2d_reference", "conv_transpose2d_scatter",
           "conv_transpose2d_zero_insertion", "conv2d_reference",
           "conv_transpose2d_backward_reference", "conv2d_backward_reference"]


def _prepare(x, weight, bias, kwargs):
    x = np.asarray(x)
    weight = np.asarray(weight)
    b_shape = None if bias is None else np.shape(bias)
    params, out_shape, _ = normalise(x.shape, weight.shape, b_shape,
                                     [x.dtype, weight.dtype], **kwargs)
    batched = x.ndim == 4
    x64 = np.asarray(x, np.float64)
    if not batched:
        x64 = x64[None]
    w64 = np.asarray(weight, np.float64)
    b64 = None if bias is None else np.asarray(bias, np.float64)
    return x64, w64, b64, params, batched


def _group_slices(c_in, c_out_g, groups):
    c_in_g = c_in // groups
    for g in range(groups):
        yield (slice(g * c_in_g, (g + 1) * c_in_g), slice(g * c_out_g, (g + 1) * c_out_g))


def conv_transpose2d_scatter(x, weight, bias=None, **kwargs):
    """Transposed convolution as a scatter sum; float64 result.

    ``full[n, co, ih*sH + kh*dH, iw*sW + kw*dW] += x[n, ci, ih, iw] * weight[ci, j, kh, kw]``
    over the input channels ``ci`` of ``co``'s group, then
    ``out = full[:, :, top:top + H_out, left:left + W_out]`` (rows past the end of
    ``full``, which only ``output_padding`` reaches, are zero), plus the bias.

    Parameters are those of :func:`convtranspose.conv_transpose2d` (keywords only
    after ``bias``).
    """
    x, w, b, p, batched = _prepare(x, weight, bias, kwargs)
    n, c_in, h, wd = x.shape
    _, c_out_g, kh_, kw_ = w.shape
    (sh, sw), (dh, dw) = p.stride, p.dilation
    full_h = (h - 1) * sh + dh * (kh_ - 1) + 1 + p.output_padding[0]
    full_w = (wd - 1) * sw + dw * (kw_ - 1) + 1 + p.output_padding[1]
    full = np.zeros((n, c_out_g * p.groups, full_h, full_w))
    for ci_sl, co_sl in _group_slices(c_in, c_out_g, p.groups):
        for kh in range(kh_):
            for kw in range(kw_):
                stamp = np.einsum("nchw,cj->njhw", x[:, ci_sl], w[ci_sl, :, kh, kw])
                rows = slice(kh * dh, kh * dh + (h - 1) * sh + 1, sh)
                cols = slice(kw * dw, kw * dw + (wd - 1) * sw + 1, sw)
                full[:, co_sl, rows, cols] += stamp
    h_out = full_h - p.pad_h[0] - p.pad_h[1]
    w_out = full_w - p.pad_w[0] - p.pad_w[1]
    out = full[:, :, p.pad_h[0]:p.pad_h[0] + h_out, p.pad_w[0]:p.pad_w[0] + w_out]
    if b is not None:
        out = out + b[None, :, None, None]
    return out if batched else out[0]


def conv_transpose2d_zero_insertion(x, weight, bias=None, **kwargs):
    """Transposed convolution as zero insertion plus a flipped-kernel correlation.

    1. Insert ``s - 1`` zeros between neighbouring input pixels.
    2. Pad each side by ``d*(k - 1) - padding`` (a negative amount crops), and the
       bottom/right by ``output_padding`` more.
    3. Correlate (stride 1, dilation ``d``) with the kernel flipped in both spatial
       axes and with its two channel axes swapped.

    Float64 result; parameters as for :func:`convtranspose.conv_transpose2d`.
    """
    x, w, b, p, batched = _prepare(x, weight, bias, kwargs)
    n, c_in, h, wd = x.shape
    _, c_out_g, kh_, kw_ = w.shape
    (sh, sw), (dh, dw) = p.stride, p.dilation
    # 1. zero insertion
    z = np.zeros((n, c_in, (h - 1) * sh + 1, (wd - 1) * sw + 1))
    z[:, :, ::sh, ::sw] = x
    # 2. padding (negative amounts crop)
    before = (dh * (kh_ - 1) - p.pad_h[0], dw * (kw_ - 1) - p.pad_w[0])
    after = (dh * (kh_ - 1) - p.pad_h[1] + p.output_padding[0],
             dw * (kw_ - 1) - p.pad_w[1] + p.output_padding[1])
    z = np.pad(z, ((0, 0), (0, 0), (max(before[0], 0), max(after[0], 0)),
                   (max(before[1], 0), max(after[1], 0))))
    z = z[:, :, max(-before[0], 0):z.shape[2] - max(-after[0], 0),
          max(-before[1], 0):z.shape[3] - max(-after[1], 0)]
    # 3. correlation with the flipped kernel
    flipped = w[:, :, ::-1, ::-1]
    h_out = z.shape[2] - dh * (kh_ - 1)
    w_out = z.shape[3] - dw * (kw_ - 1)
    out = np.zeros((n, c_out_g * p.groups, h_out, w_out))
    for ci_sl, co_sl in _group_slices(c_in, c_out_g, p.groups):
        for kh in range(kh_):
            for kw in range(kw_):
                window = z[:, ci_sl, kh * dh:kh * dh + h_out, kw * dw:kw * dw + w_out]
                out[:, co_sl] += np.einsum("nchw,cj->njhw", window, flipped[ci_sl, :, kh, kw])
    if b is not None:
        out = out + b[None, :, None, None]
    return out if batched else out[0]


#: The reference the tests and ``python -m convtranspose check`` compare against.
conv_transpose2d_reference = conv_transpose2d_scatter


# ----------------------------------------------------------------------------
# conv2d and the gradients (float64, from the definitions)


def _pad4(a, pad_h, pad_w):
    return np.pad(a, ((0, 0), (0, 0), pad_h, pad_w))


def conv2d_reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``conv2d`` from the definition: zero-pad ``x``, then for every tap add the strided
    window times the tap's weights. Float64 result; arguments as for
    :func:`convtranspose.conv2d`."""
    from .params import normalise_conv2d
    x, weight = np.asarray(x), np.asarray(weight)
    p, shape, _ = normalise_conv2d(x.shape, weight.shape, None, [x.dtype, weight.dtype],
                                   stride=stride, padding=padding, dilation=dilation,
                                   groups=groups)
    batched = x.ndim == 4
    xp = _pad4(np.asarray(x, np.float64).reshape((-1,) + x.shape[-3:]), p.pad_h, p.pad_w)
    w = np.asarray(weight, np.float64)
    c_out, c_in_g, kh_, kw_ = w.shape
    h_out, w_out = shape[-2:]
    (sh, sw), (dh, dw) = p.stride, p.dilation
    out = np.zeros((xp.shape[0], c_out, h_out, w_out))
    c_out_g = c_out // p.groups
    for g in range(p.groups):
        ci, co = slice(g * c_in_g, (g + 1) * c_in_g), slice(g * c_out_g, (g + 1) * c_out_g)
        for kh in range(kh_):
            for kw in range(kw_):
                win = xp[:, ci, kh * dh:kh * dh + (h_out - 1) * sh + 1:sh,
                         kw * dw:kw * dw + (w_out - 1) * sw + 1:sw]
                out[:, co] += np.einsum("nchw,jc->njhw", win, w[co, :, kh, kw])
    if bias is not None:
        out += np.asarray(bias, np.float64)[None, :, None, None]
    return out if batched else out[0]


def conv_transpose2d_backward_reference(grad_output, x, weight, **kwargs):
    """Gradients of the transposed convolution as the adjoint of the scatter definition.

    The forward stamps ``x[n, ci, ih, iw] * weight[ci, j]`` onto a full-size canvas at
    ``(ih*sH + kh*dH, iw*sW + kw*dW)`` and crops ``top``/``left``; so the canvas gradient
    is ``grad_output`` placed at ``(top, left)`` in zeros, and each tap reads it back at
    the same strided positions. Returns float64 ``(grad_input, grad_weight, grad_bias)``;
    keywords as for :func:`convtranspose.conv_transpose2d`.
    """
    x, w, _, p, batched = _prepare(x, weight, None, kwargs)
    gy = np.asarray(grad_output, np.float64)
    gy = gy if batched else gy[None]
    n, c_in, h, wd = x.shape
    _, c_out_g, kh_, kw_ = w.shape
    (sh, sw), (dh, dw) = p.stride, p.dilation
    full_h = (h - 1) * sh + dh * (kh_ - 1) + 1 + p.output_padding[0]
    full_w = (wd - 1) * sw + dw * (kw_ - 1) + 1 + p.output_padding[1]
    canvas = np.zeros((n, gy.shape[1], full_h, full_w))
    canvas[:, :, p.pad_h[0]:p.pad_h[0] + gy.shape[2], p.pad_w[0]:p.pad_w[0] + gy.shape[3]] = gy
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for ci_sl, co_sl in _group_slices(c_in, c_out_g, p.groups):
        for kh in range(kh_):
            for kw in range(kw_):
                patch = canvas[:, co_sl, kh * dh:kh * dh + (h - 1) * sh + 1:sh,
                               kw * dw:kw * dw + (wd - 1) * sw + 1:sw]
                gx[:, ci_sl] += np.einsum("njhw,cj->nchw", patch, w[ci_sl, :, kh, kw])
                gw[ci_sl, :, kh, kw] = np.einsum("nchw,njhw->cj", x[:, ci_sl], patch)
    gb = gy.sum(axis=(0, 2, 3))
    return (gx if batched else gx[0]), gw, gb


def conv2d_backward_reference(grad_output, x, weight, stride=1, padding=0, dilation=1,
                              groups=1):
    """Gradients of ``conv2d`` as the adjoint of :func:`conv2d_reference`: each tap's
    strided window of the padded input receives ``grad_output`` times the tap's weights,
    and the padding is cropped off. Float64 ``(grad_input, grad_weight, grad_bias)``."""
    from .params import normalise_conv2d
    x, weight = np.asarray(x), np.asarray(weight)
    p, shape, _ = normalise_conv2d(x.shape, weight.shape, None, [x.dtype, weight.dtype],
                                   stride=stride, padding=padding, dilation=dilation,
                                   groups=groups)
    batched = x.ndim == 4
    x4 = np.asarray(x, np.float64).reshape((-1,) + x.shape[-3:])
    xp = _pad4(x4, p.pad_h, p.pad_w)
    gy = np.asarray(grad_output, np.float64).reshape((-1,) + tuple(shape[-3:]))
    w = np.asarray(weight, np.float64)
    c_out, c_in_g, kh_, kw_ = w.shape
    h_out, w_out = shape[-2:]
    (sh, sw), (dh, dw) = p.stride, p.dilation
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    c_out_g = c_out // p.groups
    for g in range(p.groups):
        ci, co = slice(g * c_in_g, (g + 1) * c_in_g), slice(g * c_out_g, (g + 1) * c_out_g)
        for kh in range(kh_):
            for kw in range(kw_):
                rows = slice(kh * dh, kh * dh + (h_out - 1) * sh + 1, sh)
                cols = slice(kw * dw, kw * dw + (w_out - 1) * sw + 1, sw)
                gxp[:, ci, rows, cols] += np.einsum("njhw,jc->nchw", gy[:, co], w[co, :, kh, kw])
                gw[co, :, kh, kw] = np.einsum("njhw,nchw->jc", gy[:, co], xp[:, ci, rows, cols])
    gx = gxp[:, :, p.pad_h[0]:p.pad_h[0] + x4.shape[2], p.pad_w[0]:p.pad_w[0] + x4.shape[3]]
    return (gx if batched else gx[0]), gw, gy.sum(axis=(0, 2, 3))
