"""PyTorch's NaN rule for the zeros a convolution reads outside its input.

PyTorch computes a convolution from zero-padded patches, so its zero padding takes part
in the products: a padding zero times an Inf or NaN weight is NaN. A transposed
convolution's inserted zeros and cropped borders take no part (it scatters products of
real pixels). The two operators of :mod:`convtranspose.cpu.backward` read outside their
input and follow the first rule:

* the **correlation** ``out[n, co, oh, ow] = sum x[n, ci, oh*sH + kh*dH - top, ow*sW +
  kw*dW - left] * weight[co, c, kh, kw]`` (``conv2d``; the transposed convolution's
  ``grad_input``) is NaN at ``(co, oh, ow)``, for every image, wherever a tap ``(kh,
  kw)`` with a non-finite ``weight[co, c, kh, kw]`` (some ``c``) reads outside ``x``;
* the **weight gradient** ``gw[ca, j, kh, kw] = sum a[n, ca, oh, ow] * b[n, cb, oh*sH +
  kh*dH - top, ow*sW + kw*dW - left]`` (``conv2d``: ``a = grad_output``, ``b = x``; the
  transposed convolution: ``a = x``, ``b = grad_output``) is NaN at ``(ca, j, kh, kw)``,
  for every ``j``, wherever a non-finite ``a[n, ca, oh, ow]`` (some ``n``) meets a read
  of tap ``(kh, kw)`` outside ``b``.

A gather kernel that skips the outside taps misses these NaN; a GEMM over zero-filled
patches forms them. :func:`correlate_nan` and :func:`weight_grad_nan` set them after any
backend ran (setting NaN where the GEMM already gave it changes nothing), so every
backend gives the same answer. Whether a read falls outside depends only on the shapes
and the tap, so the NaN positions come from small boolean tables per tap and index along
each spatial dimension (:func:`nan_mask`, :func:`weight_grad_mask`: compiled, the same
code for every rank and for ``@njit`` callers). With a finite weight the correlation's
rule costs one sum; the weight gradient's reads only the borders of ``a`` that meet an
outside read.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit

__all__ = ["all_finite", "correlate_nan", "nan_mask", "weight_grad_nan", "weight_grad_mask"]


def all_finite(a):
    """True when every element of ``a`` is finite, by one sum (a sum of floats is finite
    only if every term is; an overflowing sum answers False, which only costs the
    caller its exact, slower path).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.nonfinite import all_finite
    >>> all_finite(np.ones(3)), all_finite(np.array([1.0, np.inf]))
    (True, False)
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(a)))


def correlate_nan(out, weight, in_sizes, stride, dilation, before):
    """Set the correlation's NaN from padding zeros times non-finite weights.

    Parameters
    ----------
    out : ndarray, shape (N, C_out, *spatial)
        A backend's correlation of an input of spatial size ``in_sizes`` with ``weight``;
        changed in place. Any rank: ``(N, C_out, H_out, W_out)`` in 2-D.
    weight : ndarray, shape (C_out, C_in // groups, *kernel)
    in_sizes : tuple of int
        The input's spatial size, ``(H, W)`` in 2-D.
    stride, dilation, before : tuple of int
        Stride, dilation and leading padding (``(top, left)`` in 2-D), per dimension.

    Returns
    -------
    ndarray
        ``out``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.nonfinite import correlate_nan
    >>> w = np.array([np.inf, 1.0]).reshape(1, 1, 2, 1)
    >>> out = np.array([1.0, np.inf, np.inf]).reshape(1, 1, 3, 1)   # taps skipped
    >>> correlate_nan(out, w, (2, 1), (1, 1), (1, 1), (1, 0)).ravel()
    array([nan, inf, inf])
    """
    if all_finite(weight):
        return out
    rank = weight.ndim - 2
    lift = (1,) * (3 - rank)
    bad = ~np.isfinite(weight).all(axis=1)                          # (C_out, *kernel)
    ints = lambda v: np.array((*lift, *v), np.int64)                # noqa: E731
    mask = nan_mask(bad.reshape(bad.shape[0], *lift, *bad.shape[1:]), ints(in_sizes),
                    ints(stride), ints(dilation), np.array((*(0,) * (3 - rank), *before)),
                    ints(out.shape[2:]))
    out[:, mask.reshape(out.shape[1:])] = np.nan
    return out


@njit(cache=True, notice=False)
def nan_mask(bad, in_sizes, stride, dilation, before, out_sizes):
    """The positions ``(C_out, D, H, W)`` that :func:`correlate_nan` sets to NaN, from
    ``bad`` ``(C_out, kD, kH, kW)`` (whether a tap of an output channel has a non-finite
    weight) and ``int64`` arrays of 3 (lower ranks as unit depth and height); callable from
    ``@njit`` code."""
    c_out = bad.shape[0]
    mask = np.zeros((c_out, out_sizes[0], out_sizes[1], out_sizes[2]), np.bool_)
    for a in range(3):
        k = bad.shape[1 + a]
        meets = np.zeros((c_out, out_sizes[a]), np.bool_)
        for co in range(c_out):
            for t in range(k):
                hit = False
                for i in range(bad.shape[1]):
                    for j in range(bad.shape[2]):
                        for m in range(bad.shape[3]):
                            if bad[co, i, j, m] and (i, j, m)[a] == t:
                                hit = True
                if not hit:
                    continue
                for o in range(out_sizes[a]):
                    pos = o * stride[a] + t * dilation[a] - before[a]
                    if pos < 0 or pos >= in_sizes[a]:
                        meets[co, o] = True
        for co in range(c_out):
            for o in range(out_sizes[a]):
                if meets[co, o]:
                    if a == 0:
                        mask[co, o] = True
                    elif a == 1:
                        mask[co, :, o] = True
                    else:
                        mask[co, :, :, o] = True
    return mask


