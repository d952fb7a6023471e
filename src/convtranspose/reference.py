"""Float64 NumPy references written from the definition: the oracle of the tests.

One implementation for every rank (1-D, 2-D and 3-D: the rank is ``weight.ndim - 2``),
looping over the kernel's taps with :func:`itertools.product` and moving whole strided
slices with NumPy. Two independent formulations of the transposed convolution, both
slow and obviously right:

* :func:`conv_transpose_scatter` -- the definition: every input element stamps the
  kernel, scaled by its value, onto the output at ``stride`` spacing, and the
  padding crops the result;
* :func:`conv_transpose_zero_insertion` -- the tutorial's view: insert
  ``stride - 1`` zeros between input elements, pad by ``dilation*(k - 1) - padding``,
  and correlate with the spatially flipped kernel (a stride-1 convolution).

Beside them the convolution (:func:`conv_reference`) and both gradients
(:func:`conv_transpose_backward_reference`, :func:`conv_backward_reference`). The
``*2d*`` names of the 2-D code are the same functions held to rank 2 (a weight of
another rank is an error there, as in :func:`convtranspose.conv_transpose2d`).

All take already-valid arguments (they validate with :mod:`convtranspose.params` and
raise its errors) and always compute in float64, the forward ones in complex128 where an
operand is complex (NumPy's complex products, independent of how the package runs them).
"""
from __future__ import annotations

import itertools

import numpy as np

from .params import normalise, normalise_conv

__all__ = ["conv_transpose_scatter", "conv_transpose_zero_insertion",
           "conv_transpose_reference", "conv_reference", "conv_transpose_backward_reference",
           "conv_backward_reference",
           "conv_transpose2d_reference", "conv_transpose2d_scatter",
           "conv_transpose2d_zero_insertion", "conv2d_reference",
           "conv_transpose2d_backward_reference", "conv2d_backward_reference"]


# ----------------------------------------------------------------------------
# helpers shared by every reference


def _batched64(a, batched, dtype=np.float64):
    """``a`` as a float64 (or ``dtype``) array with a batch axis."""
    a = np.asarray(a, dtype)
    return a if batched else a[None]


def _wide(*arrays):
    """complex128 where one of ``arrays`` (``None`` skipped) is complex, else float64."""
    complex_ = any(a is not None and np.asarray(a).dtype.kind == "c" for a in arrays)
    return np.dtype(np.complex128 if complex_ else np.float64)


def _checked(*arrays):
    """The dtypes validation checks: a complex operand's as its parts'."""
    return [np.dtype(f"f{a.dtype.itemsize // 2}") if a.dtype.kind == "c" and
            a.dtype.itemsize in (8, 16) else a.dtype for a in arrays]


def _prepare(x, weight, bias, kwargs, rank):
    """Validate a transposed convolution; its operands in float64 (complex128 where one is
    complex), batched."""
    x, weight = np.asarray(x), np.asarray(weight)
    b_shape = None if bias is None else np.shape(bias)
    params, _, _ = normalise(x.shape, weight.shape, b_shape, _checked(x, weight),
                             rank=rank, **kwargs)
    batched = x.ndim == params.rank + 2
    dt = _wide(x, weight, bias)
    b64 = None if bias is None else np.asarray(bias, dt)
    return _batched64(x, batched, dt), np.asarray(weight, dt), b64, params, batched


def _prepare_conv(x, weight, kwargs, rank, also=None):
    """Validate a convolution; ``x`` and ``weight`` in float64, or complex128 where they
    or ``also`` (the bias or the output gradient) are complex (``x`` batched)."""
    x, weight = np.asarray(x), np.asarray(weight)
    params, shape, _ = normalise_conv(x.shape, weight.shape, None, _checked(x, weight),
                                      rank=rank, **kwargs)
    batched = x.ndim == params.rank + 2
    dt = _wide(x, weight, also)
    return _batched64(x, batched, dt), np.asarray(weight, dt), params, shape, batched


def _group_slices(c_in, c_out_g, groups):
    """``(input channels, output channels)`` of each group, as slices."""
    c_in_g = c_in // groups
    for g in range(groups):
        yield (slice(g * c_in_g, (g + 1) * c_in_g), slice(g * c_out_g, (g + 1) * c_out_g))


