"""The ``im2col`` backend: one BLAS GEMM per group and chunk, then a gather col2im.

For group ``g`` the GEMM computes every product of an input pixel and a kernel tap::

    cols[g] (C_out_g*kH*kW, n*h*W) = weight[g].T (C_out_g*kH*kW, C_in_g) @ x[g] (C_in_g, n*h*W)

over a chunk of ``n`` images and ``h`` input rows, so the batch goes through one large
GEMM rather than one per image. :func:`~convtranspose.cpu.kernels.col2im_kernel` then
gathers each output row from the columns that reach it.

Workspace
---------
The column buffer plus a transposed copy of the input chunk is bounded by the
workspace limit (default 256 MiB; :func:`set_workspace_limit`, or the environment
variable ``CONVTRANSPOSE_WORKSPACE_BYTES`` read at import). The batch is cut into
chunks of whole images that fit; an image that alone exceeds the limit is cut into
bands of input rows. One input row is the smallest chunk, so a limit below
``(C_out*kH*kW + C_in) * W * itemsize`` bytes is exceeded by that much.
"""
from __future__ import annotations

import os
import threading
from functools import lru_cache
from typing import NamedTuple

import numba
import numpy as np

from .._alloc import allocate
from .._threading import launch
from .blas import single_threaded_blas
from .kernels import (col2im_gemm_kernel, col2im_kernel, pack_phase_weights,
                      phase_gemm_kernel)
from .taps import tap_tables

__all__ = ["run", "run_col2im", "run_phases", "FORMS", "phase_plan", "plan_phases", "plan_chunks",
           "get_workspace_limit", "set_workspace_limit", "release_workspace"]

_DEFAULT_LIMIT = 256 * 2**20
_limit = int(os.environ.get("CONVTRANSPOSE_WORKSPACE_BYTES", _DEFAULT_LIMIT))


def get_workspace_limit():
    """Return the im2col workspace limit in bytes."""
    return _limit


def set_workspace_limit(nbytes):
    """Set the im2col workspace limit in bytes; return the previous limit.

    Parameters
    ----------
    nbytes : int
        Largest number of bytes the ``im2col`` backend may allocate for its column
        buffer and input copy in one call; at least one input row's worth is always used.

    Examples
    --------
    >>> import convtranspose as ct
    >>> old = ct.set_workspace_limit(64 * 2**20)
    >>> _ = ct.set_workspace_limit(old)
    """
    global _limit
    if isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1:
        raise ValueError(f"nbytes must be a positive int, got {nbytes!r}")
    old, _limit = _limit, int(nbytes)
    return old


_local = threading.local()
_KEEP_BYTES = 64 * 2**20     # workspace kept between calls, per thread, when no larger


