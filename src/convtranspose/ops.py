"""The operations on in-memory arrays: NumPy arrays on the CPU, CUDA arrays on their GPU.

Each function here validates its operands once (:mod:`convtranspose.params`), sends CUDA
arrays to :mod:`convtranspose.cuda`, and for NumPy arrays picks a CPU backend
(:mod:`convtranspose.dispatch`) and runs it. The public functions
(:func:`convtranspose.conv_transpose2d`, :func:`convtranspose.conv2d` and the gradients, in
``api.py``, ``conv.py`` and ``grad.py``) send Dask arrays to :mod:`convtranspose.dask_ops`
and everything else here; the tasks of a Dask graph call these same functions on their
NumPy chunks. So this module imports neither the public modules nor ``dask_ops``.

The convolution and the transposed convolution are adjoint, so they share their kernels:
``conv2d``'s forward is the correlation of :mod:`convtranspose.cpu.backward` (also the
transposed convolution's input gradient), and ``conv2d``'s input gradient is a transposed
convolution, run by the forward backends of :data:`convtranspose.dispatch.BACKENDS`.
"""
from __future__ import annotations

import math

import numpy as np

from . import cuda, dispatch, halfops, nonfinite
from ._arrays import (batched, channels_first, channels_last, compute_into, host_array,
                      host_operands, in_layout, is_device_array, laid_out, new_result)
from ._threading import launch
from .cpu import backward as cpu_backward
from .cpu import direct
from .cpu.workspace import get_workspace_limit
from .params import (adjoint_params, is_channels_last, normalise, normalise_backward,
                     normalise_conv2d, normalise_conv2d_backward)

__all__ = ["conv_transpose2d", "conv2d", "conv2d_backward", "conv_transpose2d_backward", "GPU_LAYOUT",
           "on_gpu", "correlate", "weight_grad", "bias_grad"]


# ----------------------------------------------------------------------------
# the transposed convolution

def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, *, output_size=None, out=None, backend="auto",
                     data_format="NCHW"):
    """:func:`convtranspose.conv_transpose2d` of NumPy or CUDA arrays (not Dask arrays)."""
    if data_format != "NCHW" and is_channels_last(data_format, 2):
        if dispatch.check_backend(backend) in dispatch.GPU_BACKENDS:
            raise NotImplementedError(GPU_LAYOUT)
        given = out
        x, out = _from_channels_last(x, "x"), _from_channels_last(out, "out")
        y = _conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                              dilation, output_size, out, backend, True)
        return given if given is not None else channels_last(y, 2)
    return _conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation,
                             output_size, out, backend, False)


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


def _conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation,
                      output_size, out, backend, last):
    key = _fast_key(x, weight, bias, out, stride, padding, output_padding, groups, dilation,
                    output_size, (backend, last))
    hit = _VALIDATED.get(key) if key is not None else None
    if hit is None:
        if any(is_device_array(a, n) for a, n in
               ((x, "x"), (weight, "weight"), (bias, "bias"), (out, "out")) if a is not None):
            if last:
                raise NotImplementedError(GPU_LAYOUT)
            if dispatch.check_backend(backend) not in ("auto", *dispatch.GPU_BACKENDS):
                raise ValueError(f"backend {backend!r} runs on the CPU but CUDA arrays were "
                                 "given: use backend='auto' or 'cuda', or copy them to NumPy "
                                 "arrays")
            return cuda.conv_transpose2d(x, weight, bias, stride, padding, output_padding,
                                         groups, dilation, output_size=output_size, out=out)
        x, weight, bias, dtypes = host_operands(x, weight, bias)
        params, shape, dtype = normalise(
            x.shape, weight.shape, None if bias is None else bias.shape,
            dtypes, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size, last=last)
        hit = params, shape, dtype, dispatch.check_backend(backend)
        if key is not None:
            if len(_VALIDATED) >= _VALIDATED_MAX:
                _VALIDATED.clear()
            _VALIDATED[key] = hit
    params, shape, dtype, name = hit
    if halfops.takes(x, weight, bias):     # the engine where float32 runs it, else chunks
        fallback = dispatch.run_backend("direct" if name == "auto" else name)
        return compute_into(x, weight, bias, params, shape, dtype, out,
                            halfops.transposed(name, fallback), last, convert=False)
    if name != "auto":
        return compute_into(x, weight, bias, params, shape, dtype, out,
                            dispatch.run_backend(name), last)

    def run_auto(x4, w, b, p, r4):
        # chosen once the output exists: the model's tables need it
        chosen = dispatch.choose(x4.shape, w.shape, p, dtype, r4.shape[2:], last).backend
        if key is not None:
            _VALIDATED[key] = p, shape, dtype, chosen
        return dispatch.run_backend(chosen)(x4, w, b, p, r4)

    return compute_into(x, weight, bias, params, shape, dtype, out, run_auto, last)


