"""Which kernel taps reach which output pixels: index tables for the CPU kernels.

A transposed convolution sends input pixel ``i`` through kernel tap ``k`` to output
pixel ``o = i*s + k*d - pad_before``. The kernels work in gather form (each output
row is computed by one thread), so they need, for every output row, the taps that
reach it; and for every kernel column, the input columns it touches. The row taps are
index arithmetic in the kernels (:func:`input_span` bounds it for a band of rows); the column
tables below have one entry per kernel column. Only taps that land on the stride grid
are used, so no kernel multiplies by an inserted zero. Nothing here grows with the
output: the tables are ``O(kW)``, and the caches are bounded by bytes
(:func:`byte_bounded_cache`).
"""
from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np

from .._jit import njit

__all__ = ["Taps", "tap_tables", "tap_inputs", "input_span", "byte_bounded_cache"]

#: Bytes each cache of index tables and plans may keep, and the bytes an entry is
#: counted for besides its arrays (so that the number of entries is bounded too).
CACHE_BYTES = 16 * 2**20
_ENTRY_BYTES = 1024


def _nbytes(value):
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 0


def byte_bounded_cache(max_bytes=CACHE_BYTES):
    """Decorator: an LRU cache of a function of hashable arguments, bounded by bytes.

    An entry counts the bytes of the arrays in its value (in nested tuples) plus
    ``_ENTRY_BYTES``; least recently used entries are dropped to keep the total at most
    ``max_bytes``, and a value larger than that is returned but not kept. Thread-safe;
    the wrapper has ``cache_clear()`` and ``cache_bytes()``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.taps import byte_bounded_cache
    >>> @byte_bounded_cache(10_000)
    ... def table(n):
    ...     return np.arange(n)
    >>> table(3) is table(3), table(10_000) is table(10_000)
    (True, False)
    >>> table.cache_bytes() <= 10_000
    True
    """
    def decorate(func):
        # re-entrant: a signal handler may compute while this thread updates the cache
        entries, lock, total = OrderedDict(), threading.RLock(), [0]

        @functools.wraps(func)
        def wrapper(*args):
            hit = entries.get(args)       # one C call: no lock on the hot path
            if hit is not None:
                try:
                    entries.move_to_end(args)
                except KeyError:          # dropped by another thread meanwhile
                    pass
                return hit[0]
            value = func(*args)
            size = _nbytes(value) + _ENTRY_BYTES
            with lock:
                if size <= max_bytes and args not in entries:
                    entries[args] = (value, size)
                    total[0] += size
                    while total[0] > max_bytes:
                        total[0] -= entries.popitem(last=False)[1][1]
            return value

        def cache_clear():
            with lock:
                entries.clear()
                total[0] = 0

        wrapper.cache_clear = cache_clear
        wrapper.cache_bytes = lambda: total[0]
        return wrapper
    return decorate


class Taps(NamedTuple):
    """Index arithmetic and tables of one problem, in the order the kernels take them.

    Output row ``oh`` receives kernel row ``kh`` from input row ``(oh + top - kh*d_h) /
    s_h`` where that is an integer in ``[0, H)``, in increasing ``kh``.

    Kernel column ``kw`` maps input columns ``col_lo[kw] <= iw < col_hi[kw]`` to output
    columns ``ow = col_phase[kw] + (col_q0[kw] + iw) * phases``. Kernels accumulate a row
    in a ``(phases, q_len)`` buffer indexed ``[ow % phases, ow // phases]`` (fewer than
    ``2 * W_out`` elements), so the innermost loop runs over contiguous memory for every
    stride. The column tables are read-only ``int64`` arrays of ``kW`` entries.
    """

    s_h: int
    d_h: int
    top: int
    col_lo: np.ndarray
    col_hi: np.ndarray
    col_phase: np.ndarray
    col_q0: np.ndarray
    phases: int
    q_len: int


