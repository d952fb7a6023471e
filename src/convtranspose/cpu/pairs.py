"""Complex results as real pairs: the one pass that gives PyTorch's non-finite complex values.

A complex array's memory is pairs of reals, ``(real, imaginary)``. :func:`poison` makes
every pair that is not finite in both members NaN in both, in place: the form PyTorch's
CPU convolutions give a complex element that meets an Inf or NaN (their complex GEMM
scales each product by ``alpha = 1 + 0j``, which turns ``0 * inf`` into NaN in the other
part). See :mod:`convtranspose.complexops`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import njit

__all__ = ["poison"]


@njit(parallel=True, cache=True)
def _poison(flat):
    half = flat.shape[0] // 2
    for i in prange(half):
        re, im = flat[2 * i], flat[2 * i + 1]
        if not (math.isfinite(re) and math.isfinite(im)):
            flat[2 * i] = np.nan
            flat[2 * i + 1] = np.nan


def poison(a):
    """Make each element of the complex array ``a`` (any layout, writeable) that is not
    finite in both parts ``nan+nanj``, in place; return ``a``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.pairs import poison
    >>> poison(np.array([1 + 2j, complex(np.inf, 0), complex(3, np.nan)]))
    array([ 1. +2.j, nan+nanj, nan+nanj])
    """
    if a.size == 0:
        return a
    if a.flags.c_contiguous:
        _poison(a.reshape(-1).view(a.real.dtype))
    else:
        bad = ~np.isfinite(a)
        if bad.any():
            a[bad] = complex(np.nan, np.nan)
    return a
