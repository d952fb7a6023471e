"""Operands in any dense memory layout (channels-first NCHW, channels-last NHWC, ...).

The public functions hand the backends 4-D arrays indexed ``(N, C, H, W)`` whatever their
memory order: a channels-last array arrives as a view ``(N, C, H, W)`` of its ``(N, H, W,
C)`` memory. The engine (:mod:`convtranspose.cpu.deconv`) reads and writes such views in
place, through their elements and strides (:func:`geometry`); every other kernel takes
C-contiguous arrays, which :func:`c_contiguous` gives it by copying when needed.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["dense", "geometry", "c_contiguous"]


def _memory_order(a):
    """``a``'s axes from the largest stride to the smallest (ties: the given order)."""
    return sorted(range(a.ndim), key=lambda i: -abs(a.strides[i]))


def dense(a):
    """True when ``a``'s elements fill one block of memory in some order of its axes (a
    C-contiguous array, or a transposed view of one), with positive strides.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.layout import dense
    >>> nhwc = np.zeros((2, 5, 5, 3))
    >>> dense(nhwc.transpose(0, 3, 1, 2)), dense(nhwc[:, ::2])
    (True, False)
    """
    if a.flags.c_contiguous:
        return True
    return min(a.strides, default=1) > 0 and a.transpose(_memory_order(a)).flags.c_contiguous


def geometry(a):
    """A dense 4-D ``a`` (see :func:`dense`) as its elements and its geometry.

    Returns
    -------
    flat : ndarray
        A 1-D view of ``a``'s elements in memory order (never a copy).
    geometry : ndarray of int64
        ``(C, H, W, sN, sC, sH, sW)``: the sizes of axes 1 to 3 and the strides of all four
        in elements, as the engine's packing and store take them.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.layout import geometry
    >>> nhwc = np.zeros((2, 5, 4, 3))
    >>> flat, geom = geometry(nhwc.transpose(0, 3, 1, 2))
    >>> np.shares_memory(flat, nhwc), geom.tolist()
    (True, [3, 5, 4, 60, 1, 12, 3])
    """
    if a.flags.c_contiguous:
        flat = a.reshape(-1)
    else:
        flat = a.transpose(_memory_order(a)).reshape(-1)
    if a.size and not np.shares_memory(flat, a):       # pragma: no cover (callers check)
        raise ValueError("geometry needs a dense array")
    strides = [s // a.itemsize for s in a.strides]
    return flat, np.array([*a.shape[1:], *strides], np.int64)


def c_contiguous(run):
    """``run(x, weight, bias, params, out)`` for C-contiguous ``x`` and ``out`` only, made
    to take any layout: other ``x`` are copied, other ``out`` computed into a new array
    and copied in (the channels-last path of the backends other than the engine)."""
    @functools.wraps(run)
    def wrapper(x, weight, bias, params, out):
        x = np.ascontiguousarray(x)
        if out.flags.c_contiguous:
            return run(x, weight, bias, params, out)
        result = run(x, weight, bias, params, np.empty(out.shape, out.dtype))
        out[...] = result
        return out
    return wrapper
