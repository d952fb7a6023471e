"""The weight gradient on the register-blocked GEMM engine (:mod:`convtranspose.cpu.engine`).

The weight gradient of :func:`convtranspose.cpu.backward.weight_grad` (``a`` on the
strided grid, ``b`` sampled: for a transposed convolution ``a = x`` and ``b =
grad_output``, for ``conv2d`` the other way round) is, per group ``g``, one GEMM whose
depth is the pixels ``p = (n, oh, ow)`` of ``a``::

    gw[g*C_a_g + i, j] = sum_p A[i, p] * B[p, j],    j = (cb, kh, kw)
    A[i, p] = a[n, g*C_a_g + i, oh, ow]
    B[p, j] = b[n, g*C_b_g + cb, oh*sH + kh*dH - top, ow*sW + kw*dW - left]

(zero where that lies outside ``b``: those zeros are multiplied, PyTorch's NaN rule for
weight gradients). Both operands are packed block by block, no column matrix, by
:func:`~convtranspose.cpu.engine.weight_grad_kernel`: ``A`` straight from ``a``
(:func:`~convtranspose.cpu.engine.pack_a_pixels`), ``B`` from a zero-bordered
channels-last copy of ``b`` made once per call (the correlation's layout,
:func:`~convtranspose.cpu.engine.pack_b_channels_last`: a tap's channels are a run, copied
a vector at a time), its columns ordered ``(kh, kw, cb)`` and put back into ``gw``'s
``(cb, kh, kw)`` as the partials are added (:func:`_columns_back`). Where the copy does not
fit the workspace limit or costs more than it saves (:func:`copy_pays`: a large weight
over few pixels), ``B`` is sampled from ``b`` itself
(:func:`~convtranspose.cpu.engine.pack_b_sampled`) in ``gw``'s own column order. Where
``b`` has few channels per group (:func:`tap_rows_wins`), the transposed product runs
instead (:mod:`~convtranspose.cpu.tap_rows`, ``a`` from a channels-last copy too). The
three forms sum the same products in the same order: the same bits. The ``direct`` backend runs it for
layers with many channels (:func:`convtranspose.cpu.direct.weight_grad_uses_engine`);
its transposed convolution and correlations run on :mod:`convtranspose.cpu.nd_engine`.

Tasks and order (:func:`plan_weight_grad`): the pixels are cut into at most four ranges
chosen from the shapes alone, each group's columns into blocks of whole micro-panels;
a task sums one range of one block in ascending pixel order per ``KC`` block, blocks in
order, into the gradient (the first range) or that range's partial gradient, and the
partials are then added in range order. So the result depends on neither the threads
(in use, or ``NUMBA_NUM_THREADS``) nor the workspace limit; the batch is part of the sum.

Memory: besides ``gw``, one slot per thread of ``NUMBA_NUM_THREADS`` (the packed ``B``
block, at most ``NC`` columns by ``KC`` pixels, the packed ``A`` block, at most ``MC``
rows by ``KC`` pixels, and an edge tile; fewer columns when the workspace limit divided
among the threads is smaller, never below one micro-panel), where the pixels are cut
into ranges, the partial gradients (all at once when the limit has room for them, else
one weight-sized buffer in turn), and, where they fit within the limit besides those, the
channels-last copies (of ``b`` with its border, of ``a`` for the transposed product) and
one weight-sized product.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .._jit import njit
from .._threading import launch
from . import nd_engine, simd
from . import workspace as _ws
from .engine import MR, blocking, weight_grad_kernel
from .tap_rows import tap_rows_kernel
from .taps import byte_bounded_cache
from .workspace import workspace

__all__ = ["weight_grad", "weight_grad_jit", "plan_weight_grad", "plan_table", "sizes",
           "WeightGradPlan", "copy_pays", "tap_rows_wins"]

#: Tasks wanted per thread.
_TASKS_PER_THREAD = 2


@njit(cache=True, notice=False)
def _split(length, most):
    """``(pieces, size)``: ``range(length)`` cut into the fewest pieces of at most ``most``,
    as even as possible: piece ``i`` starts at ``i * size`` (the last may be shorter)."""
    size = -(-length // -(-length // most))
    return -(-length // size), size


class WeightGradPlan(NamedTuple):
    """Tasks and buffer sizes of one weight gradient on the engine (see
    :func:`~convtranspose.cpu.engine.weight_grad_kernel`)."""

    tasks: np.ndarray     # (group, j0, columns, p0, p1, part) per task
    parts: int            # pixel ranges summed apart, then added in order
    slot: int             # elements of one thread's slot ...
    b_size: int           # ... of which the packed B block
    a_size: int           # ... and the packed A block


#: The tasks a weight gradient's pixel ranges are chosen for, whatever the thread count:
#: the ranges set the summation order, so they come from the problem alone.
_WG_PARTS_FOR = 4


@byte_bounded_cache()
def plan_weight_grad(a_shape, gw_shape, groups, dtype, limit, threads):
    """Build the :class:`WeightGradPlan` of a weight gradient (cached).

    The pixels are cut into ``parts`` ranges (at least two ``KC`` blocks each) whose
    partial gradients the caller adds in order, and each group's ``C_b_g*kH*kW`` columns
    into blocks of whole micro-panels (at most ``NC``). The ranges set the summation order,
    so they depend on the shapes alone: as many as pack the fewest values for
    ``_WG_PARTS_FOR`` tasks (each column block packs all of ``A`` again, each further range
    adds a partial gradient). The column blocks change only the speed: enough for
    ``_TASKS_PER_THREAD`` tasks per thread of ``threads`` (the process's fixed count), and
    narrow enough for every thread's slot to stay within ``limit`` bytes (one
    micro-panel at the least).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.deconv import plan_weight_grad
    >>> plan = plan_weight_grad((64, 128, 16, 16), (128, 64, 4, 4), 1, np.float32, 2**28, 2)
    >>> plan.parts, len(plan.tasks)          # 4 pixel ranges: A (128 rows) packed once
    (4, 4)
    """
    n, c_a, h_o, w_o = a_shape
    tasks, parts, slot, b_size, a_size = plan_table(
        n * h_o * w_o, c_a, gw_shape[1] * gw_shape[2] * gw_shape[3], groups,
        sizes(dtype), limit // np.dtype(dtype).itemsize, threads)
    tasks.flags.writeable = False
    return WeightGradPlan(tasks, parts, slot, b_size, a_size)


@njit(inline="always")
def _blocks(panels, groups, parts, want, cols, widest):
    """Column blocks per group: enough for ``want`` tasks over ``parts`` pixel ranges, and
    blocks no wider than ``widest`` columns."""
    return max(min(panels, -(-want // (groups * parts))), -(-cols // widest))


def sizes(dtype):
    """``(KC, MC, NC, NR, line)`` for ``dtype``: the engine's blocking, its micro-tile's
    columns and the elements in a 64-byte cache line; the constants :func:`plan_table`
    and :func:`weight_grad_jit` take (``@njit`` code gets them from Python, where the
    SIMD width of the process is known)."""
    return (*blocking(dtype), simd.tile(dtype)[1], _cache_line(dtype))


@njit(cache=True, notice=False)
def plan_table(pixels, c_a, cols, groups, sizes, limit, threads):
    """The arithmetic of :func:`plan_weight_grad`, callable from ``@njit`` code: ``(tasks,
    parts, slot, b_size, a_size)`` for ``pixels`` (at least 1) pixels of ``a``, ``C_a``
    rows, ``cols`` (``C_b_g*kH*kW``) columns, the constants :func:`sizes`, and a
    workspace limit of ``limit`` elements among ``threads`` threads."""
    kc, mc, nc, nr, line = sizes
    panels = -(-cols // nr)
    c_a_g = c_a // groups
    kb = min(kc, pixels)
    a_size = -(-kb * -(-min(mc, c_a_g) // MR) * MR // line) * line
    fixed = a_size + MR * nr + line
    # the most columns per block that keep every thread's slot within the limit
    room = limit // threads - fixed
    most = max(nr, min(nc, room // max(kb, 1) // nr * nr))
    # values packed (A once per column block) and partials added, for each pixel cut
    top = max(1, min(_WG_PARTS_FOR, pixels // (2 * kc)))
    parts, cost = 1, -1
    for p in range(1, top + 1):
        packed = (pixels * (_blocks(panels, groups, p, _WG_PARTS_FOR, cols, nc) * c_a_g + cols)
                  + 2 * (p - 1) * c_a * cols)
        if cost < 0 or packed < cost:
            parts, cost = p, packed
    n_blocks = _blocks(panels, groups, parts, _TASKS_PER_THREAD * threads, cols, most)
    ranges, size = _split(pixels, -(-pixels // parts))
    pieces, q_size = _split(panels, -(-panels // n_blocks))
    tasks = np.empty((ranges * groups * pieces, 6), np.int64)
    t, nb_max = 0, 0
    for part in range(ranges):
        p0 = part * size
        for g in range(groups):
            for b in range(pieces):
                j0 = b * q_size * nr
                nb = min(cols, j0 + min(q_size, panels - b * q_size) * nr) - j0
                tasks[t] = (g, j0, nb, p0, min(pixels, p0 + size), part)
                nb_max = max(nb_max, nb)
                t += 1
    b_size = -(-kb * -(-nb_max // nr) * nr // line) * line
    return tasks, ranges, b_size + a_size + MR * nr, b_size, a_size


def _cache_line(dtype):
    """Elements of ``dtype`` in a 64-byte cache line (slots and their parts start on one)."""
    return 64 // np.dtype(dtype).itemsize


def weight_grad(a, b, gw, stride, dilation, before, groups):
    """``gw`` = the weight gradient of ``a`` on the strided grid against ``b`` sampled,
    on the engine (see :func:`convtranspose.cpu.backward.weight_grad` for the operator).

    Parameters
    ----------
    a : ndarray, shape (N, C_a, H_o, W_o)
    b : ndarray, shape (N, C_b, H, W)
        Of ``gw``'s dtype and native byte order, in any layout (a channels-first view of
        channels-last memory is read as it is where the kernel lays it out channels-last;
        else copied C-contiguous).
    gw : ndarray, shape (C_a, C_b // groups, kH, kW)
        Written; C-contiguous, float32 or float64.
    stride, dilation, before : pair of int
        ``before`` is the padding ``(top, left)``.
    groups : int

    Returns
    -------
    ndarray
        ``gw``. Every product is taken, a zero read outside ``b`` too (so an Inf in ``a``
        there gives NaN, as in PyTorch).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.deconv import weight_grad
    >>> a = np.ones((1, 1, 2, 2)); b = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> weight_grad(a, b, np.empty((1, 1, 2, 2)), (2, 2), (1, 1), (0, 0), 1)[0, 0].tolist()
    [[20.0, 24.0], [36.0, 40.0]]
    """
    if a.size == 0 or gw.size == 0:
        gw[...] = 0
        return gw
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    limit = _ws.get_workspace_limit()
    plan = plan_weight_grad(a.shape, gw.shape, groups, gw.dtype, limit, threads)
    kc, mc, _ = blocking(gw.dtype)
    k_h, k_w = gw.shape[2:]
    # every partial at once where the limit has room for them, else one after the other
    # through one buffer: the same sums in the same order either way
    at_once = ((plan.parts - 1) * gw.size + threads * plan.slot) * gw.itemsize <= limit
    rounds = [plan.tasks] if at_once else _one_part_each(plan.tasks, plan.parts)
    held = plan.parts - 1 if at_once else min(1, plan.parts - 1)
    copy = _channels_last_copy(a.shape, b.shape, gw.shape, stride, dilation, before, groups)
    c_a, c_b_g = gw.shape[:2]
    taps = k_h * k_w
    base = threads * plan.slot + held * gw.size + gw.size + copy.size
    wins = tap_rows_wins(c_a // groups, c_b_g)
    fits = base * gw.itemsize <= limit and (
        wins or not b.flags.c_contiguous
        or copy_pays(a.shape[0] * a.shape[2] * a.shape[3], c_b_g * taps, b.size, gw.size))
    extra = a.size + 2 * simd.lanes(gw.dtype)       # the transposed product's copy of a
    rows = fits and wins and (base + extra) * gw.itemsize <= limit
    extra = extra if rows else 0
    with workspace(gw.dtype, threads * plan.slot, held * gw.size,
                   gw.size + copy.size + extra if fits else 0) as (ws, rest, more):
        if fits:    # B read from a channels-last copy of b, its columns (kh, kw, cb)
            flat, bb = more[:gw.size], more[gw.size:gw.size + copy.size]
            nd_engine.relayout(b[:, :, None], (0, *copy.front), (0, *copy.back), False,
                               into=bb)
            col_off, geo = copy.col_off, copy.geo
            if rows:    # and A from one of a: the transposed product, [g][(kh, kw, cb)][ca]
                xa = more[gw.size + copy.size:]
                xa[a.size:] = 0
                nd_engine.relayout(a[:, :, None], (0, 0, 0), (0, 0, 0), False, into=xa)
                strides = (1, c_b_g * (c_a // groups), c_a // groups)
            else:       # [ca][(kh, kw, cb)]
                strides = (taps * c_b_g, c_b_g, 1)
        else:       # B sampled from b itself, its columns gw's own (cb, kh, kw)
            flat, bb = gw.reshape(-1), ws[:0]
            col_off, geo = _NO_COPY, _NO_COPY[0]
            b = np.ascontiguousarray(b)
        if fits:        # no image: the kernel reads only b's channels from its shape
            b = np.ascontiguousarray(b[:0])
        if not (fits and rows):         # A packed from channels-first a
            a = np.ascontiguousarray(a)
        for r, tasks in enumerate(rounds):
            if fits and rows:
                launch(tap_rows_kernel, xa, c_a, bb, col_off, geo, flat, rest, tasks, kc)
            else:
                launch(weight_grad_kernel, a, b, flat, rest, tasks, k_w, taps, *stride,
                       *dilation, *before, groups, kc, mc, ws, plan.slot, plan.b_size,
                       plan.a_size, bb, col_off, geo)
            if fits and at_once:
                break           # the partials are added as the columns are put back
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, silently
                for p in range(held if at_once else min(r, 1)):  # partial sums, in order
                    flat += rest[p * gw.size:(p + 1) * gw.size]
        if fits:    # the columns back to (cb, kh, kw): the same sums in the same order
            launch(_columns_back, flat, rest, held if at_once else 0,
                   gw.reshape(c_a, c_b_g, taps), groups, strides)
    return gw


#: :func:`tap_rows_wins`: ``b``'s channels per group at most, and ``a``'s at least, where
#: the taps-as-rows kernel runs. Measured (2 threads, float32, AVX-512): 1.2-2.0x faster
#: than the macro-kernel with ``b``'s 1, 3, 8 and 16 channels (``fsrcnn_up``, ``dcgan_g5``,
#: a stem's 7x7 weight gradient, ``stride1_big``), 1.2x slower with 24 against 24.
_ROWS_MOST_C_B = 16
_ROWS_FROM_C_A = 16


#: :func:`copy_pays`: packed values per value copied at and above which ``B`` comes from
#: the channels-last copy.
_COPY_PAYS_FROM = 0.8


def copy_pays(pixels, cols, b_size, gw_size):
    """Whether :func:`weight_grad` packs ``B`` from a channels-last copy of a C-contiguous
    ``b`` rather than sampling ``b`` itself: where the values packed (``pixels * cols``, a
    group's) are many against the values the copy moves (``b`` once, the product twice:
    written, then put back into ``gw``'s order). Measured (float32, 2 threads): the copy
    is 1.05-1.8x faster on ``dcgan_g2`` (0.80), ``dcgan_g3`` (2.7) and ``vae_dec`` (3.7),
    sampling 1.05-2.6x faster on ``unet_up1`` (0.28), HiFi-GAN's 1-D layers (0.03 at batch
    1, 0.40 at 16), MelGAN's (0.67) and U-Net's second up-convolution (0.75).

    Examples
    --------
    >>> from convtranspose.cpu.deconv import copy_pays
    >>> copy_pays(4096, 2048, 2**21, 2**19), copy_pays(784, 2048, 1605632, 2**21)
    (True, False)
    """
    return pixels * cols >= _COPY_PAYS_FROM * (b_size + 2 * gw_size)


def tap_rows_wins(c_a_g, c_b_g):
    """Whether :func:`weight_grad` runs :mod:`~convtranspose.cpu.tap_rows`' kernel (the
    same bits, another speed): where ``b`` has few channels per group and ``a`` enough
    to fill the vectors."""
    return c_b_g <= _ROWS_MOST_C_B and c_a_g >= _ROWS_FROM_C_A


@njit(cache=True, parallel=True)
def _columns_back(flat, rest, parts, gw3, groups, strides):
    """``gw3[ca, cb, t] = flat[k] + rest[0][k] + ... + rest[parts - 1][k]`` for ``k =
    g*C_a_g*C_b_g*taps + i*si + t*st + cb*sc`` (``ca = g*C_a_g + i``, ``strides = (si, st,
    sc)``: the layout the kernel wrote), added left to right as :func:`weight_grad` adds
    the partials in place (no fast-math: the order is the result's); ``flat`` and each
    ``rest`` block of ``gw3.size``."""
    c_a, c_b_g, taps = gw3.shape
    c_a_g = c_a // groups
    size = gw3.size
    for ca in numba.prange(c_a):
        g = ca // c_a_g
        row = g * c_a_g * c_b_g * taps + (ca - g * c_a_g) * strides[0]
        for cb in range(c_b_g):
            for t in range(taps):
                k = row + t * strides[1] + cb * strides[2]
                v = flat[k]
                for p in range(parts):
                    v += rest[p * size + k]
                gw3[ca, cb, t] = v


_NO_COPY = np.zeros((1, 1), np.int64)
_NO_COPY.flags.writeable = False


class ChannelsLastCopy(NamedTuple):
    """Where :func:`weight_grad` reads ``B`` from a zero-bordered channels-last copy of
    ``b``: the copy's border (height and width), its size, each group's column offsets
    ``col_off[g, j]`` for columns ``j = (kh, kw, cb)`` and the pixel geometry of
    :func:`~convtranspose.cpu.engine.pack_b_channels_last`."""

    front: tuple
    back: tuple
    size: int
    col_off: np.ndarray
    geo: np.ndarray


@byte_bounded_cache()
def _channels_last_copy(a_shape, b_shape, gw_shape, stride, dilation, before, groups):
    """The :class:`ChannelsLastCopy` of one problem (cached): the border holds every read
    ``oh*sH + kh*dH - top`` (and along the width), so nothing is tested per value."""
    n, _, h_o, w_o = a_shape
    _, c_b, h, w = b_shape
    c_b_g, k_h, k_w = gw_shape[1:]
    front, back, grid = [], [], []
    for size, out, k, s, d, lo in ((h, h_o, k_h, stride[0], dilation[0], before[0]),
                                   (w, w_o, k_w, stride[1], dilation[1], before[1])):
        f = max(0, lo)
        front.append(f)
        back.append(max(0, (out - 1) * s + (k - 1) * d - lo - (size - 1)))
        grid.append(size + f + back[-1])
    hp, wp = grid
    taps = np.arange(k_h * k_w)
    tap_off = ((taps // k_w) * dilation[0] * wp + (taps % k_w) * dilation[1]) * c_b
    col_off = (tap_off[None, :, None] + np.arange(groups)[:, None, None] * c_b_g
               + np.arange(c_b_g)[None, None, :]).reshape(groups, -1)
    geo = np.array([h_o, w_o, hp, wp, c_b, stride[0], stride[1], front[0] - before[0],
                    front[1] - before[1]], np.int64)
    for t in (col_off, geo):
        t.flags.writeable = False
    return ChannelsLastCopy(tuple(front), tuple(back), n * hp * wp * c_b, col_off, geo)


@njit(cache=True, notice=False)
def weight_grad_jit(a, b, gw, stride, dilation, before, groups, sizes, threads):
    """:func:`weight_grad` from ``@njit`` code: the same tasks (:func:`plan_table`) and
    the same sums in the same order, bitwise; ``stride``, ``dilation`` and ``before``
    arrays or tuples of 2, ``sizes`` :func:`sizes` of the dtype, ``threads`` the process's
    ``NUMBA_NUM_THREADS``. No workspace limit: every partial gradient at once, and the
    widest column blocks (which change only the speed)."""
    if a.size == 0 or gw.size == 0:
        gw[...] = 0
        return
    k_h, k_w = gw.shape[2], gw.shape[3]
    kc, mc = sizes[0], sizes[1]
    tasks, parts, slot, b_size, a_size = plan_table(
        a.shape[0] * a.shape[2] * a.shape[3], a.shape[1], gw.shape[1] * k_h * k_w, groups,
        sizes, 2 ** 60, threads)
    flat = gw.reshape(gw.size)
    rest = np.empty((parts - 1) * gw.size, gw.dtype)
    weight_grad_kernel(a, b, flat, rest, tasks, k_w, k_h * k_w, stride[0], stride[1],
                       dilation[0], dilation[1], before[0], before[1], groups, kc, mc,
                       np.empty(threads * slot, gw.dtype), slot, b_size, a_size,
                       np.empty(0, gw.dtype), np.zeros((1, 1), np.int64),
                       np.zeros(1, np.int64))
    for p in range(parts - 1):
        flat += rest[p * gw.size:(p + 1) * gw.size]


def _one_part_each(tasks, parts):
    """The tasks of each pixel range in turn, the later ones writing partial block 0."""
    rounds = []
    for p in range(parts):
        sub = tasks[tasks[:, 5] == p].copy()
        sub[:, 5] = min(p, 1)
        rounds.append(sub)
    return rounds