def _taps(kernel):
    """Every kernel offset, as a tuple of ints (``itertools.product`` of the ranges)."""
    return itertools.product(*(range(k) for k in kernel))


def _grid(taps, sizes, stride, dilation):
    """The strided slices that tap ``taps`` meets: ``sizes`` positions from
    ``tap*dilation`` at ``stride`` spacing, in each dimension."""
    return tuple(slice(t * d, t * d + (n - 1) * s + 1, s)
                 for t, n, s, d in zip(taps, sizes, stride, dilation))


def _full_sizes(sizes, kernel, p):
    """The uncropped canvas of a transposed convolution (``output_padding`` included)."""
    return tuple((n - 1) * s + d * (k - 1) + 1 + op for n, k, s, d, op in
                 zip(sizes, kernel, p.stride, p.dilation, p.output_padding))


def _crop(pads, sizes):
    """Slices keeping ``sizes`` elements after each ``before`` of ``pads``."""
    return tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, sizes))


def _with_bias(out, b):
    return out if b is None else out + b.reshape((1, -1) + (1,) * (out.ndim - 2))


def _channel_products(a, b):
    """``sum over n and positions of a[n, c, ...] * b[n, j, ...]``, as a ``(c, j)`` array:
    a weight gradient's tap."""
    axes = [0, *range(2, a.ndim)]
    return np.tensordot(a, b, axes=(axes, axes))


def _all(rest):
    """Index of every batch entry and channel, then ``rest``."""
    return (slice(None), slice(None)) + tuple(rest)


# ----------------------------------------------------------------------------
# transposed convolution


def conv_transpose_scatter(x, weight, bias=None, *, rank=None, **kwargs):
    """Transposed convolution of any rank as a scatter sum; float64 result.

    ``full[n, co, i*s + t*d] += x[n, ci, i] * weight[ci, j, t]`` for every input position
    ``i`` and kernel tap ``t`` (multi-indices over the spatial dimensions), over the
    input channels ``ci`` of ``co``'s group; then ``out = full[:, :, lo:lo + size_out]``
    per dimension (rows past the end of the stamps, which only ``output_padding``
    reaches, are zero), plus the bias.

    Parameters
    ----------
    x : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    weight : array_like
        ``(C_in, C_out // groups, *kernel_size)``; its rank (``weight.ndim - 2``) is that
        of the operation.
    bias : array_like, optional
        ``(C_out,)``.
    rank : {1, 2, 3}, optional
        The rank to insist on; by default the weight's.
    **kwargs
        ``stride``, ``padding`` (also ``"valid"``/``"same"``), ``output_padding``,
        ``dilation``, ``groups``, ``output_size``, as for
        :func:`convtranspose.conv_transpose2d`, one entry per spatial dimension.

    Returns
    -------
    numpy.ndarray
        Float64, ``(N, C_out, *spatial_out)`` (unbatched if ``x`` is).

    Raises
    ------
    ValueError, TypeError
        For invalid arguments, as :func:`convtranspose.params.normalise`.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_transpose_scatter
    >>> conv_transpose_scatter(np.array([[[1.0, 2.0]]]), np.ones((1, 1, 3)), stride=2)
    array([[[1., 1., 3., 2., 2.]]])
    >>> conv_transpose_scatter(np.ones((1, 1, 1, 1, 1)), np.ones((1, 1, 2, 2, 2))).shape
    (1, 1, 2, 2, 2)
    """
    x, w, b, p, batched = _prepare(x, weight, bias, kwargs, rank)
    sizes, kernel = x.shape[2:], w.shape[2:]
    full_sizes = _full_sizes(sizes, kernel, p)
    full = np.zeros(x.shape[:1] + (w.shape[1] * p.groups,) + full_sizes, x.dtype)
    for ci, co in _group_slices(x.shape[1], w.shape[1], p.groups):
        for taps in _taps(kernel):
            stamp = np.einsum("nc...,cj->nj...", x[:, ci], w[(ci, slice(None)) + taps])
            full[(slice(None), co) + _grid(taps, sizes, p.stride, p.dilation)] += stamp
    out_sizes = tuple(f - lo - hi for f, (lo, hi) in zip(full_sizes, p.pads))
    out = _with_bias(full[_all(_crop(p.pads, out_sizes))], b)
    return out if batched else out[0]


