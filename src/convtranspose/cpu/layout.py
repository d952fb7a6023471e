"""Operands in any dense memory layout (channels-first NCHW, channels-last NHWC, ...).

The public functions hand the backends 4-D arrays indexed ``(N, C, H, W)`` whatever their
memory order: a channels-last array arrives as a view ``(N, C, H, W)`` of its ``(N, H, W,
C)`` memory. The channels-last engine (:mod:`convtranspose.cpu.nd_engine`) takes such
views as they are: it reads the input through its strides into its zero-bordered copy
and writes the result through the output's strides. Every other kernel takes
C-contiguous arrays, which :func:`c_contiguous` gives it by copying when needed.
"""
from __future__ import annotations

import functools

import numpy as np

__all__ = ["c_contiguous"]


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