def tap_inputs(out_len, in_len, k, s, d, before):
    """Per kernel index ``kk``, the inputs ``lo[kk] <= i < hi[kk]`` (``int64`` arrays of
    ``k``; ``hi == lo`` when none) whose output ``i*s + kk*d - before`` lies in
    ``[0, out_len)``.

    Examples
    --------
    >>> from convtranspose.cpu.taps import tap_inputs
    >>> lo, hi = tap_inputs(3, 4, 2, 2, 1, 1)     # outputs 2i - 1 and 2i, kept in [0, 3)
    >>> lo.tolist(), hi.tolist()
    ([1, 0], [2, 2])
    """
    return _tap_inputs(out_len, in_len, k, s, d, before)


@njit(cache=True, notice=False)
def _tap_inputs(out_len, in_len, k, s, d, before):
    base = np.arange(k) * d - before                       # output of input 0
    lo = np.minimum(in_len, np.maximum(0, -(base // s)))   # ceil(-base / s)
    hi = np.minimum(in_len, (out_len - 1 - base) // s + 1)
    return lo, np.maximum(hi, lo)


def input_span(out_lo, out_hi, in_len, k, s, d, before):
    """``(i_a, i_b)``: the least and one past the greatest input that some kernel index
    sends into outputs ``[out_lo, out_hi)``; ``(0, 0)`` when none does. ``O(k)``.

    Examples
    --------
    >>> from convtranspose.cpu.taps import input_span
    >>> input_span(4, 6, 10, 3, 2, 1, 0)         # 2i + kk in {4, 5}: i = 1 (kk 2), 2 (kk 0, 1)
    (1, 3)
    """
    lo, hi = tap_inputs(out_hi - out_lo, in_len, k, s, d, before + out_lo)
    hit = hi > lo
    return (int(lo[hit].min()), int(hi[hit].max())) if hit.any() else (0, 0)


def _row_table(out_len, in_len, k, s, d, before):
    """``(count, k_idx, i_idx)``: per output position, how many taps reach it, and their
    kernel and input indices, in increasing kernel index (the CUDA gather kernel's
    tables, ``(out_len, k)``)."""
    count = np.zeros(out_len, np.int64)
    k_idx = np.zeros((out_len, k), np.int64)
    i_idx = np.zeros((out_len, k), np.int64)
    i = np.arange(in_len)
    for kk in range(k):
        o = i * s + kk * d - before
        hit = (o >= 0) & (o < out_len)
        o_hit = o[hit]               # distinct for a fixed kk, since s >= 1
        k_idx[o_hit, count[o_hit]] = kk
        i_idx[o_hit, count[o_hit]] = i[hit]
        count[o_hit] += 1
    return count, k_idx, i_idx


@byte_bounded_cache()
def tap_tables(in_hw, k_hw, out_hw, params):
    """Build the :class:`Taps` of one problem from validated ``ConvParams``.

    ``in_hw``, ``k_hw`` and ``out_hw`` are tuples. Results are cached (repeated calls of
    one layer reuse them; the cache is bounded by bytes) and their arrays are read-only.
    """
    (sh, sw), (dh, dw) = params.stride, params.dilation
    lo, hi, phase, q0, phases, q_len = col_tables(out_hw[1], in_hw[1], k_hw[1], sw, dw,
                                                  params.pad_w[0])
    for a in (lo, hi, phase, q0):
        a.flags.writeable = False
    return Taps(sh, dh, params.pad_h[0], lo, hi, phase, q0, phases=int(phases),
                q_len=int(q_len))


@njit(cache=True, notice=False)
def col_tables(w_out, w_in, k_w, sw, dw, left):
    """The column tables of :class:`Taps` and its ``phases`` and ``q_len`` for one row of
    ``w_in`` inputs and ``w_out`` outputs; callable from ``@njit`` code."""
    lo, hi = _tap_inputs(w_out, w_in, k_w, sw, dw, left)
    base = np.arange(k_w) * dw - left                     # output column of input column 0
    phase, q0 = base % sw, base // sw
    if sw > w_out:
        # A stride wider than the output row: each kernel column hits at most one output
        # column, so a (W_out, 1) accumulator replaces a (stride, 1) one that could be huge.
        hit = hi > lo
        phase = np.where(hit, phase + q0 * sw + lo * sw, 0)   # the output column it hits
        q0 = np.where(hit, -lo, 0)
        return lo, hi, phase, q0, w_out, 1
    return lo, hi, phase, q0, sw, (w_out + sw - 1) // sw