def conv_transpose_zero_insertion(x, weight, bias=None, *, rank=None, **kwargs):
    """Transposed convolution of any rank as zero insertion plus a flipped-kernel
    correlation; float64 result.

    1. Insert ``s - 1`` zeros between neighbouring input elements in each dimension.
    2. Pad each side by ``d*(k - 1) - padding`` (a negative amount crops), and the end
       by ``output_padding`` more.
    3. Correlate (stride 1, dilation ``d``) with the kernel flipped in every spatial
       axis and with its two channel axes swapped.

    Parameters and result as for :func:`conv_transpose_scatter`.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_transpose_zero_insertion
    >>> conv_transpose_zero_insertion(np.array([[[1.0, 2.0]]]), np.ones((1, 1, 3)), stride=2)
    array([[[1., 1., 3., 2., 2.]]])
    """
    x, w, b, p, batched = _prepare(x, weight, bias, kwargs, rank)
    sizes, kernel = x.shape[2:], w.shape[2:]
    # 1. zero insertion
    z = np.zeros(x.shape[:2] + tuple((n - 1) * s + 1 for n, s in zip(sizes, p.stride)),
                 x.dtype)
    z[_all(slice(None, None, s) for s in p.stride)] = x
    # 2. padding (negative amounts crop)
    reach = [d * (k - 1) for k, d in zip(kernel, p.dilation)]
    before = [r - lo for r, (lo, _) in zip(reach, p.pads)]
    after = [r - hi + op for r, (_, hi), op in zip(reach, p.pads, p.output_padding)]
    z = np.pad(z, [(0, 0), (0, 0)] + [(max(a, 0), max(b_, 0)) for a, b_ in zip(before, after)])
    z = z[_all(slice(max(-a, 0), n - max(-b_, 0)) for a, b_, n in zip(before, after, z.shape[2:]))]
    # 3. correlation with the flipped kernel
    flipped = w[_all(slice(None, None, -1) for _ in kernel)]
    out_sizes = tuple(n - r for n, r in zip(z.shape[2:], reach))
    out = np.zeros(x.shape[:1] + (w.shape[1] * p.groups,) + out_sizes, x.dtype)
    ones = (1,) * len(kernel)
    for ci, co in _group_slices(x.shape[1], w.shape[1], p.groups):
        for taps in _taps(kernel):
            window = z[(slice(None), ci) + _grid(taps, out_sizes, ones, p.dilation)]
            out[:, co] += np.einsum("nc...,cj->nj...", window, flipped[(ci, slice(None)) + taps])
    out = _with_bias(out, b)
    return out if batched else out[0]


#: The transposed-convolution reference the tests compare against.
conv_transpose_reference = conv_transpose_scatter


