"""The CPU backend of NumPy operands: forward problems of every rank, and the 2-D gradients.

:func:`forward` runs a :class:`~convtranspose.operation.Problem` that the operation layer
(:mod:`convtranspose.operation`) validated once: it picks a CPU backend
(:mod:`convtranspose.dispatch`; ``"auto"`` by the cost model) and runs it, rank 1 as 2-D of
unit height and rank 3 through :mod:`convtranspose.depth`. The tasks of a Dask graph reach
it through the operation layer too. The 2-D gradients (``conv2d_backward``,
``conv_transpose2d_backward``) still validate their own operands here and send CUDA
arrays to :mod:`convtranspose.cuda`. This module imports neither the public modules nor
``dask_ops``.

The convolution and the transposed convolution are adjoint, so they share their kernels:
``conv2d``'s forward is the correlation of :mod:`convtranspose.cpu.backward` (also the
transposed convolution's input gradient), and ``conv2d``'s input gradient is a transposed
convolution, run by the forward backends of :data:`convtranspose.dispatch.BACKENDS`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from . import cuda, depth, dispatch, halfops
from ._arrays import (batched, channels_first, compute_into, host_array, in_layout,
                      is_device_array, laid_out, new_result)
from ._threading import launch
from .dispatch import correlate, weight_grad
from .cpu import backward as cpu_backward
from .cpu import direct
from .params import (ConvParams, adjoint_params, is_channels_last, normalise_backward,
                     normalise_conv2d_backward)

__all__ = ["forward", "conv2d_backward", "conv_transpose2d_backward", "GPU_LAYOUT", "on_gpu",
           "correlate", "weight_grad", "bias_grad"]


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
        lifted = forward(_lifted(problem), name, x[..., None, :], weight[..., None, :], bias,
                         None if out is None else out[..., None, :], picked)
        return lifted[..., 0, :]
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
                                                       _engine_fits(x4, w, p, r4, last))
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


def _lifted(problem):
    """A 1-D problem as the 2-D problem of unit height it runs as.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.ops import _lifted
    >>> from convtranspose.problem import Op, validate
    >>> f4 = np.dtype(np.float32)
    >>> p = validate(Op(True, 1), (2, 8, 5), (8, 4, 3), None, [f4, f4], (2, 1, 1, 1, 1),
    ...              None, "NCW", "auto")
    >>> p.shape, _lifted(p).shape, _lifted(p).params.pads
    ((2, 4, 10), (2, 4, 1, 10), ((0, 0), (1, 1)))
    """
    p = problem.params
    params = ConvParams((1, *p.stride), ((0, 0), *p.pads), (0, *p.output_padding),
                        (1, *p.dilation), p.groups)
    return dataclasses.replace(problem, op=dataclasses.replace(problem.op, rank=2),
                               params=params, shape=(*problem.shape[:-1], 1, problem.shape[-1]))


#: Why a channels-last call cannot run on the GPU; said before any work, by every function.
GPU_LAYOUT = ("the cuda backend takes the channels-first layout only (NCW, NCHW, NCDHW): "
               "transpose the arrays, or run channels-last data on the CPU")


def _from_channels_last(a, name):
    """A channels-last operand as a channels-first view (NumPy arrays; CUDA arrays are
    refused, ``None`` stays ``None``)."""
    if a is None:
        return None
    if is_device_array(a, name):
        raise NotImplementedError(f"{name} is a CUDA array: channels-last layouts are taken "
                                  "on the CPU only (transpose it on the GPU, or pass the "
                                  "channels-first layout)")
    if name == "out" and not isinstance(a, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(a).__name__}")
    a = host_array(a, name)
    if a.ndim < 3:
        raise ValueError(f"{name} must have 4 dimensions (N, H, W, C) or 3 (H, W, C) in the "
                         f"channels-last layout, got shape {a.shape}")
    return channels_first(a, 2)


# ----------------------------------------------------------------------------
# the correlation, the weight and bias gradients on the CPU

def on_gpu(backend, **arrays):
    """True when the call runs on the GPU: ``backend="cuda"``, or CUDA arrays among
    ``arrays`` (``ValueError`` if a CPU backend is named with them)."""
    device = [n for n, a in arrays.items() if a is not None and is_device_array(a, n)]
    if device and dispatch.check_method(backend) not in ("auto", "cuda"):
        raise ValueError(f"backend {backend!r} runs on the CPU but {device[0]} is a CUDA array: "
                         "use backend='auto' or 'cuda', or copy the arrays to NumPy")
    return bool(device) or dispatch.check_method(backend) == "cuda"


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


def _gradient_operands(data_format, grad_output, x):
    """Whether the gradients' layout is channels-last, and ``grad_output`` and ``x`` as
    channels-first views if so."""
    last = is_channels_last(data_format, 2)
    if last:
        grad_output, x = (_from_channels_last(grad_output, "grad_output"),
                          _from_channels_last(x, "x"))
    return last, grad_output, x


def conv2d_backward(grad_output, x, weight, stride=1, padding=0, dilation=1, groups=1, *,
                    needs_input_grad=True, needs_weight_grad=True, needs_bias_grad=True,
                    backend="auto", data_format="NCHW"):
    """:func:`convtranspose.conv2d_backward` of NumPy or CUDA arrays (not Dask arrays)."""
    last, grad_output, x = _gradient_operands(data_format, grad_output, x)
    if on_gpu(backend, grad_output=grad_output, x=x, weight=weight):
        if last:
            raise NotImplementedError(GPU_LAYOUT)
        return cuda.conv2d_backward(grad_output, x, weight, stride, padding, dilation, groups,
                                    needs_input_grad=needs_input_grad,
                                    needs_weight_grad=needs_weight_grad,
                                    needs_bias_grad=needs_bias_grad)
    g = host_array(grad_output, "grad_output")
    x = host_array(x, "x")
    weight = host_array(weight, "weight")
    params, dtype = normalise_conv2d_backward(
        g.shape, x.shape, weight.shape, [g.dtype, x.dtype, weight.dtype], stride=stride,
        padding=padding, dilation=dilation, groups=groups, last=last)
    method = dispatch.check_method(backend)
    g4 = batched(in_layout(g, dtype, last, 2))
    x4 = batched(in_layout(x, dtype, last, 2))
    weight = np.ascontiguousarray(weight, dtype)
    grad_input = grad_weight = grad_bias = None
    if needs_input_grad:
        grad_input = new_result(x.shape, dtype, last, 2, "grad_input")
        grad_input[...] = 0
        if grad_input.size:
            tparams = adjoint_params(params, g4.shape[2:], weight.shape[2:], x4.shape[2:])
            name = method
            if name == "auto":
                name = dispatch.choose(g4.shape, weight.shape, tparams, dtype).backend
            dispatch.operation("conv_transpose", name)(g4, weight, None, tparams,
                                                       batched(grad_input))
    if needs_weight_grad:
        grad_weight = _weight_grad_by(method, g4, x4, weight, params, dtype)
    if needs_bias_grad:
        grad_bias = bias_grad(g4)
    return laid_out(grad_input, last, 2), grad_weight, grad_bias


def conv_transpose2d_backward(grad_output, x, weight, stride=1, padding=0, output_padding=0,
                              groups=1, dilation=1, *, output_size=None, needs_input_grad=True,
                              needs_weight_grad=True, needs_bias_grad=True, backend="auto",
                              data_format="NCHW"):
    """:func:`convtranspose.conv_transpose2d_backward` of NumPy or CUDA arrays (not Dask
    arrays)."""
    last, grad_output, x = _gradient_operands(data_format, grad_output, x)
    if on_gpu(backend, grad_output=grad_output, x=x, weight=weight):
        if last:
            raise NotImplementedError(GPU_LAYOUT)
        return cuda.conv_transpose2d_backward(
            grad_output, x, weight, stride, padding, output_padding, groups, dilation,
            output_size=output_size, needs_input_grad=needs_input_grad,
            needs_weight_grad=needs_weight_grad, needs_bias_grad=needs_bias_grad)
    g = host_array(grad_output, "grad_output")
    x = host_array(x, "x")
    weight = host_array(weight, "weight")
    params, dtype = normalise_backward(
        g.shape, x.shape, weight.shape, [g.dtype, x.dtype, weight.dtype], stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size, last=last)
    method = dispatch.check_method(backend)
    g4 = batched(in_layout(g, dtype, last, 2))
    x4 = batched(in_layout(x, dtype, last, 2))
    weight = np.ascontiguousarray(weight, dtype)
    grp = params.groups
    grad_input = grad_weight = grad_bias = None
    if needs_input_grad:
        grad_input = new_result(x.shape, dtype, last, 2, "grad_input")
        if grad_input.size:
            name = method
            if name == "auto":
                name = dispatch.correlate_method(weight.shape[0] // grp, weight.shape[1],
                                                 weight.shape[2:], x4.size // x4.shape[1],
                                                 _engine_fits(g4, weight, params,
                                                              batched(grad_input), last))
            correlate(g4, weight, None, batched(grad_input), params, name)
    if needs_weight_grad:
        grad_weight = _weight_grad_by(method, x4, g4, weight, params, dtype)
    if needs_bias_grad:
        grad_bias = bias_grad(g4)
    return laid_out(grad_input, last, 2), grad_weight, grad_bias
