"""The ``im2col`` backend: BLAS GEMMs in parallel tasks, in two forms.

* **col2im** (:func:`run_col2im`): for group ``g`` one GEMM computes every product of
  an input pixel and a kernel tap::

      cols (C_out_g*kH*kW, pixels) = weight[g].T (C_out_g*kH*kW, C_in_g) @ x[g] (C_in_g, pixels)

  and a gather sums, for each output row, the products that reach it.
* **phases** (:func:`run_phases`): the output splits into ``sH*sW`` sub-pixel phases,
  each a stride-1 correlation of the input with the taps that reach it; per phase the
  input pixels those taps read are gathered into a ``(C_in_g*taps, pixels)`` matrix and
  one GEMM with the phase's weight gives the outputs. No product with an inserted zero
  is computed.

Both cut the problem into tasks (chunks of whole images, or bands of one image's output
rows) that own disjoint outputs; Numba runs the tasks in parallel and each calls a
single-threaded BLAS GEMM (:func:`~convtranspose.cpu.blas.single_threaded_blas`), so
gathers and GEMMs of different tasks overlap and no BLAS thread pool competes with
Numba's. The tasks depend on the problem and on the process's fixed thread count
(``NUMBA_NUM_THREADS``), never on ``numba.set_num_threads``: results are identical for
any number of threads in use. :mod:`convtranspose.dispatch` picks the form.

Workspace
---------
Each thread gets one slot of workspace for its task's matrices; all slots together are
bounded by the workspace limit (default 256 MiB; :func:`set_workspace_limit`, or the
environment variable ``CONVTRANSPOSE_WORKSPACE_BYTES`` read at import), which sets how
many images, rows or columns a task takes. The phase form's smallest task is one phase
pixel of one image (bands of a phase row's columns where a row is too large), so it
stays within any limit of at least a slot of that size per thread; the col2im form's
smallest task is one output row of one image (the products of every input pixel of the
rows that reach it), and a limit below that is exceeded by that much:
:mod:`convtranspose.dispatch` runs the phase form instead where col2im would exceed it.
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from .._alloc import allocate
from .._threading import launch
from . import workspace as _ws
from .blas import single_threaded_blas
from .engine import _gemm_parallel, blocking
from .kernels import col2im_gemm_kernel, pack_phase_weights, phase_gemm_kernel
from .taps import byte_bounded_cache, input_span, tap_tables
from .workspace import get_workspace_limit, release_workspace, set_workspace_limit, workspace

__all__ = ["run_col2im", "run_phases", "FORMS", "phase_plan", "plan_phases", "plan_col2im",
           "get_workspace_limit", "set_workspace_limit", "release_workspace"]

#: Bytes of GEMM output a col2im task aims at (read back while still in cache), and the
#: fewest GEMM columns it takes where the batch allows (below that the GEMM slows down).
_COL2IM_TASK_BYTES = 2 * 2**20
_COL2IM_MIN_COLS = 512
#: Tasks wanted per thread, in either form; bands of one image are cheaper to cut (they
#: keep their GEMMs' width), so more of them balance the threads better.
_TASKS_PER_THREAD = 2
_BANDS_PER_THREAD = 4


def _bands(params, k_h, h, h_out, b):
    """``b`` bands of output rows, each with the input rows that reach it (``O(b*kH)``)."""
    s_h, d_h, top = params.stride[0], params.dilation[0], params.pad_h[0]
    edges = np.linspace(0, h_out, b + 1).round().astype(np.int64)
    return [(*input_span(int(oh_a), int(oh_b), h, k_h, s_h, d_h, top), int(oh_a), int(oh_b))
            for oh_a, oh_b in zip(edges[:-1], edges[1:]) if oh_b > oh_a]


def _max_bands(h_out, s_h, start):
    """Most bands worth cutting: below ``s_h`` output rows a band still needs the input
    rows its taps reach, so finer bands save at most one input row; never more than
    ``h_out``. Bounded by the input and kernel sizes, not by the output's."""
    return min(h_out, max(start, 2 * -(-h_out // s_h)))


@byte_bounded_cache()
def plan_col2im(x_shape, w_shape, params, out_hw, itemsize, limit, threads):
    """``(tasks, slot)`` of the col2im form: rows ``(n0, m, ih_a, ih_b, oh_a, oh_b)`` and
    the workspace elements one task needs.

    With enough images, a task is ``m`` whole images: about ``_COL2IM_TASK_BYTES`` of GEMM
    output or ``_COL2IM_MIN_COLS`` pixels, whichever is more, but at least
    ``_TASKS_PER_THREAD`` tasks per thread where the batch allows. With fewer images, or
    an image whose columns exceed ``limit / threads`` bytes, a task is a band of one
    image's output rows (``_BANDS_PER_THREAD`` bands per thread over the batch, fewer
    where a band would have under ``_COL2IM_MIN_COLS`` input pixels, more where the
    limit needs it, but no more than :func:`_max_bands`), with the input rows that reach
    it (neighbouring bands share ``~kH*dH/sH`` input rows, whose products both compute).
    ``threads`` is the process's fixed thread count, so the tasks, and the results, do
    not change with ``numba.set_num_threads``. Costs ``O(tasks * kH)``, never a loop
    over output rows.
    """
    n, c_in, h, w = x_shape
    _, c_out_g, k_h, k_w = w_shape
    c_in_g, rows = c_in // params.groups, c_out_g * k_h * k_w
    budget = max(1, limit // threads)
    want = threads * _TASKS_PER_THREAD
    per_image = (rows + c_in_g) * h * w * itemsize
    if n >= want and per_image <= budget:
        m = max(_COL2IM_TASK_BYTES // (rows * h * w * itemsize), -(-_COL2IM_MIN_COLS // (h * w)))
        m = max(1, min(m, -(-n // want), budget // per_image))
        tasks = [(n0, min(m, n - n0), 0, h, 0, out_hw[0]) for n0 in range(0, n, m)]
        slot = (rows + (c_in_g if m > 1 else 0)) * m * h * w
    else:
        want_bands = min(-(-threads * _BANDS_PER_THREAD // max(n, 1)),
                         max(1, h * w // _COL2IM_MIN_COLS))   # keep the GEMMs wide
        b_max = _max_bands(out_hw[0], params.stride[0], want_bands)
        b = min(b_max, max(want_bands, -(-per_image // budget)))
        while True:
            bands = _bands(params, k_h, h, out_hw[0], b)
            slot = max((rows + c_in_g) * (ih_b - ih_a) * w for ih_a, ih_b, _, _ in bands)
            if slot * itemsize <= budget or b >= b_max:
                break
            b = min(b_max, 2 * b)
        tasks = [(n0, 1, *band) for n0 in range(n) for band in bands]
    tasks = np.array(tasks, np.int64).reshape(-1, 6)
    tasks.flags.writeable = False
    return tasks, slot


def run_col2im(x, weight, bias, params, out):
    """The col2im form: per task a GEMM over ``C_in``, then a gather of the products into
    the task's output rows (:func:`~convtranspose.cpu.kernels.col2im_gemm_kernel`)."""
    n, c_in, h, w = x.shape
    _, c_out_g, k_h, k_w = weight.shape
    groups = params.groups
    t = tap_tables((h, w), (k_h, k_w), out.shape[2:], params)
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    tasks, slot = plan_col2im(x.shape, weight.shape, params, out.shape[2:], x.itemsize,
                              _ws.get_workspace_limit(), threads)
    bias = np.empty(0, out.dtype) if bias is None else bias
    # NaN and Inf propagate silently, as in the direct kernel and in PyTorch
    with workspace(out.dtype, threads * slot) as (ws,), single_threaded_blas(), \
            np.errstate(invalid="ignore", over="ignore"):
        launch(col2im_gemm_kernel, x, weight.reshape(groups, c_in // groups, -1), bias, out,
               tasks, ws, slot, *t)
    return out


# ----------------------------------------------------------------------------
# the sub-pixel phase form


class _Phase(NamedTuple):
    """Output positions ``o0 + s*a`` (``0 <= a < count``) of one dimension, and the kernel
    taps ``k_idx`` that reach them from input position ``offsets + a``."""

    o0: int
    count: int
    k_idx: tuple
    offsets: tuple


def _dim_phases(in_len, out_len, k, s, d, before):
    """One dimension's phases that receive taps; return ``(stride, phases, n_phases)``.

    Output ``o`` receives tap ``kk`` from input ``i = (o + before - kk*d) / s`` when that is
    an integer, so outputs ``o0, o0 + s, ...`` (``0 <= o0 < min(s, out_len)``: ``n_phases``
    phases) share the taps for which ``(o0 + before - kk*d) % s == 0``, each reading input
    ``offset + a``. Taps whose inputs all lie outside ``[0, in_len)`` are dropped, and so
    are phases left without taps (they hold only the bias). With a single input position
    the stride does not change the result, so a larger one is used, which leaves at most
    one tap per phase and no multiplication by padding. ``O(k)``: only the phases some
    tap reaches are visited, in increasing ``o0``.
    """
    if in_len == 1:
        s = max(s, out_len + before + d * (k - 1) + 1)
    found = {}
    for kk in range(k):
        o0 = (kk * d - before) % s
        if o0 >= out_len:
            continue
        count = (out_len - o0 + s - 1) // s
        first = (o0 + before - kk * d) // s
        if first <= in_len - 1 and first + count - 1 >= 0:
            found.setdefault(o0, (count, [], []))
            found[o0][1].append(kk)
            found[o0][2].append(first)
    phases = [_Phase(o0, count, tuple(k_idx), tuple(offsets))
              for o0, (count, k_idx, offsets) in sorted(found.items())]
    return s, phases, min(s, out_len)


def phase_plan(in_hw, k_hw, out_hw, params):
    """Row and column phases of one problem: ``((s_h, rows, n_rows), (s_w, cols, n_cols))``
    (see :func:`_dim_phases`)."""
    return (_dim_phases(in_hw[0], out_hw[0], k_hw[0], params.stride[0], params.dilation[0],
                        params.pad_h[0]),
            _dim_phases(in_hw[1], out_hw[1], k_hw[1], params.stride[1], params.dilation[1],
                        params.pad_w[0]))


#: Most groups :func:`_dense_1x1` takes (a GEMM each; more run in the phase form).
_DENSE_GROUPS = 16


def _dense_1x1(x, weight, bias, params, out):
    """``H = W = 1``: one GEMM per group gives every (image, channel, tap) product.

    Tap ``(kh, kw)`` lands on output pixel ``(kh*dH - top, kw*dW - left)``, so the taps
    that land inside the output are a block of the GEMM's result and their pixels a
    strided block of the output: both are plain slices.
    """
    n, c_in = x.shape[:2]
    _, c_out_g, k_h, k_w = weight.shape
    h_out, w_out = out.shape[2:]
    k_sl, o_sl = [], []
    for k, d, before, size in ((k_h, params.dilation[0], params.pad_h[0], h_out),
                               (k_w, params.dilation[1], params.pad_w[0], w_out)):
        lo = -(-before // d)                          # first tap at output >= 0
        hi = min(k, (size - 1 + before) // d + 1)     # past the last tap inside
        hi = max(hi, lo)
        k_sl.append(slice(lo, hi))
        o_sl.append(slice(lo * d - before, (hi - 1) * d - before + 1, d) if hi > lo
                    else slice(0, 0))
    w2 = weight.reshape(c_in, c_out_g * k_h * k_w)
    x2 = x.reshape(n, c_in)
    c_in_g = c_in // params.groups
    # NaN and Inf propagate silently, as in the kernels and in PyTorch
    with np.errstate(invalid="ignore", over="ignore"):
        for g in range(params.groups):
            rows, chans = slice(g * c_in_g, (g + 1) * c_in_g), slice(g * c_out_g,
                                                                      (g + 1) * c_out_g)
            _dense_run(x2[:, rows], w2[rows], None if bias is None else bias[chans], params,
                       out[:, chans], (k_h, k_w), k_sl, o_sl)
    return out


def _dense_run(x2, w2, bias, params, out, k_hw, k_sl, o_sl):
    """The GEMM and copies of :func:`_dense_1x1` (called under its error state)."""
    n = x2.shape[0]
    _, c_out, h_out, w_out = out.shape
    k_h, k_w = k_hw
    if (k_h, k_w) == (h_out, w_out) and k_sl == [slice(0, k_h), slice(0, k_w)] \
            and params.dilation == (1, 1) and out.flags.c_contiguous:
        _matmul(x2, w2, out.reshape(n, -1))     # the output is the GEMM's result
        if bias is not None:
            out += bias[:, None, None]
        return out
    covered = (o_sl[0].stop - o_sl[0].start >= h_out and o_sl[1].stop - o_sl[1].start >= w_out
               and params.dilation == (1, 1))
    if not covered:
        out[...] = 0 if bias is None else bias[:, None, None]
    per_image = c_out * k_h * k_w * x2.itemsize
    m = max(1, min(n, _ws.get_workspace_limit() // per_image))
    with workspace(out.dtype, m * c_out * k_h * k_w) as (full_buf,):
        _dense_chunks(x2, w2, bias, out, full_buf, m, (k_h, k_w), k_sl, o_sl)
    return out


def _matmul(a, b, c):
    """``c = a @ b`` (C-contiguous, one dtype) on Numba's threads with the engine's GEMM.

    Not NumPy's ``matmul``: its BLAS would start a thread pool of its own, whose workers
    keep spinning after the call and take cores from the next parallel kernel. The engine
    sums each element in one fixed order, however the work is cut.
    """
    if a.shape[1] == 0:
        c[...] = 0
        return c
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    kc, mc, nc = blocking(c.dtype)
    parts = _TASKS_PER_THREAD * max(1, numba.config.NUMBA_NUM_THREADS)
    launch(_gemm_parallel, a, b, c, False, kc, mc, nc, parts)
    return c


def _dense_chunks(x2, w2, bias, out, full_buf, m, k_hw, k_sl, o_sl):
    """The chunks of :func:`_dense_1x1`, ``m`` images at a time, through ``full_buf``."""
    n, c_out = x2.shape[0], out.shape[1]
    k_h, k_w = k_hw
    for n0 in range(0, n, m):
        mm = min(m, n - n0)
        full = full_buf[:mm * c_out * k_h * k_w].reshape(mm, c_out, k_h, k_w)
        _matmul(x2[n0:n0 + mm], w2, full.reshape(mm, -1))
        sel = full[:, :, k_sl[0], k_sl[1]]
        dst = out[n0:n0 + mm, :, o_sl[0], o_sl[1]]
        if bias is not None:
            np.add(sel, bias[:, None, None], out=dst)
        else:
            dst[...] = sel
    return out


class PhasePlan(NamedTuple):
    """Index tables and task list of the phase form (see :func:`phase_gemm_kernel`)."""

    s_h: int
    s_w: int
    meta: np.ndarray      # per phase with taps: o0r, o0c, rows, cols, taps, w_off, x_is_b,
                          # and where its taps start in k_rows / k_cols, T_w
    tasks: np.ndarray     # (phase, n0, images, a0, rows, b0, cols) per task
    bias_only: bool       # whether some phases get no tap (they hold only the bias)
    k_rows: np.ndarray    # kernel rows, then columns, of each phase's taps ...
    k_cols: np.ndarray
    tap_start: np.ndarray  # ... phase p's from tap_start[p] to tap_start[p + 1]
    off_rows: np.ndarray  # the input row (column) a tap reads for phase row (column) 0,
    off_cols: np.ndarray  # aligned with k_rows (k_cols)
    w_offs: np.ndarray    # where each phase's packed weight starts
    w_size: int           # elements of the packed phase weights
    slot: int             # workspace elements one thread's task needs at most


#: Fewest GEMM columns worth a phase task of its own.
_MIN_TASK_COLS = 256


@byte_bounded_cache()
def plan_phases(x_shape, w_shape, params, out_hw, itemsize, limit, threads):
    """Build the :class:`PhasePlan` of one problem (cached: a layer called again reuses it).

    Each phase's ``N * rows * cols`` GEMM columns are cut into tasks of whole images,
    bands of phase rows or, where one phase row is more than a slot holds (a long 1-D
    signal), bands of one phase row's columns, so that there are about
    ``_TASKS_PER_THREAD`` tasks per thread of at least ``_MIN_TASK_COLS`` columns each,
    and ``threads`` tasks' buffers fit in ``limit`` bytes. ``threads`` is the process's
    fixed thread count, so the tasks, and the results, do not change with
    ``numba.set_num_threads``. Its tables hold ``O(kH*kW)`` entries and its task list
    ``O(tasks)``: nothing grows with the output.
    """
    n, c_in, h, w = x_shape
    _, c_out_g, k_h, k_w = w_shape
    c_in_g = c_in // params.groups
    (s_h, rows, n_rows), (s_w, cols, n_cols) = phase_plan((h, w), (k_h, k_w), out_hw, params)
    work = [(pr, pc) for pr in rows for pc in cols]
    bias_only = len(work) < n_rows * n_cols
    meta, tasks, k_rows, k_cols, off_rows, off_cols = [], [], [], [], [], []
    starts = [(0, 0)]
    w_off = slot = 0
    for p, (pr, pc) in enumerate(work):
        taps = len(pr.k_idx) * len(pc.k_idx)
        whole = (taps == 1 and pr.offsets == (0,) and pc.offsets == (0,)
                 and (pr.count, pc.count) == (h, w))
        per_col = (c_out_g + c_in_g * taps) * itemsize
        per_img = pr.count * pc.count
        want = -(-threads * _TASKS_PER_THREAD // len(work))
        task_cols = max(_MIN_TASK_COLS, -(-n * per_img // want))
        task_cols = max(1, min(task_cols, limit // (threads * per_col)))
        if task_cols >= per_img:
            m = max(1, min(n, task_cols // per_img))
            tasks += [(p, n0, min(m, n - n0), 0, pr.count, 0, pc.count)
                      for n0 in range(0, n, m)]
            whole = whole and m == 1
            slot = max(slot, m * per_img * per_col // itemsize)
        elif task_cols >= pc.count:
            band = task_cols // pc.count
            tasks += [(p, n0, 1, a0, min(band, pr.count - a0), 0, pc.count)
                      for n0 in range(n) for a0 in range(0, pr.count, band)]
            whole = whole and band >= pr.count
            slot = max(slot, min(band, pr.count) * pc.count * per_col // itemsize)
        else:   # a phase row is more than a slot holds: bands of its columns
            tasks += [(p, n0, 1, a0, 1, b0, min(task_cols, pc.count - b0))
                      for n0 in range(n) for a0 in range(pr.count)
                      for b0 in range(0, pc.count, task_cols)]
            whole = False
            slot = max(slot, task_cols * per_col // itemsize)
        meta.append((pr.o0, pc.o0, pr.count, pc.count, taps, w_off, int(whole), len(k_rows),
                     len(k_cols), len(pc.k_idx)))
        w_off += c_in * c_out_g * taps
        k_rows += pr.k_idx
        k_cols += pc.k_idx
        off_rows += pr.offsets
        off_cols += pc.offsets
        starts.append((len(k_rows), len(k_cols)))
    return PhasePlan(s_h, s_w, _table(meta, 10), _table(tasks, 7), bias_only, _table(k_rows),
                     _table(k_cols), _table(starts, 2), _table(off_rows), _table(off_cols),
                     _table([m[5] for m in meta]), w_off, slot)


def _table(rows, width=None):
    """A read-only ``int64`` array of ``rows`` (``width`` columns when given)."""
    a = np.array(rows, np.int64)
    a = a.reshape(-1, width) if width else a
    a.flags.writeable = False
    return a


def run_phases(x, weight, bias, params, out):
    """The sub-pixel phase form: independent (phase, images, rows) tasks in parallel,
    each a gather of the input pixels its taps read, a single-threaded BLAS GEMM over
    ``C_in * taps``, and a write of its own output pixels.

    No product with an inserted zero is computed. A phase with one tap at offset zero
    over whole images multiplies the input in place, with no gather. Taps that read
    outside the input gather zeros, which the GEMM multiplies: harmless for finite
    weights, but ``0 * inf`` is NaN, so when a tap some phase uses is Inf or NaN (counted
    while the weights are packed) the problem runs in the col2im form instead, which
    multiplies only real (input, tap) pairs, as the definition does.
    """
    n, c_in, h, w = x.shape
    groups = params.groups
    if h == 1 and w == 1 and groups <= _DENSE_GROUPS:
        return _dense_1x1(x, weight, bias, params, out)
    h_out, w_out = out.shape[2:]
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    plan = plan_phases(x.shape, weight.shape, params, (h_out, w_out), x.itemsize,
                       _ws.get_workspace_limit(), threads)
    if plan.bias_only:      # the tasks overwrite the phases that get taps
        out[...] = 0 if bias is None else bias[:, None, None]
    if not len(plan.tasks) or not out.size:
        return out
    bias = np.empty(0, out.dtype) if bias is None else bias
    with workspace(out.dtype, plan.w_size, threads * plan.slot) as (wt, ws):
        if launch(pack_phase_weights, weight, wt, plan.k_rows, plan.k_cols, plan.tap_start,
                  plan.w_offs) == 0:
            # NaN and Inf propagate silently, as in the direct kernel and in PyTorch
            with single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
                launch(phase_gemm_kernel, x, wt, bias, out, plan.meta, plan.off_rows,
                       plan.off_cols, plan.tasks, plan.s_h, plan.s_w, groups, ws, plan.slot)
            return out
    # A tap that is Inf or NaN would meet the gathered zeros (0 * inf = nan where the
    # definition multiplies no padding); the col2im form multiplies real pairs only.
    return run_col2im(x, weight, bias, params, out)


#: The two forms of the backend; :mod:`convtranspose.dispatch` picks one per problem.
FORMS = {"phases": run_phases, "col2im": run_col2im}