# Validated calls, by the operands' types, shapes and dtypes, the hyper-parameters as
# given and the workspace limit (on which the backend "auto" picks depends): a layer
# called again skips validation and the backend choice (tens of microseconds, as long as
# a small problem's whole computation). Only plain ndarrays and int / tuple-of-int
# hyper-parameters are keyed, with their exact types, so every call that could raise
# still goes through `normalise`.
_VALIDATED = {}
_VALIDATED_MAX = 512


def _int_tree(v):
    """``v`` if it is an int or (nested) tuple of ints, by exact type; else ``None``."""
    if type(v) is int:
        return v
    if type(v) is tuple and all(type(e) is int or (type(e) is tuple and
                                                   all(type(f) is int for f in e)) for e in v):
        return v
    return None


def _fast_key(x, weight, bias, out, stride, padding, output_padding, groups, dilation,
              output_size, backend):
    """The cache key of a call, or ``None`` when it may not use the cache."""
    if type(x) is not np.ndarray or type(weight) is not np.ndarray:
        return None
    if (bias is not None and type(bias) is not np.ndarray) or \
            (out is not None and type(out) is not np.ndarray):
        return None
    hyper = (stride, padding, output_padding, groups, dilation)
    for v in hyper:
        if type(v) is not int and _int_tree(v) is None:
            return None
    if type(backend[0]) is not str or \
            (output_size is not None and _int_tree(output_size) is None):
        return None
    return (x.shape, x.dtype, weight.shape, weight.dtype,
            None if bias is None else (bias.shape, bias.dtype), hyper, output_size, backend,
            get_workspace_limit())


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


def _before(params):
    return params.pad_h[0], params.pad_w[0]


def correlate(x, weight, bias, out, params, method):
    """The correlation of :mod:`convtranspose.cpu.backward` (4-D ``x`` and ``out``) by
    ``method``, with PyTorch's NaN where a padding zero meets a non-finite weight
    (:func:`convtranspose.nonfinite.correlate_nan`). Returns ``out``."""
    dispatch.operation("correlate", method)(x, weight, bias, out, params.stride,
                                            params.dilation, _before(params), params.groups)
    return nonfinite.correlate_nan(out, weight, x.shape[2:], params.stride, params.dilation,
                                   _before(params))


def weight_grad(a, b, gw, params, method):
    """The weight gradient of :mod:`convtranspose.cpu.backward` (``a`` on the strided
    grid, ``b`` sampled, both 4-D) by ``method``, with PyTorch's NaN where a non-finite
    ``a`` meets a zero read outside ``b`` (:func:`convtranspose.nonfinite.weight_grad_nan`).
    Returns ``gw``."""
    dispatch.operation("weight_grad", method)(a, b, gw, params.stride, params.dilation,
                                              _before(params), params.groups)
    return nonfinite.weight_grad_nan(gw, a, b.shape[2:], params.stride, params.dilation,
                                     _before(params))


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

def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           backend="auto", data_format="NCHW"):
    """:func:`convtranspose.conv2d` of NumPy or CUDA arrays (not Dask arrays)."""
    last = is_channels_last(data_format, 2)
    if last:
        x = _from_channels_last(x, "x")
    if on_gpu(backend, x=x, weight=weight, bias=bias):
        if last:
            raise NotImplementedError(GPU_LAYOUT)
        return cuda.conv2d(x, weight, bias, stride, padding, dilation, groups)
    x, weight, bias, dtypes = host_operands(x, weight, bias)
    params, shape, dtype = normalise_conv2d(
        x.shape, weight.shape, None if bias is None else bias.shape,
        dtypes, stride=stride, padding=padding, dilation=dilation,
        groups=groups, last=last)
    method = dispatch.check_method(backend)
    if halfops.takes(x, weight, bias):     # the engine where float32 runs it, else chunks
        out = compute_into(x, weight, bias, params, shape, dtype, None,
                           halfops.correlation(method, _correlate_in), last, convert=False)
        return channels_last(out, 2) if last else out
    x = in_layout(x, dtype, last, 2)
    weight = np.ascontiguousarray(weight, dtype)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype)
    out = new_result(shape, dtype, last, 2)
    if out.size:
        g = params.groups
        if method == "auto":
            method = dispatch.correlate_method(weight.shape[0] // g, weight.shape[1],
                                               weight.shape[2:], out.size // out.shape[-3],
                                               _engine_fits(x, weight, params, out, last))
        correlate(batched(x), weight, bias, batched(out), params, method)
    return channels_last(out, 2) if last else out


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
