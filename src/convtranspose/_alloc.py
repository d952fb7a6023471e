"""Allocation of outputs and workspaces with a useful error when memory runs out."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["allocate"]


def allocate(shape, dtype, what, zero=False):
    """``np.empty(shape, dtype)`` (``np.zeros`` with ``zero``), raising ``MemoryError`` that
    names the request.

    NumPy raises ``MemoryError`` when the allocation fails and ``ValueError`` when the
    byte count does not even fit in ``intp``; both become a ``MemoryError`` whose message
    gives ``what``, the shape, the dtype and the bytes requested.
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = math.prod(shape) * dtype.itemsize
    try:
        return np.zeros(shape, dtype) if zero else np.empty(shape, dtype)
    except (MemoryError, ValueError) as exc:
        raise MemoryError(
            f"cannot allocate the {what}: shape {shape}, dtype {dtype}, "
            f"{nbytes} bytes ({nbytes / 2**30:.3g} GiB) requested") from exc