def weight_grad_nan(gw, a, b_sizes, stride, dilation, before):
    """Set the weight gradient's NaN from non-finite ``a`` times zeros read outside ``b``.

    Parameters
    ----------
    gw : ndarray, shape (C_a, C_b // groups, *kernel)
        A backend's weight gradient of ``a`` against a ``b`` of spatial size ``b_sizes``;
        changed in place. Any rank: ``(C_a, C_b // groups, kH, kW)`` in 2-D.
    a : ndarray, shape (N, C_a, *spatial)
        The operand on the strided grid.
    b_sizes : tuple of int
        The sampled operand's spatial size, ``(H, W)`` in 2-D.
    stride, dilation, before : tuple of int
        Stride, dilation and leading padding (``(top, left)`` in 2-D), per dimension.

    Returns
    -------
    ndarray
        ``gw``.

    Notes
    -----
    Only the slices of ``a`` that some tap pairs with an outside read (a border as wide
    as the padding, per dimension) are examined.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.nonfinite import weight_grad_nan
    >>> a = np.array([np.inf, 1.0, 1.0]).reshape(1, 1, 3, 1)   # conv2d's grad_output
    >>> gw = np.array([1.0, np.inf]).reshape(1, 1, 2, 1)       # outside products skipped
    >>> weight_grad_nan(gw, a, (2, 1), (1, 1), (1, 1), (1, 0)).ravel()
    array([nan, inf])
    """
    rank = a.ndim - 2
    lift = (1,) * (3 - rank)
    ints = lambda v, fill=1: np.array((*(fill,) * (3 - rank), *v), np.int64)  # noqa: E731
    a5 = a.reshape(a.shape[:2] + lift + a.shape[2:])
    mask = weight_grad_mask(a5, ints(b_sizes), ints(gw.shape[2:]), ints(stride),
                            ints(dilation), ints(before, 0))
    if mask.any():
        gw[np.broadcast_to(mask.reshape(mask.shape[0], 1, *gw.shape[2:]), gw.shape)] = np.nan
    return gw


@njit(cache=True, notice=False)
def weight_grad_mask(a5, b_sizes, k_sizes, stride, dilation, before):
    """The positions ``(C_a, kD, kH, kW)`` of the weight gradient that
    :func:`weight_grad_nan` sets to NaN, from ``a5`` (``(N, C_a, D, H, W)``, any strides;
    lower ranks as unit depth and height) and ``int64`` arrays of 3: along each dimension,
    tap ``t`` at index ``o`` reads ``o*s + t*d - before`` outside ``[0, b_sizes)``, and a
    non-finite ``a5[:, ca]`` at such an index marks tap ``t`` of channel ``ca``. Reads only
    the slices of ``a5`` with an outside read (borders as wide as the padding); callable
    from ``@njit`` code."""
    c_a = a5.shape[1]
    mask = np.zeros((c_a, k_sizes[0], k_sizes[1], k_sizes[2]), np.bool_)
    for ax in range(3):
        length = a5.shape[2 + ax]
        table = np.zeros((k_sizes[ax], length), np.bool_)
        for t in range(k_sizes[ax]):
            for o in range(length):
                pos = o * stride[ax] + t * dilation[ax] - before[ax]
                table[t, o] = pos < 0 or pos >= b_sizes[ax]
        for o in range(length):
            if not table[:, o].any():
                continue
            for ca in range(c_a):
                if _finite_slice(a5, ca, ax, o):
                    continue
                for t in range(k_sizes[ax]):
                    if table[t, o]:
                        if ax == 0:
                            mask[ca, t] = True
                        elif ax == 1:
                            mask[ca, :, t] = True
                        else:
                            mask[ca, :, :, t] = True
    return mask


@njit(cache=True, notice=False)
def _finite_slice(a5, ca, ax, o):
    """Whether ``a5[:, ca]`` is finite at index ``o`` of spatial dimension ``ax``."""
    lo = [0, 0, 0]
    hi = [a5.shape[2], a5.shape[3], a5.shape[4]]
    lo[ax], hi[ax] = o, o + 1
    for i in range(a5.shape[0]):       # index loops: a slice's ravel() would copy it
        for d in range(lo[0], hi[0]):
            for h in range(lo[1], hi[1]):
                for w in range(lo[2], hi[2]):
                    if not np.isfinite(a5[i, ca, d, h, w]):
                        return False
    return True