def _buffers(dtype, *sizes):
    """Flat arrays of ``dtype`` with the given element counts, carved from one workspace.

    Freshly mapped memory costs a page fault per 4 KiB on first touch (about as long
    as the GEMM for many suite shapes), so each Python thread keeps its workspace of up
    to ``_KEEP_BYTES`` for the next call; larger ones are freed when the call returns.
    """
    itemsize = np.dtype(dtype).itemsize
    spans = [-(-n * itemsize // 64) * 64 for n in sizes]
    total = sum(spans)
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < total:
        buf = allocate(total, np.uint8, "im2col workspace")
        _local.buf = buf if total <= _KEEP_BYTES else None
    out, start = [], 0
    for n, span in zip(sizes, spans):
        out.append(buf[start:start + n * itemsize].view(dtype))
        start += span
    return out


def release_workspace():
    """Free the workspace this thread keeps between ``im2col`` calls."""
    _local.buf = None


def plan_chunks(x_shape, w_shape, groups, itemsize, limit=None):
    """Choose ``(images, rows)`` per chunk and the workspace bytes that takes."""
    limit = _limit if limit is None else limit
    n, c_in, h, w = x_shape
    c_out_taps = w_shape[1] * groups * w_shape[2] * w_shape[3]
    per_row = (c_out_taps + c_in) * w * itemsize
    per_image = per_row * h
    if per_image <= limit:
        images, rows = max(1, min(n, limit // per_image)), h
    else:
        images, rows = 1, max(1, min(h, limit // per_row))
    return images, rows, images * rows * per_row


#: Bytes of GEMM output a col2im task aims at (read back while still in cache), and the
#: fewest GEMM columns it takes where the batch allows (below that the GEMM slows down).
_COL2IM_TASK_BYTES = 2 * 2**20
_COL2IM_MIN_COLS = 512


@lru_cache(maxsize=128)
def plan_col2im_tasks(x_shape, w_shape, groups, itemsize, limit, threads):
    """``(tasks, slot)`` of the task-parallel col2im form, or ``None`` where it does not
    apply: one image, or one image's columns over ``limit / threads`` bytes.

    Tasks are chunks of ``m`` whole images, ``tasks[t] = (n0, m)``, with about
    ``_COL2IM_TASK_BYTES`` of GEMM output or ``_COL2IM_MIN_COLS`` pixels each, whichever
    is more, but at least ``_TASKS_PER_THREAD`` tasks per thread where the batch allows;
    ``slot`` is the workspace elements of one task. ``threads`` is the process's fixed thread count, so the tasks do not change
    with ``numba.set_num_threads``.
    """
    n, c_in, h, w = x_shape
    rows = w_shape[1] * w_shape[2] * w_shape[3]
    per_image = (rows + c_in // groups) * h * w * itemsize
    if n < 2 or threads * per_image > limit:
        return None
    m = max(_COL2IM_TASK_BYTES // (rows * h * w * itemsize), -(-_COL2IM_MIN_COLS // (h * w)))
    m = max(1, min(m, -(-n // (threads * _TASKS_PER_THREAD)), limit // (threads * per_image)))
    tasks = np.array([(n0, min(m, n - n0)) for n0 in range(0, n, m)], np.int64)
    tasks.flags.writeable = False
    return tasks, (rows + (c_in // groups if m > 1 else 0)) * m * h * w


def run_col2im(x, weight, bias, params, out):
    """The col2im form: GEMM over ``C_in``, then gather the columns into the output.

    Chunks of whole images run as parallel tasks with a single-threaded GEMM each
    (:func:`~convtranspose.cpu.kernels.col2im_gemm_kernel`); a single image, or one too
    large for the workspace, runs chunk by chunk with a multithreaded GEMM and a
    parallel col2im (bands of input rows when an image alone exceeds the limit).
    """
    n, c_in, h, w = x.shape
    _, c_out_g, k_h, k_w = weight.shape
    groups = params.groups
    c_in_g, taps_n = c_in // groups, c_out_g * k_h * k_w
    t = tap_tables((h, w), (k_h, k_w), out.shape[2:], params)
    bias = np.empty(0, out.dtype) if bias is None else bias
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    plan = plan_col2im_tasks(x.shape, weight.shape, groups, x.itemsize, _limit, threads)
    if plan is not None:
        tasks, slot = plan
        ws, = _buffers(out.dtype, threads * slot)
        with single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
            launch(col2im_gemm_kernel, x, weight.reshape(groups, c_in_g, taps_n), bias, out,
                   tasks, ws, slot, t.row_count, t.row_k, t.row_i, t.col_lo, t.col_hi,
                   t.col_phase, t.col_q0, t.phases, t.q_len)
        return out
    images, rows, _ = plan_chunks(x.shape, weight.shape, groups, x.itemsize)
    copy_x = (images, rows) != (1, h)
    cols_buf, x_buf = _buffers(out.dtype, groups * taps_n * images * rows * w,
                               c_in * images * rows * w if copy_x else 0)
    x_buf = x_buf if copy_x else None
    w_t = weight.reshape(groups, c_in_g, taps_n).transpose(0, 2, 1)
    (s, d, top), h_out = (params.stride[0], params.dilation[0], params.pad_h[0]), out.shape[2]
    for n0 in range(0, n, images):
        m = min(images, n - n0)
        for h0 in range(0, h, rows):
            hh = min(rows, h - h0)
            if x_buf is None:
                xt = x[n0][:, None]                  # a view: (C_in, 1, H, W)
            else:
                xt = x_buf[:c_in * m * hh * w].reshape(c_in, m, hh, w)
                np.copyto(xt, x[n0:n0 + m, :, h0:h0 + hh].transpose(1, 0, 2, 3))
            cols = cols_buf[:groups * taps_n * m * hh * w].reshape(
                groups, c_out_g, k_h, k_w, m, hh, w)
            # NaN and Inf propagate silently, as in the direct kernel and in PyTorch
            with np.errstate(invalid="ignore", over="ignore"):
                for g in range(groups):
                    np.matmul(w_t[g],
                              xt[g * c_in_g:(g + 1) * c_in_g].reshape(c_in_g, m * hh * w),
                              out=cols[g].reshape(taps_n, m * hh * w))
            first = h0 == 0
            oh_lo = 0 if first else max(0, h0 * s - top)
            oh_hi = h_out if first else min(h_out, (h0 + hh - 1) * s - top + d * (k_h - 1) + 1)
            launch(col2im_kernel, cols, bias, out, n0, h0, first, oh_lo, oh_hi,
                   t.row_count, t.row_k, t.row_i, t.col_lo, t.col_hi,
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
    m = max(1, min(n, _limit // per_image))
    full_buf, = _buffers(out.dtype, m * c_out * k_h * k_w)
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
    maps: np.ndarray      # per phase and tap: flat input pixel of each phase pixel, or -1
    tasks: np.ndarray     # (phase, n0, images, a0, rows) per task
    bias_only: tuple      # (o0r, o0c) of the phases no tap reaches
    k_rows: np.ndarray    # kernel rows, then columns, of each phase's taps ...
    k_cols: np.ndarray
    tap_start: np.ndarray  # ... phase p's from tap_start[p] to tap_start[p + 1]
    w_offs: np.ndarray    # where each phase's packed weight starts
    w_size: int           # elements of the packed phase weights
    slot: int             # workspace elements one thread's task needs at most


#: Fewest GEMM columns worth a task of its own, and tasks wanted per thread.
_MIN_TASK_COLS = 256
_TASKS_PER_THREAD = 2


@lru_cache(maxsize=128)
def plan_phases(x_shape, w_shape, params, out_hw, itemsize, limit, threads):
    """Build the :class:`PhasePlan` of one problem (cached: a layer called again reuses it).

    Each phase's ``N * rows * cols`` GEMM columns are cut into tasks of whole images or
    bands of phase rows, so that there are about ``_TASKS_PER_THREAD`` tasks per thread
    of at least ``_MIN_TASK_COLS`` columns each, and ``threads`` tasks' buffers fit in
    ``limit`` bytes. ``threads`` is the process's fixed thread count, so the tasks, and
    the results, do not change with ``numba.set_num_threads``.
    """
    n, c_in, h, w = x_shape
    _, c_out_g, k_h, k_w = w_shape
    c_in_g = c_in // params.groups
    (s_h, rows), (s_w, cols) = phase_plan((h, w), (k_h, k_w), out_hw, params)
    work = [(pr, pc) for pr in rows for pc in cols if pr.k_idx and pc.k_idx]
    bias_only = tuple((pr.o0, pc.o0) for pr in rows for pc in cols
                      if not (pr.k_idx and pc.k_idx))
    meta, maps, tasks, k_rows, k_cols, starts = [], [], [], [], [], [(0, 0)]
    map_off = w_off = slot = 0
    for p, (pr, pc) in enumerate(work):
        taps = len(pr.k_idx) * len(pc.k_idx)
        ih = np.add.outer(np.array(pr.offsets), np.arange(pr.count))     # (T_h, rows)
        iw = np.add.outer(np.array(pc.offsets), np.arange(pc.count))     # (T_w, cols)
        ok = ((ih >= 0) & (ih < h))[:, None, :, None] & ((iw >= 0) & (iw < w))[None, :, None, :]
        flat = ih[:, None, :, None] * w + iw[None, :, None, :]
        maps.append(np.where(ok, flat, -1).ravel())
        whole = (taps == 1 and pr.offsets == (0,) and pc.offsets == (0,)
                 and (pr.count, pc.count) == (h, w))
        per_col = (c_out_g + c_in_g * taps) * itemsize
        per_img = pr.count * pc.count
        want = -(-threads * _TASKS_PER_THREAD // len(work))
        task_cols = max(_MIN_TASK_COLS, -(-n * per_img // want))
        task_cols = max(1, min(task_cols, limit // (threads * per_col)))
        if task_cols >= per_img:
            m = min(n, task_cols // per_img)
            tasks += [(p, n0, min(m, n - n0), 0, pr.count) for n0 in range(0, n, m)]
            whole = whole and m == 1
        else:
            band = max(1, task_cols // pc.count)
            tasks += [(p, n0, 1, a0, min(band, pr.count - a0))
                      for n0 in range(n) for a0 in range(0, pr.count, band)]
            whole = whole and band >= pr.count
        meta.append((pr.o0, pc.o0, pr.count, pc.count, taps, map_off, w_off, int(whole)))
        slot = max([slot] + [t[2] * t[4] * pc.count * per_col // itemsize
                             for t in tasks if t[0] == p])
        map_off += maps[-1].size
        w_off += c_in * c_out_g * taps
        k_rows += pr.k_idx
        k_cols += pc.k_idx
        starts.append((len(k_rows), len(k_cols)))

    def table(rows, width=None):
        a = np.array(rows, np.int64)
        a = a.reshape(-1, width) if width else a
        a.flags.writeable = False
        return a

    return PhasePlan(s_h, s_w, table(meta, 8),
                     table(np.concatenate(maps) if maps else []), table(tasks, 5), bias_only,
                     table(k_rows), table(k_cols), table(starts, 2),
                     table([m[6] for m in meta]), w_off, slot)


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
    plan = plan_phases(x.shape, weight.shape, params, (h_out, w_out), x.itemsize, _limit,
                       max(1, numba.config.NUMBA_NUM_THREADS))
    for o0r, o0c in plan.bias_only:
        out[:, :, o0r::plan.s_h, o0c::plan.s_w] = 0 if bias is None else bias[:, None, None]
    if not len(plan.tasks) or not out.size:
        return out
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    wt, ws = _buffers(out.dtype, plan.w_size, threads * plan.slot)
    launch(pack_phase_weights, weight, wt, plan.k_rows, plan.k_cols, plan.tap_start,
           plan.w_offs)
    bias = np.empty(0, out.dtype) if bias is None else bias
    # NaN and Inf propagate silently, as in the direct kernel and in PyTorch
    with single_threaded_blas(), np.errstate(invalid="ignore", over="ignore"):
        launch(phase_gemm_kernel, x.reshape(n, c_in, h * w), wt, bias, out, plan.meta,
               plan.maps, plan.tasks, plan.s_h, plan.s_w, groups, ws, plan.slot)
    return out


#: The two forms of the backend; :mod:`convtranspose.dispatch` picks one per problem.
FORMS = {"phases": run_phases, "col2im": run_col2im}


def run(x, weight, bias, params, out):
    """Compute into ``out`` with the form the cost model picks (as ``backend="im2col"``)."""
    from .. import dispatch   # the cost model lives there; imported late to avoid a cycle
    return dispatch.BACKENDS["im2col"](x, weight, bias, params, out)