def conv_transpose_backward_reference(grad_output, x, weight, *, rank=None, **kwargs):
    """Gradients of the transposed convolution (any rank) as the adjoint of the scatter
    definition.

    The forward stamps ``x[n, ci, i] * weight[ci, j, t]`` onto a full-size canvas at
    ``i*s + t*d`` and crops ``before`` of each dimension; so the canvas gradient is
    ``grad_output`` placed at ``before`` in zeros, and each tap reads it back at the same
    strided positions.

    Parameters
    ----------
    grad_output : array_like
        The gradient of the forward result, of its shape.
    x, weight, rank, **kwargs
        As for :func:`conv_transpose_scatter` (no bias).

    Returns
    -------
    tuple of numpy.ndarray
        Float64 ``(grad_input, grad_weight, grad_bias)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_transpose_backward_reference
    >>> gx, gw, gb = conv_transpose_backward_reference(np.ones((1, 1, 3)),
    ...                                                np.array([[[1.0, 2.0]]]),
    ...                                                np.ones((1, 1, 3)), padding=((1, 0),))
    >>> gx, gw, gb
    (array([[[2., 3.]]]), array([[[2., 3., 3.]]]), array([3.]))
    """
    x, w, _, p, batched = _prepare(x, weight, None, kwargs, rank)
    dt = _wide(x, w, grad_output)   # complex: PyTorch's gradients of a real loss (the adjoint)
    x, w = x.astype(dt, copy=False).conj(), w.astype(dt, copy=False).conj()
    gy = _batched64(grad_output, batched, x.dtype)
    sizes, kernel = x.shape[2:], w.shape[2:]
    canvas = np.zeros(gy.shape[:2] + _full_sizes(sizes, kernel, p), x.dtype)
    canvas[_all(_crop(p.pads, gy.shape[2:]))] = gy
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for ci, co in _group_slices(x.shape[1], w.shape[1], p.groups):
        for taps in _taps(kernel):
            patch = canvas[(slice(None), co) + _grid(taps, sizes, p.stride, p.dilation)]
            tap = (ci, slice(None)) + taps
            gx[:, ci] += np.einsum("nj...,cj->nc...", patch, w[tap])
            gw[tap] = _channel_products(x[:, ci], patch)
    gb = gy.sum(axis=(0, *range(2, gy.ndim)))
    return (gx if batched else gx[0]), gw, gb


# ----------------------------------------------------------------------------
# convolution


