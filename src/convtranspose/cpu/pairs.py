"""Complex arrays as pairs of reals: the passes of Gauss's three-product form.

A complex convolution ``y = x * w`` runs as three real ones, the form PyTorch's CPU
convolutions use (Gauss's trick): ``a = Re x * Re w``, ``b = Im x * Im w`` and
``c = (Re x + Im x) * (Re w + Im w)``, then ``Re y = a - b`` and ``Im y = c - a - b``.
:func:`split` lays a complex operand out as the three real operands side by side along
its channel axis, ``(Re, Im, Re + Im)``, in one parallel pass; the three convolutions are
then one real call with three times the groups; :func:`join` makes the complex result of
the three real ones in one parallel pass, adding the bias and making every element that
is not finite in both parts ``nan+nanj``, the form PyTorch gives such an element.

The gradients use the same passes with the adjoint's coefficients (:data:`ADJOINT`):
``split`` of the output gradient gives ``(Re g - Im g, -Re g - Im g, Im g)``, the
gradients of ``a``, ``b`` and ``c``; ``join`` of the three input gradients gives
``(g_a + g_c) + i (g_b + g_c)``. See :mod:`convtranspose.complexops`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import njit

__all__ = ["FORWARD", "ADJOINT", "split", "join", "split3", "join3", "gradient_parts"]

#: :func:`split` to ``(Re, Im, Re + Im)`` and :func:`join` to ``(a - b, c - a - b)``.
FORWARD = 0
#: :func:`split` to ``(Re - Im, -Re - Im, Im)`` and :func:`join` to ``(a + c, b + c)``.
ADJOINT = 1


@njit(inline="always")
def _split_one(src, out, n, c, i, channels, mode):
    re = src[n, c, 2 * i]
    im = src[n, c, 2 * i + 1]
    if mode == 0:
        u, v, s = re, im, re + im
    else:
        u, v, s = re - im, -re - im, im
    out[n, c, i] = u
    out[n, channels + c, i] = v
    out[n, 2 * channels + c, i] = s


@njit(parallel=True, cache=True)
def _split(src, out, mode):
    """``src`` ``(P, C, 2L)``: pairs; ``out`` ``(P, 3C, L)``. Channels-last (``L = 1``): a
    task per pixel; else a task per (image, channel) plane."""
    n_outer, channels, twice = src.shape
    length = twice // 2
    if length == 1:
        for n in prange(n_outer):
            for c in range(channels):
                _split_one(src, out, n, c, 0, channels, mode)
        return
    for t in prange(n_outer * channels):
        n = t // channels
        c = t - n * channels
        for i in range(length):
            _split_one(src, out, n, c, i, channels, mode)


@njit(inline="always")
def _join_one(y3, bias, out, n, c, i, channels, mode):
    a = y3[n, c, i]
    b = y3[n, channels + c, i]
    s = y3[n, 2 * channels + c, i]
    if mode == 0:
        re = a - b + bias[c, 0]
        im = s - a - b + bias[c, 1]
    else:
        re = a + s
        im = b + s
    if not (math.isfinite(re) and math.isfinite(im)):
        re = np.nan
        im = np.nan
    out[n, c, 2 * i] = re
    out[n, c, 2 * i + 1] = im


@njit(parallel=True, cache=True)
def _join(y3, bias, out, mode):
    """``y3`` ``(P, 3C, L)``; ``bias`` ``(C, 2)``; ``out`` ``(P, C, 2L)``: pairs. Tasks as
    in :func:`_split`."""
    n_outer, triple, length = y3.shape
    channels = triple // 3
    if length == 1:
        for n in prange(n_outer):
            for c in range(channels):
                _join_one(y3, bias, out, n, c, 0, channels, mode)
        return
    for t in prange(n_outer * channels):
        n = t // channels
        c = t - n * channels
        for i in range(length):
            _join_one(y3, bias, out, n, c, i, channels, mode)


@njit(cache=True)
def split3(a3, mode, part):
    """:func:`split` of the C-contiguous complex ``a3`` ``(P, C, L)`` (the axis folded):
    ``(P, 3C, L)`` of the real dtype ``part``; callable from ``@njit`` code."""
    p, c, n = a3.shape
    out = np.empty((p, 3 * c, n), part)
    _split(a3.view(part), out, mode)
    return out


@njit(cache=True)
def join3(y3, bias, out3, mode):
    """:func:`join` of the real ``y3`` ``(P, 3C, L)`` into the C-contiguous complex
    ``out3`` ``(P, C, L)``, with ``bias`` ``(C, 2)`` pairs; callable from ``@njit``
    code."""
    _join(np.ascontiguousarray(y3), bias, out3.view(y3.dtype), mode)


@njit(cache=True)
def gradient_parts(g3, out_pairs, bias):
    """The complex gradient of a weight (or, with ``bias``, of a bias) from the real one of
    its three blocks ``g3`` (flat, ``3A`` values: the gradients of ``Re``, ``Im`` and
    ``Re + Im`` in :func:`split`'s order), into ``out_pairs`` (the ``2A`` real values of
    the C-contiguous complex result): ``Re = g_0 + g_2`` and ``Im = g_1 + g_2`` (the bias's
    ``Im = g_2``: its real blocks are ``Re g - Im g``, ``-Re g - Im g``, ``Im g``), every
    element not finite in both parts ``nan+nanj``; callable from ``@njit`` code."""
    a = g3.shape[0] // 3
    for e in range(a):
        re = g3[e] + g3[2 * a + e]
        im = g3[2 * a + e] if bias else g3[a + e] + g3[2 * a + e]
        if not (math.isfinite(re) and math.isfinite(im)):
            re = np.nan
            im = np.nan
        out_pairs[2 * e] = re
        out_pairs[2 * e + 1] = im


def _part(dtype):
    return np.dtype(f"f{dtype.itemsize // 2}")


def _folded(shape, axis):
    """``(P, C, L)``: the sizes before, at and after ``axis``."""
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def split(a, axis, dtype, mode=FORWARD):
    """The complex array ``a`` (any layout and byte order; converted to ``dtype``) as the
    real array of its shape with three times the entries along ``axis``: the real parts,
    the imaginary parts and their sums (``mode=ADJOINT``: ``Re - Im``, ``-Re - Im``,
    ``Im``), C-contiguous.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.pairs import split
    >>> split(np.array([[1 + 2j, 3 + 4j]]), 0, np.dtype(np.complex128))
    array([[1., 3.],
           [2., 4.],
           [3., 7.]])
    """
    a = np.ascontiguousarray(a, dtype)
    p, c, n = _folded(a.shape, axis)
    out = split3(a.reshape(p, c, n), mode, _part(dtype))
    return out.reshape(a.shape[:axis] + (3 * c,) + a.shape[axis + 1:])


def join(y3, axis, dtype, bias=None, out=None, mode=FORWARD):
    """The complex result (of ``dtype``) of the three real results side by side along
    ``axis`` of ``y3`` (:func:`split`'s layout), plus ``bias`` (one per entry along
    ``axis``) in the forward; written into ``out`` when given. Every element not finite in
    both parts is ``nan+nanj``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.pairs import join
    >>> join(np.array([[1.0], [2.0], [np.inf]]), 0, np.dtype(np.complex128))
    array([[nan+nanj]])
    >>> join(np.array([[3.0], [8.0], [10.0]]), 0, np.dtype(np.complex128))
    array([[-5.-1.j]])
    """
    part = _part(dtype)
    p, c3, n = _folded(y3.shape, axis)
    c = c3 // 3
    shape = y3.shape[:axis] + (c,) + y3.shape[axis + 1:]
    direct = out is not None and out.flags.c_contiguous and out.dtype == dtype
    result = out if direct else np.empty(shape, dtype)
    pairs = (np.zeros((c, 2), part) if bias is None else
             np.ascontiguousarray(bias, dtype).view(part).reshape(c, 2))
    join3(np.ascontiguousarray(y3, part).reshape(p, c3, n), pairs, result.reshape(p, c, n),
          mode)
    if out is not None and not direct:
        out[...] = result
        return out
    return result
