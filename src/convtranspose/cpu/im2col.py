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
many images or rows a task takes. The smallest task is one output row (col2im) or one
phase row (phases) of one image, so a limit below that is exceeded by that much.
"""
from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

from .._alloc import allocate
from .._threading import launch
from . import workspace as _ws
from .blas import single_threaded_blas
from .kernels import col2im_gemm_kernel, pack_phase_weights, phase_gemm_kernel
from .taps import tap_tables
from .workspace import get_workspace_limit, release_workspace, set_workspace_limit, workspace

__all__ = ["run", "run_col2im", "run_phases", "FORMS", "phase_plan", "plan_phases", "phase_maps", "plan_col2im",
           "get_workspace_limit", "set_workspace_limit", "release_workspace"]

#: Bytes of GEMM output a col2im task aims at (read back while still in cache), and the
#: fewest GEMM columns it takes where the batch allows (below that the GEMM slows down).
_COL2IM_TASK_BYTES = 2 * 2**20
_COL2IM_MIN_COLS = 512
#: Tasks wanted per thread, in either form; bands of one image are cheaper to cut (they
#: keep their GEMMs' width), so more of them balance the threads better.
_TASKS_PER_THREAD = 2
_BANDS_PER_THREAD = 4


def _bands(t, h, h_out, b):
    """``b`` bands of output rows, each with the input rows that reach it."""
    edges = np.linspace(0, h_out, b + 1).round().astype(np.int64)
    bands = []
    for oh_a, oh_b in zip(edges[:-1], edges[1:]):
        if oh_b <= oh_a:
            continue
        counts = t.row_count[oh_a:oh_b]
        used = t.row_i[oh_a:oh_b][np.arange(t.row_i.shape[1]) < counts[:, None]]
        ih_a, ih_b = (int(used.min()), int(used.max()) + 1) if used.size else (0, 0)
        bands.append((ih_a, ih_b, int(oh_a), int(oh_b)))
    return bands


@lru_cache(maxsize=128)
def plan_col2im(x_shape, w_shape, params, out_hw, itemsize, limit, threads):
    """``(tasks, slot)`` of the col2im form: rows ``(n0, m, ih_a, ih_b, oh_a, oh_b)`` and
    the workspace elements one task needs.

    With enough images, a task is ``m`` whole images: about ``_COL2IM_TASK_BYTES`` of GEMM
    output or ``_COL2IM_MIN_COLS`` pixels, whichever is more, but at least
    ``_TASKS_PER_THREAD`` tasks per thread where the batch allows. With fewer images, or
    an image whose columns exceed ``limit / threads`` bytes, a task is a band of one
    image's output rows (``_BANDS_PER_THREAD`` bands per thread over the batch, fewer
    where a band would have under ``_COL2IM_MIN_COLS`` input pixels, more where the
    limit needs it), with the input rows that reach it (neighbouring bands share ``~kH*dH/sH`` input rows,
    whose products both compute). ``threads`` is the process's
    fixed thread count, so the tasks, and the results, do not change with
    ``numba.set_num_threads``.
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
        t = tap_tables((h, w), (k_h, k_w), out_hw, params)
        want_bands = min(-(-threads * _BANDS_PER_THREAD // max(n, 1)),
                         max(1, h * w // _COL2IM_MIN_COLS))   # keep the GEMMs wide
        b = min(out_hw[0], max(want_bands, -(-per_image // budget)))
        while True:
            bands = _bands(t, h, out_hw[0], b)
            slot = max((rows + c_in_g) * (ih_b - ih_a) * w for ih_a, ih_b, _, _ in bands)
            if slot * itemsize <= budget or b >= out_hw[0]:
                break
            b = min(out_hw[0], 2 * b)
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
               tasks, ws, slot, t.row_count, t.row_k, t.row_i, t.col_lo, t.col_hi,
               t.col_phase, t.col_q0, t.phases, t.q_len)
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
    """Split one dimension's output into ``s`` phases; return ``(stride, phases)``.

    Output ``o`` receives tap ``kk`` from input ``i = (o + before - kk*d) / s`` when that is
    an integer, so outputs ``o0, o0 + s, ...`` share the taps for which
    ``(o0 + before - kk*d) % s == 0``, each reading input ``offset + a``. Taps whose
    inputs all lie outside ``[0, in_len)`` are dropped. With a single input position the
    stride does not change the result, so a larger one is used, which leaves at most
    one tap per phase and no multiplication by padding.
    """
    if in_len == 1:
        s = max(s, out_len + before + d * (k - 1) + 1)
    phases = []
    for o0 in range(min(s, out_len)):
        count = (out_len - o0 + s - 1) // s
        k_idx, offsets = [], []
        for kk in range(k):
            num = o0 + before - kk * d
            if num % s == 0 and num // s <= in_len - 1 and num // s + count - 1 >= 0:
                k_idx.append(kk)
                offsets.append(num // s)
        phases.append(_Phase(o0, count, tuple(k_idx), tuple(offsets)))
    return s, phases


def phase_plan(in_hw, k_hw, out_hw, params):
    """Row and column phases of one problem: ``((s_h, rows), (s_w, cols))``."""
    return (_dim_phases(in_hw[0], out_hw[0], k_hw[0], params.stride[0], params.dilation[0],
                        params.pad_h[0]),
            _dim_phases(in_hw[1], out_hw[1], k_hw[1], params.stride[1], params.dilation[1],
                        params.pad_w[0]))


def _dense_1x1(x, weight, bias, params, out):
    """``H = W = 1``, one group: one GEMM gives every (image, channel, tap) product.

    Tap ``(kh, kw)`` lands on output pixel ``(kh*dH - top, kw*dW - left)``, so the taps
    that land inside the output are a block of the GEMM's result and their pixels a
    strided block of the output: both are plain slices.
    """
    n, c_in = x.shape[:2]
    _, c_out, k_h, k_w = weight.shape
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
    w2 = weight.reshape(c_in, c_out * k_h * k_w)
    x2 = x.reshape(n, c_in)
    if (k_h, k_w) == (h_out, w_out) and k_sl == [slice(0, k_h), slice(0, k_w)] \
            and params.dilation == (1, 1):
        np.matmul(x2, w2, out=out.reshape(n, -1))     # the output is the GEMM's result
        if bias is not None:
            out += bias[:, None, None]
        return out
    covered = (o_sl[0].stop - o_sl[0].start >= h_out and o_sl[1].stop - o_sl[1].start >= w_out
               and params.dilation == (1, 1))
    if not covered:
        out[...] = 0 if bias is None else bias[:, None, None]
    per_image = c_out * k_h * k_w * x.itemsize
    m = max(1, min(n, _ws.get_workspace_limit() // per_image))
    with workspace(out.dtype, m * c_out * k_h * k_w) as (full_buf,):
        _dense_chunks(x2, w2, bias, out, full_buf, m, (k_h, k_w), k_sl, o_sl)
    return out


def _dense_chunks(x2, w2, bias, out, full_buf, m, k_hw, k_sl, o_sl):
    """The chunks of :func:`_dense_1x1`, ``m`` images at a time, through ``full_buf``."""
    n, c_out = x2.shape[0], out.shape[1]
    k_h, k_w = k_hw
    for n0 in range(0, n, m):
        mm = min(m, n - n0)
        full = full_buf[:mm * c_out * k_h * k_w].reshape(mm, c_out, k_h, k_w)
        np.matmul(x2[n0:n0 + mm], w2, out=full.reshape(mm, -1))
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
    meta: np.ndarray      # per phase with taps: o0r, o0c, rows, cols, taps, map_off, w_off, x_is_b
    tasks: np.ndarray     # (phase, n0, images, a0, rows) per task
    bias_only: bool       # whether some phases get no tap (they hold only the bias)
    k_rows: np.ndarray    # kernel rows, then columns, of each phase's taps ...
    k_cols: np.ndarray
    tap_start: np.ndarray  # ... phase p's from tap_start[p] to tap_start[p + 1]
    w_offs: np.ndarray    # where each phase's packed weight starts
    w_size: int           # elements of the packed phase weights
    slot: int             # workspace elements one thread's task needs at most


#: Fewest GEMM columns worth a phase task of its own.
_MIN_TASK_COLS = 256


@lru_cache(maxsize=128)
def plan_phases(x_shape, w_shape, params, out_hw, itemsize, limit, threads):
    """Build the :class:`PhasePlan` of one problem (cached: a layer called again reuses it).

    Each phase's ``N * rows * cols`` GEMM columns are cut into tasks of whole images or
    bands of phase rows, so that there are about ``_TASKS_PER_THREAD`` tasks per thread
    of at least ``_MIN_TASK_COLS`` columns each, and ``threads`` tasks' buffers fit in
    ``limit`` bytes. ``threads`` is the process's fixed thread count, so the tasks, and
    the results, do not change with ``numba.set_num_threads``. The index maps the
    kernel reads are built apart, by :func:`phase_maps`, only when the form runs.
    """
    n, c_in, h, w = x_shape
    _, c_out_g, k_h, k_w = w_shape
    c_in_g = c_in // params.groups
    (s_h, rows), (s_w, cols) = phase_plan((h, w), (k_h, k_w), out_hw, params)
    rows_t, cols_t = [pr for pr in rows if pr.k_idx], [pc for pc in cols if pc.k_idx]
    work = [(pr, pc) for pr in rows_t for pc in cols_t]
    bias_only = len(work) < len(rows) * len(cols)
    meta, tasks, k_rows, k_cols, starts = [], [], [], [], [(0, 0)]
    map_off = w_off = slot = 0
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
            tasks += [(p, n0, min(m, n - n0), 0, pr.count) for n0 in range(0, n, m)]
            whole = whole and m == 1
            slot = max(slot, m * per_img * per_col // itemsize)
        else:
            band = max(1, task_cols // pc.count)
            tasks += [(p, n0, 1, a0, min(band, pr.count - a0))
                      for n0 in range(n) for a0 in range(0, pr.count, band)]
            whole = whole and band >= pr.count
            slot = max(slot, min(band, pr.count) * pc.count * per_col // itemsize)
        meta.append((pr.o0, pc.o0, pr.count, pc.count, taps, map_off, w_off, int(whole)))
        map_off += taps * per_img
        w_off += c_in * c_out_g * taps
        k_rows += pr.k_idx
        k_cols += pc.k_idx
        starts.append((len(k_rows), len(k_cols)))
    return PhasePlan(s_h, s_w, _table(meta, 8), _table(tasks, 5), bias_only, _table(k_rows),
                     _table(k_cols), _table(starts, 2), _table([m[6] for m in meta]),
                     w_off, slot)


def _table(rows, width=None):
    """A read-only ``int64`` array of ``rows`` (``width`` columns when given)."""
    a = np.array(rows, np.int64)
    a = a.reshape(-1, width) if width else a
    a.flags.writeable = False
    return a


@lru_cache(maxsize=32)
def phase_maps(in_hw, k_hw, out_hw, params):
    """For each phase with taps and each of its taps, the flat input pixel that every
    phase pixel reads (-1: outside the input), in :func:`plan_phases`' order."""
    h, w = in_hw
    (_, rows), (_, cols) = phase_plan(in_hw, k_hw, out_hw, params)
    maps = []
    for pr in rows:
        for pc in cols:
            if not (pr.k_idx and pc.k_idx):
                continue
            ih = np.add.outer(np.array(pr.offsets), np.arange(pr.count))     # (T_h, rows)
            iw = np.add.outer(np.array(pc.offsets), np.arange(pc.count))     # (T_w, cols)
            ok = ((ih >= 0) & (ih < h))[:, None, :, None] & ((iw >= 0) & (iw < w))[None, :, None, :]
            maps.append(np.where(ok, ih[:, None, :, None] * w + iw[None, :, None, :], -1).ravel())
    return _table(np.concatenate(maps) if maps else [])


def run_phases(x, weight, bias, params, out):
    """The sub-pixel phase form: independent (phase, images, rows) tasks in parallel,
    each a gather of the input pixels its taps read, a single-threaded BLAS GEMM over
    ``C_in * taps``, and a write of its own output pixels.

    No product with an inserted zero is computed. A phase with one tap at offset zero
    over whole images multiplies the input in place, with no gather.
    """
    n, c_in, h, w = x.shape
    groups = params.groups
    if h == 1 and w == 1 and groups == 1:
        return _dense_1x1(x, weight, bias, params, out)
    h_out, w_out = out.shape[2:]
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    plan = plan_phases(x.shape, weight.shape, params, (h_out, w_out), x.itemsize,
                       _ws.get_workspace_limit(), threads)
    if plan.bias_only:      # the tasks overwrite the phases that get taps
        out[...] = 0 if bias is None else bias[:, None, None]
    if not len(plan.tasks) or not out.size:
        return out
    maps = phase_maps((h, w), weight.shape[2:], (h_out, w_out), params)
    bias = np.empty(0, out.dtype) if bias is None else bias
    with workspace(out.dtype, plan.w_size, threads * plan.slot) as (wt, ws):
        launch(pack_phase_weights, weight, wt, plan.k_rows, plan.k_cols, plan.tap_start,
               plan.w_offs)
        # NaN and Inf propagate silently, as in the direct kernel and in PyTorch
        with single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
            launch(phase_gemm_kernel, x.reshape(n, c_in, h * w), wt, bias, out, plan.meta, maps,
                   plan.tasks, plan.s_h, plan.s_w, groups, ws, plan.slot)
    return out


#: The two forms of the backend; :mod:`convtranspose.dispatch` picks one per problem.
FORMS = {"phases": run_phases, "col2im": run_col2im}


def run(x, weight, bias, params, out):
    """Compute into ``out`` with the form the cost model picks (as ``backend="im2col"``)."""
    from .. import dispatch   # the cost model lives there; imported late to avoid a cycle
    return dispatch.BACKENDS["im2col"](x, weight, bias, params, out)