def conv_reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
                   rank=None):
    """Convolution (cross-correlation, as ``torch.nn.functional.conv{1,2,3}d``) of any rank
    from the definition: zero-pad ``x``, then for every tap add the strided window times
    the tap's weights.

    Parameters
    ----------
    x : array_like
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)``.
    weight : array_like
        ``(C_out, C_in // groups, *kernel_size)``.
    bias : array_like, optional
        ``(C_out,)``.
    stride, padding, dilation, groups
        As for :func:`convtranspose.conv2d`, one entry per spatial dimension; ``padding``
        may be ``"valid"`` or ``"same"``.
    rank : {1, 2, 3}, optional
        The rank to insist on; by default the weight's.

    Returns
    -------
    numpy.ndarray
        Float64 ``(N, C_out, *spatial_out)`` (unbatched if ``x`` is).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_reference
    >>> conv_reference(np.array([[[1.0, 2.0, 3.0, 4.0]]]), np.array([[[1.0, -1.0]]]),
    ...                padding="same")
    array([[[-1., -1., -1.,  4.]]])
    """
    x, w, p, shape, batched = _prepare_conv(
        x, weight, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), rank,
        bias)
    xp = np.pad(x, [(0, 0), (0, 0)] + list(p.pads))
    out_sizes, kernel = tuple(shape[-p.rank:]), w.shape[2:]
    out = np.zeros(x.shape[:1] + (w.shape[0],) + out_sizes, x.dtype)
    for ci, co in _group_slices(x.shape[1], w.shape[0] // p.groups, p.groups):
        for taps in _taps(kernel):
            window = xp[(slice(None), ci) + _grid(taps, out_sizes, p.stride, p.dilation)]
            out[:, co] += np.einsum("nc...,jc->nj...", window, w[(co, slice(None)) + taps])
    out = _with_bias(out, None if bias is None else np.asarray(bias, x.dtype))
    return out if batched else out[0]


def conv_backward_reference(grad_output, x, weight, stride=1, padding=0, dilation=1,
                            groups=1, *, rank=None):
    """Gradients of the convolution (any rank) as the adjoint of :func:`conv_reference`:
    each tap's strided window of the padded input receives ``grad_output`` times the
    tap's weights, and the padding is cropped off.

    Parameters
    ----------
    grad_output : array_like
        The gradient of the forward result, of its shape.
    x, weight, stride, padding, dilation, groups, rank
        As for :func:`conv_reference` (no bias).

    Returns
    -------
    tuple of numpy.ndarray
        Float64 ``(grad_input, grad_weight, grad_bias)``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_backward_reference
    >>> gx, gw, gb = conv_backward_reference(np.ones((1, 1, 3)), np.array([[[1.0, 2.0, 3.0]]]),
    ...                                      np.array([[[1.0, -1.0]]]), padding=((1, 0),))
    >>> gx, gw, gb
    (array([[[ 0.,  0., -1.]]]), array([[[3., 6.]]]), array([3.]))
    """
    x, w, p, shape, batched = _prepare_conv(
        x, weight, dict(stride=stride, padding=padding, dilation=dilation, groups=groups), rank,
        grad_output)
    x, w = x.conj(), w.conj()   # complex: PyTorch's gradients of a real loss (the adjoint)
    gy = _batched64(grad_output, batched, x.dtype).reshape((-1,) + tuple(shape[-p.rank - 1:]))
    xp = np.pad(x, [(0, 0), (0, 0)] + list(p.pads))
    out_sizes, kernel = gy.shape[2:], w.shape[2:]
    gxp, gw = np.zeros_like(xp), np.zeros_like(w)
    for ci, co in _group_slices(x.shape[1], w.shape[0] // p.groups, p.groups):
        for taps in _taps(kernel):
            window = (slice(None), ci) + _grid(taps, out_sizes, p.stride, p.dilation)
            tap = (co, slice(None)) + taps
            gxp[window] += np.einsum("nj...,jc->nc...", gy[:, co], w[tap])
            gw[tap] = _channel_products(gy[:, co], xp[window])
    gx = gxp[_all(_crop(p.pads, x.shape[2:]))]
    return (gx if batched else gx[0]), gw, gy.sum(axis=(0, *range(2, gy.ndim)))


# ----------------------------------------------------------------------------
# the 2-D names: the same functions, held to rank 2


def conv_transpose2d_scatter(x, weight, bias=None, **kwargs):
    """:func:`conv_transpose_scatter` for 2-D input only (``weight`` must be 4-D).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_transpose2d_scatter
    >>> conv_transpose2d_scatter(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return conv_transpose_scatter(x, weight, bias, rank=2, **kwargs)


def conv_transpose2d_zero_insertion(x, weight, bias=None, **kwargs):
    """:func:`conv_transpose_zero_insertion` for 2-D input only (``weight`` must be 4-D).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_transpose2d_zero_insertion
    >>> conv_transpose2d_zero_insertion(np.ones((1, 1, 2, 2)), np.ones((1, 1, 2, 2)))[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return conv_transpose_zero_insertion(x, weight, bias, rank=2, **kwargs)


#: The reference the 2-D tests and ``python -m convtranspose check`` compare against.
conv_transpose2d_reference = conv_transpose2d_scatter


def conv_transpose2d_backward_reference(grad_output, x, weight, **kwargs):
    """:func:`conv_transpose_backward_reference` for 2-D input only.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv_transpose2d_backward_reference
    >>> [g.shape for g in conv_transpose2d_backward_reference(
    ...     np.ones((1, 3, 3, 3)), np.ones((1, 2, 2, 2)), np.ones((2, 3, 2, 2)))]
    [(1, 2, 2, 2), (2, 3, 2, 2), (3,)]
    """
    return conv_transpose_backward_reference(grad_output, x, weight, rank=2, **kwargs)


def conv2d_reference(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """:func:`conv_reference` for 2-D input only (``weight`` must be 4-D).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv2d_reference
    >>> conv2d_reference(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)), padding="same")[0, 0]
    array([[4., 4., 2.],
           [4., 4., 2.],
           [2., 2., 1.]])
    """
    return conv_reference(x, weight, bias, stride, padding, dilation, groups, rank=2)


def conv2d_backward_reference(grad_output, x, weight, stride=1, padding=0, dilation=1,
                              groups=1):
    """:func:`conv_backward_reference` for 2-D input only.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.reference import conv2d_backward_reference
    >>> [g.shape for g in conv2d_backward_reference(
    ...     np.ones((2, 3, 2, 2)), np.ones((2, 4, 3, 3)), np.ones((3, 4, 2, 2)))]
    [(2, 4, 3, 3), (3, 4, 2, 2), (3,)]
    """
    return conv_backward_reference(grad_output, x, weight, stride, padding, dilation, groups,
                                   rank=2)
