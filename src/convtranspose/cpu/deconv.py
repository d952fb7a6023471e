"""A transposed convolution on the packed GEMM engine, per stride phase (issue 11).

The output splits into ``sH*sW`` sub-pixel phases (XNNPACK's sub-convolution
deconvolution; Zhang, Franchetti & Low, ICML 2018, and the phase form of
:mod:`convtranspose.cpu.im2col`): phase ``(o0r, o0c)`` owns the output pixels ``(o0r +
sH*a, o0c + sW*b)`` and receives only the kernel taps whose inputs land there, each tap
``(th, tw)`` reading input pixel ``(off_r[th] + a, off_c[tw] + b)``
(:func:`~convtranspose.cpu.im2col.phase_plan`, ``O(kernel)``). Per phase and group it is
one GEMM::

    C (C_out_g, pixels) = A (C_out_g, C_in_g*taps) @ B (C_in_g*taps, pixels)

computed by :mod:`convtranspose.cpu.engine`'s micro-kernel, with packing that reads the
operands in place:

* ``A``, the phase's taps of the weight, is packed once per call for every (phase,
  group) (:func:`~convtranspose.cpu.engine.pack_a_phases`), which also counts weights
  that are not finite;
* ``B`` is packed block by block straight from ``x``
  (:func:`~convtranspose.cpu.engine.pack_b_from_input_phase`): zeros where a tap reads
  outside the input, no column matrix, no product with an inserted zero;
* the store adds the bias and writes each pixel of ``C`` to its place in ``out``.

``x`` and ``out`` may be in any dense layout, channels-first or channels-last
(:mod:`convtranspose.cpu.layout`): the packing and the store read and write them in
place through their strides.
  Phases that no tap reaches hold only the bias.

Tasks and order: each (phase, group)'s pixels are cut into tasks of whole images, bands
of phase rows, or pieces of one phase row, at most ``cols`` GEMM columns each (see
:func:`plan_deconv`); Numba runs them in parallel (``prange``). The tasks depend on the
problem and on the process's fixed ``NUMBA_NUM_THREADS``, never on
``numba.set_num_threads``, and own disjoint outputs; every output element is summed in
ascending ``k = (channel, tap)`` within each ``KC`` block of the engine, blocks in order,
then the bias added. So results are bitwise the same for any thread count in use, any
batch size (an image's pixels come out the same in any batch) and any cut into tasks.

Memory: besides the output, one call uses the packed weight, ``Mp * C_in * T`` elements
(``Mp`` = ``C_out_g`` rounded up to the micro-tile's 6 rows, ``T`` = taps per phase,
summed over phases: at most ``kH*kW``), and per thread of ``NUMBA_NUM_THREADS`` one slot
of ``KC*ceil(cols/NR)*NR + C_out_g*cols + MR*NR`` elements (packed ``B`` block, the
task's ``C``, an edge tile), where ``cols <= NC`` of :func:`~convtranspose.cpu.engine.blocking`
and ``(KC + C_out_g) * cols <= 2**20`` (or the workspace limit, whichever is less;
never below one micro-panel, ``NR``, of columns): 4-8 MiB per thread. Planning costs
``O(kernel + tasks)``; nothing is indexed per output pixel.

Non-finite weights: the zeros packed for taps that read outside the input meet the
weights, and ``0 * inf`` is NaN where the definition multiplies no such pair. When a
packed weight is Inf or NaN, :func:`compute` computes nothing and returns ``False``;
:func:`convtranspose.cpu.direct.run_engine` then runs the gather kernel, which multiplies
real (input, tap) pairs only. The ``direct`` backend runs this engine for layers with
many channels (:func:`convtranspose.cpu.direct.uses_engine`).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .._threading import launch
from . import simd
from . import workspace as _ws
from .engine import MR, blocking, deconv_kernel, pack_a_phases, weight_grad_kernel
from .im2col import _Phase, phase_plan
from .layout import geometry
from .taps import byte_bounded_cache
from .workspace import workspace

__all__ = ["compute", "correlate", "weight_grad", "plan_deconv", "plan_correlate",
           "plan_weight_grad", "DeconvPlan", "WeightGradPlan"]

#: Tasks wanted per thread, and the fewest GEMM columns worth a task of their own.
_TASKS_PER_THREAD = 2
_MIN_TASK_COLS = 256
#: Elements of a thread's packed ``B`` block plus its ``C`` (per GEMM column,
#: ``KC + C_out_g`` of them) that a task aims at.
_SLOT_ELEMENTS = 2**20


class DeconvPlan(NamedTuple):
    """Tables and tasks of one problem (see :func:`~convtranspose.cpu.engine.deconv_kernel`)."""

    s_h: int              # output rows (columns) between a phase's pixels
    s_w: int
    in_h: int             # input rows (columns) between a phase's neighbouring pixels' reads
    in_w: int
    meta: np.ndarray      # per phase with taps: o0r, o0c, rows, cols, T_h, T_w, r0, c0, a_off
    tasks: np.ndarray     # (phase, group, n0, images, a0, rows, b0, cols) per task
    bias_only: bool       # whether some phases get no tap (they hold only the bias)
    k_rows: np.ndarray    # kernel rows (columns) of each phase's taps, phase p's from
    k_cols: np.ndarray    # meta[p, 6] (meta[p, 7]) on, T_h (T_w) of them ...
    off_rows: np.ndarray  # ... and the input row (column) each reads for phase pixel 0
    off_cols: np.ndarray
    a_size: int           # elements of the packed weights
    slot: int             # elements of one thread's slot
    b_size: int           # of which the packed B block


def _split(length, most):
    """``[(start, size)]`` cutting ``range(length)`` into the fewest pieces of at most
    ``most``, as even as possible."""
    pieces = -(-length // most)
    size = -(-length // pieces)
    return [(s, min(size, length - s)) for s in range(0, length, size)]


def _rects(n, rows, cols, target):
    """Task rectangles ``(n0, images, a0, rows, b0, cols)`` of one phase's pixels, about
    ``target`` GEMM columns each and never more."""
    per_img = rows * cols
    if per_img <= target:
        m = max(1, min(n, target // per_img))
        return [(n0, size, 0, rows, 0, cols) for n0, size in _split(n, m)]
    if cols <= target:
        return [(i, 1, a0, size, 0, cols) for i in range(n)
                for a0, size in _split(rows, target // cols)]
    return [(i, 1, a, 1, b0, size) for i in range(n) for a in range(rows)
            for b0, size in _split(cols, target)]


def _table(rows, width=None):
    """A read-only ``int64`` array of ``rows`` (``width`` columns when given)."""
    a = np.array(rows, np.int64)
    a = a.reshape(-1, width) if width else a
    a.flags.writeable = False
    return a


@byte_bounded_cache()
def plan_deconv(x_shape, w_shape, params, out_hw, dtype, limit, threads, cols=None):
    """Build the :class:`DeconvPlan` of one transposed convolution (cached).

    Each (phase, group)'s ``N * rows * cols`` GEMM columns are cut into tasks (whole
    images, else bands of phase rows, else pieces of one phase row) of about
    ``_TASKS_PER_THREAD * threads`` per problem and at least ``_MIN_TASK_COLS`` columns
    where the problem allows, and never more than ``cols`` columns (default: ``NC``, and
    what keeps a thread's slot within ``_SLOT_ELEMENTS`` and ``limit / threads`` bytes).
    ``threads`` is the process's fixed thread count, so the tasks, and the results, do
    not change with ``numba.set_num_threads``; the cut does not change the results anyway.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import normalise
    >>> from convtranspose.cpu.deconv import plan_deconv
    >>> params, shape, _ = normalise((1, 2, 3, 3), (2, 4, 2, 2), None, [np.dtype(np.float32)] * 2,
    ...                              stride=2)
    >>> plan = plan_deconv((1, 2, 3, 3), (2, 4, 2, 2), params, shape[2:], np.float32,
    ...                    2**28, 2)
    >>> len(plan.meta), plan.tasks[:, 0].tolist()       # 4 phases, 1 tap each
    (4, [0, 1, 2, 3])
    """
    (s_h, rows, n_rows), (s_w, cols_ph, n_cols) = phase_plan(x_shape[2:], w_shape[2:], out_hw,
                                                             params, keep_all=True)
    work = [(pr, pc) for pr in rows for pc in cols_ph]
    return _plan(work, (s_h, s_w), (1, 1), len(work) < n_rows * n_cols, x_shape[0], x_shape[1],
                 w_shape[1], params.groups, dtype, limit, threads, cols)


@byte_bounded_cache()
def plan_correlate(x_shape, w_shape, stride, dilation, before, groups, out_hw, dtype, limit,
                   threads, cols=None):
    """Build the :class:`DeconvPlan` of one correlation (cached): ``conv2d``'s forward, or
    a transposed convolution's input gradient.

    ``w_shape`` is the correlation's ``(C_out, C_in // groups, kH, kW)``; ``stride``,
    ``dilation`` and ``before`` (the padding ``(top, left)``) are pairs. Its one phase
    is the whole output (stored with unit steps); tap ``(kh, kw)`` of output pixel
    ``(a, b)`` reads input pixel ``(kh*dH - top + sH*a, kw*dW - left + sW*b)``, so the
    packing reads the input with the stride. Every pixel has every tap (zeros packed where
    it reads outside), so its sum is the same whatever the tiling. Tasks are cut as in
    :func:`plan_deconv`.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.deconv import plan_correlate
    >>> plan = plan_correlate((1, 2, 5, 5), (4, 2, 3, 3), (2, 2), (1, 1), (1, 1), 1, (3, 3),
    ...                       np.float32, 2**28, 2)
    >>> plan.meta[0, :6].tolist(), plan.off_rows.tolist(), (plan.in_h, plan.in_w)
    ([0, 0, 3, 3, 3, 3], [-1, 0, 1], (2, 2))
    """
    axes = [_Phase(0, size, tuple(range(k)), tuple(j * d - b for j in range(k)))
            for size, k, d, b in zip(out_hw, w_shape[2:], dilation, before)]
    return _plan([tuple(axes)], (1, 1), tuple(stride), False, x_shape[0], w_shape[1] * groups,
                 w_shape[0] // groups, groups, dtype, limit, threads, cols)


def _plan(work, out_step, in_step, bias_only, n, c_in, c_out_g, groups, dtype, limit, threads,
          cols):
    """The :class:`DeconvPlan` of the phases ``work`` (pairs of row and column
    :class:`~convtranspose.cpu.im2col._Phase`), outputs ``out_step`` apart, inputs read
    ``in_step`` apart."""
    c_in_g = c_in // groups
    dtype = np.dtype(dtype)
    kc, _, nc = blocking(dtype)
    nr = simd.tile(dtype)[1]
    mp = -(-c_out_g // MR) * MR
    k_max = c_in_g * max([len(pr.k_idx) * len(pc.k_idx) for pr, pc in work], default=1)
    kb = min(kc, k_max)
    per_col = kb + c_out_g
    cap = min(nc, _SLOT_ELEMENTS // per_col, limit // (threads * per_col * dtype.itemsize))
    cap = max(nr, cap if cols is None else min(cap, cols))
    want = -(-threads * _TASKS_PER_THREAD // max(1, len(work) * groups))
    meta, tasks, k_rows, k_cols, off_rows, off_cols = [], [], [], [], [], []
    a_off = nb_max = 0
    for p, (pr, pc) in enumerate(work):
        target = min(cap, max(_MIN_TASK_COLS, -(-n * pr.count * pc.count // want)))
        rects = _rects(n, pr.count, pc.count, target)
        tasks += [(p, g, *r) for g in range(groups) for r in rects]
        nb_max = max([nb_max] + [m * n_a * n_b for _, m, _, n_a, _, n_b in rects])
        meta.append((pr.o0, pc.o0, pr.count, pc.count, len(pr.k_idx), len(pc.k_idx),
                     len(k_rows), len(k_cols), a_off))
        a_off += mp * c_in * len(pr.k_idx) * len(pc.k_idx)
        k_rows += pr.k_idx
        k_cols += pc.k_idx
        off_rows += pr.offsets
        off_cols += pc.offsets
    line = _cache_line(dtype)
    b_size = -(-kb * -(-nb_max // nr) * nr // line) * line
    slot = -(-(b_size + c_out_g * nb_max + MR * nr) // line) * line
    return DeconvPlan(*out_step, *in_step, _table(meta, 9), _table(tasks, 8), bias_only,
                      _table(k_rows), _table(k_cols), _table(off_rows), _table(off_cols),
                      a_off, slot, b_size)


def compute(x, weight, bias, params, out, *, cols=None):
    """Compute into ``out`` with the engine; ``False`` (and ``out`` untouched) when a
    weight tap that some phase uses is Inf or NaN.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    weight : ndarray, shape (C_in, C_out // groups, kH, kW)
    bias : ndarray, shape (C_out,), or None
    params : convtranspose.params.ConvParams
    out : ndarray, shape (N, C_out, H_out, W_out)
        Of one dtype (float32 or float64); ``weight`` and ``bias`` C-contiguous, ``x``
        and ``out`` in any dense layout (:func:`~convtranspose.cpu.layout.dense`).
    cols : int, optional
        Most GEMM columns (output pixels of one phase) per task; changes the speed only.

    Returns
    -------
    bool
        ``True`` when ``out`` holds the result. ``False`` when a packed weight is not
        finite: then the zeros packed for taps outside the input would give ``0 * inf =
        nan`` where the definition has none, and the caller should use a backend that
        multiplies real pairs only (:func:`~convtranspose.cpu.direct.run_engine` uses the
        gather kernel).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import normalise
    >>> from convtranspose.cpu.deconv import compute
    >>> x = np.ones((1, 1, 2, 2)); w = np.ones((1, 1, 3, 3))
    >>> params, shape, _ = normalise(x.shape, w.shape, None, [x.dtype, w.dtype], stride=2)
    >>> out = np.empty(shape)
    >>> compute(x, w, None, params, out), out[0, 0, 2].tolist()   # row 2 gets both inputs
    (True, [2.0, 2.0, 4.0, 2.0, 2.0])
    >>> w[0, 0, 0, 0] = np.inf
    >>> compute(x, w, None, params, out)
    False
    """
    if out.size == 0:
        return True
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    plan = plan_deconv(x.shape, weight.shape, params, out.shape[2:], out.dtype,
                       _ws.get_workspace_limit(), threads, cols)
    return _run(plan, x, weight, bias, out, params.groups, threads, finite=True)


def correlate(x, weight, bias, out, stride, dilation, before, groups, *, cols=None):
    """Compute the correlation (``conv2d``'s forward) into ``out`` with the engine.

    Parameters
    ----------
    x : ndarray, shape (N, C_in, H, W)
    weight : ndarray, shape (C_out, C_in // groups, kH, kW)
    bias : ndarray, shape (C_out,), or None
    out : ndarray, shape (N, C_out, H_out, W_out)
        Of one dtype (float32 or float64); ``weight`` and ``bias`` C-contiguous, ``x``
        and ``out`` in any dense layout (:func:`~convtranspose.cpu.layout.dense`).
    stride, dilation, before : pair of int
        ``before`` is the padding ``(top, left)``.
    groups : int
    cols : int, optional
        Most GEMM columns (output pixels) per task; changes the speed only.

    Returns
    -------
    ndarray
        ``out``. Every tap is multiplied, the zeros of the padding too, as the definition
        (and PyTorch) has it: a padding zero that meets an Inf weight gives NaN.

    Notes
    -----
    The packed ``A`` is the weight with each group's two channel axes swapped, so one
    copy of the weight is made besides the packed form.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.cpu.deconv import correlate
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4); w = np.ones((1, 1, 2, 2))
    >>> out = np.empty((1, 1, 2, 2))
    >>> correlate(x, w, None, out, (2, 2), (1, 1), (0, 0), 1)[0, 0].tolist()
    [[10.0, 18.0], [42.0, 50.0]]
    """
    if out.size == 0:
        return out
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    plan = plan_correlate(x.shape, weight.shape, tuple(stride), tuple(dilation), tuple(before),
                          groups, out.shape[2:], out.dtype, _ws.get_workspace_limit(), threads,
                          cols)
    c_out, c_in_g = weight.shape[:2]
    # the packing reads (C_in, C_out // groups, kH, kW), a transposed convolution's layout
    swapped = np.ascontiguousarray(
        weight.reshape(groups, c_out // groups, c_in_g, *weight.shape[2:]).swapaxes(1, 2)
    ).reshape(c_in_g * groups, c_out // groups, *weight.shape[2:])
    _run(plan, x, swapped, bias, out, groups, threads, finite=False)
    return out


def _run(plan, x, weight, bias, out, groups, threads, finite):
    """Pack the weight and run ``plan``'s tasks into ``out``; with ``finite``, compute
    nothing and return ``False`` when a packed weight is Inf or NaN."""
    kc, mc, _ = blocking(out.dtype)
    with workspace(out.dtype, plan.a_size, threads * plan.slot) as (ap, ws):
        if plan.a_size:
            bad = launch(pack_a_phases, weight, ap, plan.meta, plan.k_rows, plan.k_cols, groups,
                         kc)
            if finite and bad:
                return False
        if plan.bias_only:          # the tasks overwrite the phases that get taps
            out[...] = 0 if bias is None else bias[:, None, None]
        if len(plan.tasks):
            launch(deconv_kernel, *geometry(x), ap,
                   np.empty(0, out.dtype) if bias is None else bias, *geometry(out),
                   plan.meta, plan.off_rows, plan.off_cols, plan.tasks, plan.s_h, plan.s_w,
                   groups, kc, mc, ws, plan.slot, plan.b_size, plan.in_h, plan.in_w)
    return True


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
    dtype = np.dtype(dtype)
    kc, mc, nc = blocking(dtype)
    nr = simd.tile(dtype)[1]
    line = _cache_line(dtype)
    cols = gw_shape[1] * gw_shape[2] * gw_shape[3]
    panels = -(-cols // nr)
    pixels = n * h_o * w_o
    c_a_g = c_a // groups
    kb = min(kc, pixels)
    a_size = -(-kb * -(-min(mc, c_a_g) // MR) * MR // line) * line
    fixed = a_size + MR * nr + line
    # the most columns per block that keep every thread's slot within the limit
    room = limit // (threads * dtype.itemsize) - fixed
    most = max(nr, min(nc, room // max(kb, 1) // nr * nr))

    def blocks(parts, want, widest):
        return max(min(panels, -(-want // (groups * parts))), -(-cols // widest))

    def packed(parts):          # values packed (A once per column block) and partials added
        return (pixels * (blocks(parts, _WG_PARTS_FOR, nc) * c_a_g + cols)
                + 2 * (parts - 1) * c_a * cols)

    top = max(1, min(_WG_PARTS_FOR, pixels // (2 * kc)))
    parts = min(range(1, top + 1), key=packed)
    n_blocks = blocks(parts, _TASKS_PER_THREAD * threads, most)
    tasks = []
    for part, (p0, size) in enumerate(_split(pixels, -(-pixels // parts))):
        for g in range(groups):
            for q0, q in _split(panels, -(-panels // n_blocks)):
                j0 = q0 * nr
                tasks.append((g, j0, min(cols, j0 + q * nr) - j0, p0, p0 + size, part))
    nb_max = max(t[2] for t in tasks)
    b_size = -(-kb * -(-nb_max // nr) * nr // line) * line
    return WeightGradPlan(_table(tasks, 6), len({t[5] for t in tasks}),
                          b_size + a_size + MR * nr, b_size, a_size)


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
    gw : ndarray, shape (C_a, C_b // groups, kH, kW)
        Written; all C-contiguous, of one dtype (float32 or float64).
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
    plan = plan_weight_grad(a.shape, gw.shape, groups, gw.dtype, _ws.get_workspace_limit(),
                            threads)
    kc, mc, _ = blocking(gw.dtype)
    k_h, k_w = gw.shape[2:]
    flat = gw.reshape(-1)
    # every partial at once where the limit has room for them, else one after the other
    # through one buffer: the same sums in the same order either way
    at_once = ((plan.parts - 1) * gw.size + threads * plan.slot) * gw.itemsize \
        <= _ws.get_workspace_limit()
    rounds = [plan.tasks] if at_once else _one_part_each(plan.tasks, plan.parts)
    held = plan.parts - 1 if at_once else min(1, plan.parts - 1)
    with workspace(gw.dtype, threads * plan.slot, held * gw.size) as (ws, rest):
        for r, tasks in enumerate(rounds):
            launch(weight_grad_kernel, a, b, flat, rest, tasks, k_w, k_h * k_w, *stride,
                   *dilation, *before, groups, kc, mc, ws, plan.slot, plan.b_size,
                   plan.a_size)
            with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN, silently
                for p in range(held if at_once else min(r, 1)):  # partial sums, in order
                    flat += rest[p * gw.size:(p + 1) * gw.size]
    return gw


def _one_part_each(tasks, parts):
    """The tasks of each pixel range in turn, the later ones writing partial block 0."""
    rounds = []
    for p in range(parts):
        sub = tasks[tasks[:, 5] == p].copy()
        sub[:, 5] = min(p, 1)
        rounds.append(sub)
    return rounds
