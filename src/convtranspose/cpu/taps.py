"""Which kernel taps reach which output pixels: index tables for the CPU kernels.

A transposed convolution sends input pixel ``i`` through kernel tap ``k`` to output
pixel ``o = i*s + k*d - pad_before``. The kernels work in gather form (each output
row is computed by one thread), so they need, for every output row, the taps that
reach it; and for every kernel column, the input columns it touches. These tables
list only taps that land on the stride grid, so no kernel multiplies by an inserted
zero. They are built once per call, in NumPy, from the validated parameters.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

__all__ = ["Taps", "tap_tables"]


class Taps(NamedTuple):
    """Index tables of one problem (all ``int64``).

    Row ``oh`` of the output receives ``row_count[oh]`` taps; tap ``t`` is kernel row
    ``row_k[oh, t]`` applied to input row ``row_i[oh, t]``, in increasing ``row_k``.

    Kernel column ``kw`` maps input columns ``col_lo[kw] <= iw < col_hi[kw]`` to output
    columns ``ow = col_phase[kw] + (col_q0[kw] + iw) * phases``. Kernels accumulate a row
    in a ``(phases, q_len)`` buffer indexed ``[ow % phases, ow // phases]``, so the
    innermost loop runs over contiguous memory for every stride.
    """

    row_count: np.ndarray
    row_k: np.ndarray
    row_i: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    col_phase: np.ndarray
    col_q0: np.ndarray
    phases: int
    q_len: int


def _row_table(out_len, in_len, k, s, d, before):
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


def _col_table(out_len, in_len, k, s, d, before):
    base = np.arange(k, dtype=np.int64) * d - before      # output column of input column 0
    lo = np.maximum(0, -(base // s))                       # ceil(-base / s)
    hi = np.minimum(in_len, (out_len - 1 - base) // s + 1)
    hi = np.maximum(hi, lo)
    return lo, hi, base % s, base // s


@lru_cache(maxsize=256)
def tap_tables(in_hw, k_hw, out_hw, params):
    """Build the :class:`Taps` of one problem from validated ``ConvParams``.

    ``in_hw``, ``k_hw`` and ``out_hw`` are tuples. Results are cached (repeated calls of
    one layer reuse them) and their arrays are read-only.
    """
    (sh, sw), (dh, dw) = params.stride, params.dilation
    rows = _row_table(out_hw[0], in_hw[0], k_hw[0], sh, dh, params.pad_h[0])
    cols = _col_table(out_hw[1], in_hw[1], k_hw[1], sw, dw, params.pad_w[0])
    for a in (*rows, *cols):
        a.flags.writeable = False
    return Taps(*rows, *cols, phases=sw, q_len=-(-out_hw[1] // sw))
