"""The CPU backend of NumPy operands: the forward problems and gradients of every rank.

:func:`forward` runs a :class:`~convtranspose.problem.Problem` that the operation layer
(:mod:`convtranspose.operation`) validated once: it picks a CPU backend
(:mod:`convtranspose.dispatch`; ``"auto"`` by the cost model) and runs it, rank 1 as 2-D of
unit height and rank 3 through :mod:`convtranspose.depth`. The tasks of a Dask graph reach
it through the operation layer too; so do the gradients (:func:`gradients`). This module
imports neither the public modules nor ``dask_ops``.

The convolution and the transposed convolution are adjoint, so they share their kernels:
``conv2d``'s forward is the correlation of :mod:`convtranspose.cpu.backward` (also the
transposed convolution's input gradient), and ``conv2d``'s input gradient is a transposed
convolution, run by the forward backends of :data:`convtranspose.dispatch.BACKENDS`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import depth, dispatch, halfops
from ._arrays import (batched, batched_to, compute_into, in_layout, native, new_result)
from ._threading import launch
from .dispatch import correlate, weight_grad
from .cpu import backward as cpu_backward
from .cpu import direct
from .params import ConvParams, adjoint_params

__all__ = ["forward", "gradients", "lifted", "correlate", "weight_grad", "bias_grad"]


# ----------------------------------------------------------------------------
# the forward operations

def forward(problem, name, x, weight, bias, out, picked=None):
    """Run a validated forward :class:`~convtranspose.problem.Problem` on NumPy operands
    into ``out`` (or a new array) by backend ``name`` (``"auto"``: picked here) and return
    it.

    ``x`` and ``out`` are indexed channels-first (views of channels-last memory when
    ``problem.last``), as is the result. Rank 1 runs as the 2-D problem of unit height
    on views; rank 3 by :mod:`convtranspose.depth` (the engine for the whole volume, or
    2-D problems per kernel depth tap). The backend that ``"auto"`` picks for a 2-D
    transposed convolution is appended to the list ``picked``.
    """
    op, last = problem.op, problem.last
    if op.rank == 1:
        y = forward(lifted(problem), name, x[..., None, :], weight[..., None, :], bias,
                    None if out is None else out[..., None, :], picked)
        return y[..., 0, :]
    params, shape, dtype = problem.params, problem.shape, problem.dtype
    half = halfops.takes(x, weight, bias)     # the engine where float32 runs it, else chunks
    if op.rank == 3:
        if op.transposed:
            def run(x5, w, b, p, r5):
                return depth.scatter(x5, w, b, p, r5, name, last)
            run = halfops.transposed(name, run) if half else run
        else:
            run = (halfops.correlation(name, None) if half else
                   lambda x5, w, b, p, r5: depth.correlate(x5, w, b, r5, p, name, last))
        return compute_into(x, weight, bias, params, shape, dtype, out, run, last,
                            convert=not half)
    if not op.transposed:
        if half:
            run = halfops.correlation(name, _correlate_in)
        else:
            def run(x4, w, b, p, r4):
                method = name
                if method == "auto":
                    method = dispatch.correlate_method(w.shape[0] // p.groups, w.shape[1],
                                                       w.shape[2:], r4.size // r4.shape[1],
                                                       _engine_fits(x4, w, p, r4, last),
                                                       images=r4.shape[0])
                correlate(x4, w, b, r4, p, method)
        return compute_into(x, weight, bias, params, shape, dtype, out, run, last,
                            convert=not half)
    if half:
        fallback = dispatch.run_backend("direct" if name == "auto" else name)
        return compute_into(x, weight, bias, params, shape, dtype, out,
                            halfops.transposed(name, fallback), last, convert=False)
    if name != "auto":
        return compute_into(x, weight, bias, params, shape, dtype, out,
                            dispatch.run_backend(name), last)

    def run_auto(x4, w, b, p, r4):
        # chosen once the output exists: the model's tables need it
        chosen = dispatch.choose(x4.shape, w.shape, p, dtype, r4.shape[2:], last).backend
        if picked is not None:
            picked.append(chosen)
        return dispatch.run_backend(chosen)(x4, w, b, p, r4)

    return compute_into(x, weight, bias, params, shape, dtype, out, run_auto, last)


def lifted(problem):
    """A 1-D problem as the 2-D problem of unit height it runs as.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.ops import lifted
    >>> from convtranspose.problem import Op, validate
    >>> f4 = np.dtype(np.float32)
    >>> p = validate(Op(True, 1), (2, 8, 5), (8, 4, 3), None, [f4, f4], (2, 1, 1, 1, 1),
    ...              None, "NCW", "auto")
    >>> p.shape, lifted(p).shape, lifted(p).params.pads
    ((2, 4, 10), (2, 4, 1, 10), ((0, 0), (1, 1)))
    """
    p = problem.params
    params = ConvParams((1, *p.stride), ((0, 0), *p.pads), (0, *p.output_padding),
                        (1, *p.dilation), p.groups)
    return dataclasses.replace(problem, op=dataclasses.replace(problem.op, rank=2),
                               params=params, shape=(*problem.shape[:-1], 1, problem.shape[-1]))


# ----------------------------------------------------------------------------
# the correlation, the weight and bias gradients on the CPU

def _weight_grad_by(method, a, b, weight, params, dtype):
    """A new ``grad_weight`` of ``weight``'s shape from :func:`weight_grad` of ``a`` (on the
    strided grid) and ``b``, by ``method`` (``"auto"``: the CPU backend the dispatcher
    picks for it)."""
    gw = np.empty(weight.shape, dtype)
    if method == "auto":
        method = dispatch.weight_grad_method(weight.shape[0] // params.groups, weight.shape[1],
                                             weight.shape[2:], a.size // a.shape[1])
    return weight_grad(a, b, gw, params, method)


def bias_grad(g):
    """``grad_bias``: ``g`` (N, C, *spatial; any rank, a channels-first view whose memory
    may be channels-last) summed over all but the channels by
    :func:`convtranspose.cpu.backward.channel_sums` (a fixed order, the one ``@njit``
    code uses), silently: ``inf - inf`` gives NaN and a float32 sum may overflow to Inf,
    as in PyTorch."""
    n, c, p = g.shape[0], g.shape[1], math.prod(g.shape[2:])
    out = np.empty(c, g.dtype)
    moved = np.moveaxis(g, 1, -1)
    last = not g.flags.c_contiguous and moved.flags.c_contiguous
    g3 = moved.reshape(n, p, c) if last else np.ascontiguousarray(g).reshape(n, c, p)
    if out.size:
        launch(cpu_backward.channel_sums, g3, out, last)
    return out


# ----------------------------------------------------------------------------
# the convolution and the gradients

def _correlate_in(x, weight, bias, params, out, method):
    """:func:`correlate` with the arguments of a ``run`` (batched or not) and ``method``."""
    return correlate(batched(x), weight, bias, batched(out), params, method)


def _engine_fits(x, weight, params, out, last):
    """Whether one image of the correlation of ``x`` into ``out`` (indexed channels-first,
    batched or not; ``last``: channels-last memory) fits the engine's buffers in the
    workspace limit."""
    return direct.correlation_fits(x, weight, params, out, out.dtype.itemsize, last)


def gradients(problem, g, x, weight, needs):
    """The gradients ``(grad_input, grad_weight, grad_bias)`` of a validated gradient
    :class:`~convtranspose.problem.Problem` on NumPy operands (``g`` and ``x`` indexed
    channels-first, views of channels-last memory when ``problem.last``, as ``grad_input``
    is), each computed where ``needs`` says so, else ``None``.

    Rank 1 runs as the 2-D problem of unit height on views; rank 3 by
    :mod:`convtranspose.depth`. The input gradient of a transposed convolution is a
    correlation and that of a correlation a transposed convolution (by the forward
    backends); the weight gradient is :func:`weight_grad`'s, the bias gradient
    :func:`bias_grad`'s.
    """
    op, last = problem.op, problem.last
    if op.rank == 1:
        gx, gw, gb = gradients(lifted(problem), g[..., None, :], x[..., None, :],
                               weight[..., None, :], needs)
        return (None if gx is None else gx[..., 0, :]), (None if gw is None else gw[..., 0, :]), gb
    params, dtype, method = problem.params, problem.dtype, problem.backend
    rank = op.rank
    gn = batched_to(in_layout(g, dtype, last, rank), rank)
    xn = batched_to(in_layout(x, dtype, last, rank), rank)
    weight = native(weight, dtype)
    gx = gw = gb = None
    if needs[0]:
        gx = new_result(x.shape, dtype, last, rank, "grad_input")
        if not (op.transposed and rank == 2):   # the 2-D correlation writes every element
            gx[...] = 0
        if gx.size and gn.size:
            _input_grad(op, gn, weight, batched_to(gx, rank), params, method, last)
    if needs[1]:
        if rank == 3:
            gw = np.zeros(weight.shape, dtype)
            if gw.size and xn.size:
                a, b = (xn, gn) if op.transposed else (gn, xn)
                depth.weight_grad(a, b, gw, params, method, last)
        else:
            gw = _weight_grad_by(method, *((xn, gn) if op.transposed else (gn, xn)), weight,
                                 params, dtype)
    if needs[2]:
        gb = bias_grad(gn)
    return gx, gw, gb


def _input_grad(op, g, weight, gx, params, method, last):
    """``grad_input`` of batched ``g`` into zeroed batched ``gx``: a correlation for a
    transposed convolution, a transposed convolution (the adjoint) for a correlation."""
    rank = op.rank
    if op.transposed:
        if rank == 3:
            depth.correlate(g, weight, None, gx, params, method, last)
            return
        if method == "auto":
            method = dispatch.correlate_method(weight.shape[0] // params.groups,
                                               weight.shape[1], weight.shape[2:],
                                               gx.size // gx.shape[1],
                                               _engine_fits(g, weight, params, gx, last),
                                               images=gx.shape[0])
        correlate(g, weight, None, gx, params, method)
        return
    tparams = adjoint_params(params, g.shape[2:], weight.shape[2:], gx.shape[2:])
    if rank == 3:
        depth.scatter(g, weight, None, tparams, gx, method, last)
        return
    if method == "auto":
        method = dispatch.choose(g.shape, weight.shape, tparams, gx.dtype).backend
    dispatch.operation("conv_transpose", method)(g, weight, None, tparams, gx)
