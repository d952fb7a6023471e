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
and the tap, so the NaN positions come from small boolean tables: per tap and output
index along each spatial dimension (:func:`outside`), so the same code serves every
rank. With a finite weight (resp. a finite
border of ``a``) nothing is done beyond one sum.
"""
from __future__ import annotations

import numpy as np

from ._jit import njit

__all__ = ["all_finite", "outside", "correlate_nan", "nan_mask", "weight_grad_nan"]


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


def outside(out_len, in_len, k, s, d, before):
    """``(k, out_len)`` booleans: tap ``t`` at output index ``o`` reads ``o*s + t*d -
    before`` outside ``[0, in_len)``.

    Examples
    --------
    >>> from convtranspose.nonfinite import outside
    >>> outside(3, 2, 2, 1, 1, 1).astype(int)       # conv2d: 2 rows, kernel 2, padding 1
    array([[1, 0, 0],
           [0, 0, 1]])
    """
    pos = np.arange(out_len)[None, :] * s + np.arange(k)[:, None] * d - before
    return (pos < 0) | (pos >= in_len)


def _any_meets(bad, table):
    """``(C, out_len)``: ``bad[c, t] and table[t, o]`` for some tap ``t``."""
    return (bad[:, :, None] & table[None]).any(axis=1)


def _along(mask, i, rank):
    """``mask`` (C, n) shaped to broadcast along spatial dimension ``i`` of ``rank``."""
    shape = [mask.shape[0]] + [1] * rank
    shape[1 + i] = mask.shape[1]
    return mask.reshape(shape)


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
    tables, edges = [], []
    for i in range(rank):
        table = outside(a.shape[2 + i], b_sizes[i], gw.shape[2 + i], stride[i], dilation[i],
                        before[i])
        tables.append(table)
        edges.append(np.compress(table.any(axis=0), a, axis=2 + i))
    if all(all_finite(e) for e in edges):
        return gw
    mask = np.zeros((a.shape[1], *gw.shape[2:]), bool)              # (C_a, *kernel)
    for i, (table, edge) in enumerate(zip(tables, edges)):
        bad = np.zeros((a.shape[1], a.shape[2 + i]), bool)
        others = tuple(j for j in range(a.ndim) if j not in (1, 2 + i))
        bad[:, table.any(axis=0)] = ~np.isfinite(edge).all(axis=others)
        mask |= _along(_any_meets(bad, table.T), i, rank)
    gw[np.broadcast_to(mask[:, None], gw.shape)] = np.nan
    return gw
