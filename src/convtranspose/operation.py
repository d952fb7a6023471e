"""The operation layer: one path from every public function to a backend.

``conv_transpose{1,2,3}d`` and ``conv{1,2,3}d`` are names over :func:`forward`, their
``*_backward`` functions names over :func:`gradients`; both take any rank and layout and

1. **route by the operands' kind:** complex operands to :mod:`convtranspose.complexops`
   (three real calls, back through this layer), half-precision gradients to float32
   copies (:func:`convtranspose.halfops.float32_gradients`), Dask arrays to the graph
   builder (:mod:`convtranspose.dask_ops`, whose tasks call this layer on NumPy tiles),
   CUDA arrays (and ``backend="cuda"``) to :mod:`convtranspose.cuda`, NumPy operands to
   the CPU;
2. **validate NumPy operands once** (:func:`convtranspose.problem.validate` and
   :func:`~convtranspose.problem.validate_gradients`: pure functions of shapes, dtypes and
   ints, in the caller's layout so messages speak it) into a
   :class:`~convtranspose.problem.Problem`; a forward call's is remembered by the call's
   shapes, dtypes and hyper-parameters, so that a layer called again skips it;
3. **hand the problem to the CPU backend** (:func:`convtranspose.ops.forward`,
   :func:`convtranspose.ops.gradients`), with the layout decided here once: channels-last
   operands become channels-first views of the same memory, and the results are viewed
   back once.

Rank 1 runs as rank 2 of unit height: a 1-D :class:`~convtranspose.problem.Problem` is
run lifted by the CPU backend without validating again, and 1-D Dask or CUDA operands are
viewed as 2-D ones here (:func:`lift`) before they go on.
"""
from __future__ import annotations

import functools

import numpy as np

from . import complexops, cuda, dask_ops, dispatch, halfops, ops
from ._arrays import (any_dask, channels_first, channels_last, check_out, host_array,
                      host_operands, is_complex, is_dask_array, is_device_array)
from .cpu.workspace import get_workspace_limit
from .params import DATA_FORMATS, is_channels_last, is_half
from .problem import Op, validate, validate_gradients

__all__ = ["forward", "gradients", "tiles", "GPU_LAYOUT", "lift", "unlift",
           "operand_of_any_kind"]

#: Why a channels-last call cannot run on the GPU; said before any work, by every function.
GPU_LAYOUT = ("the cuda backend takes the channels-first layout only (NCW, NCHW, NCDHW): "
               "transpose the arrays, or run channels-last data on the CPU")


#: The layout of the calls that name none (the tasks of Dask graphs): the rank's
#: channels-first one. The public functions pass the caller's, so ``None`` from a caller is
#: refused as any other word is.
CHANNELS_FIRST = "channels first"


def forward(op, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
            dilation=1, *, output_size=None, out=None, backend="auto",
            data_format=CHANNELS_FIRST):
    """The public forward function ``op.name`` (its arguments; ``output_padding`` and
    ``output_size`` only for a transposed convolution)."""
    if data_format is CHANNELS_FIRST:
        data_format = DATA_FORMATS[op.rank][0]
    hyper = (stride, padding, output_padding, groups, dilation)
    if _plain(x, weight, bias, out) and backend != "cuda":     # NumPy on the CPU, at once
        return _host(op, x, weight, bias, hyper, output_size, out, backend, data_format)
    if is_complex(x) or is_complex(weight) or is_complex(bias):
        return _complex(op, x, weight, bias, hyper, output_size, out, backend, data_format)
    if op.rank == 1 and (any_dask(x, weight, bias, out) or
                         _on_gpu(op, backend, data_format, x, weight, bias, out)):
        return _lifted_call(op, x, weight, bias, hyper, output_size, out, backend,
                            data_format)
    if any_dask(x, weight, bias, out):
        kw = dict(backend=backend, data_format=data_format, calls=tiles(op.rank))
        if op.transposed:
            return dask_ops.conv_transpose(x, weight, bias, stride, padding, output_padding,
                                           groups, dilation, output_size=output_size,
                                           out=out, **kw)
        return dask_ops.conv(x, weight, bias, stride, padding, dilation, groups, **kw)
    if _on_gpu(op, backend, data_format, x, weight, bias, out):
        return _gpu(op, x, weight, bias, hyper, output_size, out)
    return _host(op, x, weight, bias, hyper, output_size, out, backend, data_format)


def _plain(x, weight, bias, out):
    """Whether the operands are NumPy arrays (``bias`` and ``out`` may be ``None``) of no
    complex dtype: the routes of the other kinds have nothing to say about them."""
    return (type(x) is np.ndarray and type(weight) is np.ndarray
            and (bias is None or type(bias) is np.ndarray)
            and (out is None or type(out) is np.ndarray)
            and x.dtype.kind != "c" and weight.dtype.kind != "c"
            and (bias is None or bias.dtype.kind != "c"))


# ----------------------------------------------------------------------------
# the gradients


def gradients(op, grad_output, x, weight, stride=1, padding=0, output_padding=0, groups=1,
              dilation=1, *, output_size=None, needs_input_grad=True, needs_weight_grad=True,
              needs_bias_grad=True, backend="auto", data_format=CHANNELS_FIRST):
    """The public gradient function of ``op`` (``conv_transpose{rank}d_backward`` or
    ``conv{rank}d_backward``; its arguments, ``output_padding`` and ``output_size`` only for
    a transposed convolution): ``(grad_input, grad_weight, grad_bias)``, ``None`` for each
    not asked for."""
    if data_format is CHANNELS_FIRST:
        data_format = DATA_FORMATS[op.rank][0]
    hyper = (stride, padding, output_padding, groups, dilation)
    needs = (needs_input_grad, needs_weight_grad, needs_bias_grad)
    if is_complex(grad_output) or is_complex(x) or is_complex(weight):
        arguments = dict(grad_output=grad_output, x=x, weight=weight, stride=stride,
                         padding=padding, groups=groups, dilation=dilation,
                         needs_input_grad=needs[0], needs_weight_grad=needs[1],
                         needs_bias_grad=needs[2], backend=backend, data_format=data_format)
        if op.transposed:
            arguments.update(output_padding=output_padding, output_size=output_size)
        return complexops.run_gradients(_named_gradients(op), arguments, op.rank,
                                        not op.transposed)
    g, x, weight = (a if isinstance(a, np.ndarray) or is_dask_array(a) or
                    is_device_array(a, n) else host_array(a, n)
                    for a, n in ((grad_output, "grad_output"), (x, "x"), (weight, "weight")))
    half = any(isinstance(getattr(a, "dtype", None), np.dtype) and is_half(a.dtype)
               for a in (g, x, weight))
    run = _in_float32(op) if half else functools.partial(_gradients, op)
    return run(g, x, weight, hyper, output_size, needs, data_format, backend=backend)


@functools.lru_cache(maxsize=None)
def _in_float32(op):
    """:func:`_gradients` of ``op``, on float32 copies of half-precision operands
    (:func:`convtranspose.halfops.float32_gradients`)."""
    return halfops.float32_gradients(functools.partial(_gradients, op))


def _gradients(op, g, x, weight, hyper, output_size, needs, data_format, *, backend):
    """The gradients of real operands: routed as :func:`forward` routes its operands."""
    if op.rank == 1 and (any_dask(g, x, weight) or
                         _on_gpu(op, backend, data_format, g, x, weight, gradients=True)):
        return _lifted_gradients(op, g, x, weight, hyper, output_size, needs, data_format,
                                 backend)
    stride, padding, output_padding, groups, dilation = hyper
    kw = dict(needs_input_grad=needs[0], needs_weight_grad=needs[1], needs_bias_grad=needs[2],
              backend=backend)
    if any_dask(g, x, weight):
        calls = tiles(op.rank, _named_gradients(Op(True, op.rank)))
        if op.transposed:
            return dask_ops.conv_transpose_backward(
                g, x, weight, stride, padding, output_padding, groups, dilation,
                output_size=output_size, data_format=data_format, calls=calls, **kw)
        return dask_ops.conv_backward(g, x, weight, stride, padding, dilation, groups,
                                      data_format=data_format, calls=calls, **kw)
    if _on_gpu(op, backend, data_format, g, x, weight, gradients=True):
        del kw["backend"]
        if op.rank == 3:
            cuda._check_usable(grad_output=g, x=x, weight=weight)
            from .cuda import rank3 as gpu
            if op.transposed:
                return gpu.conv_transpose3d_backward(g, x, weight, stride, padding,
                                                     output_padding, groups, dilation,
                                                     output_size=output_size, **kw)
            return gpu.conv3d_backward(g, x, weight, stride, padding, dilation, groups, **kw)
        if op.transposed:
            return cuda.conv_transpose2d_backward(g, x, weight, stride, padding, output_padding,
                                                  groups, dilation, output_size=output_size,
                                                  **kw)
        return cuda.conv2d_backward(g, x, weight, stride, padding, dilation, groups, **kw)
    g, x, weight = (host_array(a, n) for a, n in
                    ((g, "grad_output"), (x, "x"), (weight, "weight")))
    problem = validate_gradients(op, g.shape, x.shape, weight.shape,
                                 [("grad_output", g.dtype), ("x", x.dtype),
                                  ("weight", weight.dtype)],
                                 hyper, output_size, data_format, backend)
    if problem.last:
        g, x = channels_first(g, op.rank), channels_first(x, op.rank)
    gx, gw, gb = ops.gradients(problem, g, x, weight, needs)
    return (None if gx is None else channels_last(gx, op.rank) if problem.last else gx), gw, gb


def _lifted_gradients(op, g, x, weight, hyper, output_size, needs, data_format, backend):
    """1-D gradients of Dask or CUDA operands: validated at rank 1, then the 2-D gradients
    of unit height on views."""
    g, x, weight, dtypes = operands_of_any_kind(("grad_output", g), ("x", x),
                                                ("weight", weight))
    for a, name in ((x, "x"), (g, "grad_output")):
        if is_dask_array(a):
            dask_ops.known_chunks(a, name)
    problem = validate_gradients(op, tuple(g.shape), tuple(x.shape), tuple(weight.shape),
                                 dtypes, hyper, output_size, data_format, backend)
    last, p = problem.last, ops.lifted(problem).params
    gx, gw, gb = gradients(
        Op(op.transposed, 2), lift(g, "grad_output", last), lift(x, "x", last),
        lift(weight, "weight"), p.stride, p.pads, p.output_padding, p.groups, p.dilation,
        needs_input_grad=needs[0], needs_weight_grad=needs[1], needs_bias_grad=needs[2],
        backend=backend, data_format=DATA_FORMATS[2][last])
    return unlift(gx, last), unlift(gw), gb


@functools.lru_cache(maxsize=None)
def _named_gradients(op):
    """:func:`gradients` of ``op`` as a function named as the public one."""
    call = functools.partial(gradients, op)
    call.__name__ = call.__qualname__ = f"{op.name}_backward"
    return call


# ----------------------------------------------------------------------------
# NumPy operands: validated once, then the CPU backend


def _host(op, x, weight, bias, hyper, output_size, out, backend, data_format):
    key = _fast_key(x, weight, bias, out, hyper, output_size, (op, backend, data_format))
    hit = _VALIDATED.get(key) if key is not None else None
    if hit is None:
        is_channels_last(data_format, op.rank)      # the layout's word before the operands
        x, weight, bias, dtypes = host_operands(x, weight, bias)
        problem = validate(op, x.shape, weight.shape, None if bias is None else bias.shape,
                           dtypes, hyper, output_size, data_format, backend)
        hit = problem, problem.backend
        if key is not None:
            if len(_VALIDATED) >= _VALIDATED_MAX:
                _VALIDATED.clear()
            _VALIDATED[key] = hit
    problem, name = hit
    given = out
    if out is not None:
        if not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        check_out(out, problem.caller_shape, problem.dtype)
    if problem.last:
        x = channels_first(x, op.rank)
        out = None if out is None else channels_first(out, op.rank)
    picked = []
    y = ops.forward(problem, name, x, weight, bias, out, picked)
    if picked and key is not None:      # the backend "auto" picked: the next call skips it
        _VALIDATED[key] = problem, picked[0]
    if given is not None:
        return given
    return channels_last(y, op.rank) if problem.last else y


# Validated calls (the problem, and the backend to run: the one "auto" picked once it has),
# by the operation, the operands' types, shapes and dtypes, the hyper-parameters as given
# and the workspace limit (on which the backend "auto" picks depends): a layer called
# again skips validation and the backend choice (tens of microseconds, as long as a small
# problem's whole computation). Only plain ndarrays and int / tuple-of-int
# hyper-parameters are keyed, with their exact types, so every call that could raise
# still goes through `validate`.
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


def _fast_key(x, weight, bias, out, hyper, output_size, call):
    """The cache key of a call, or ``None`` when it may not use the cache."""
    if type(x) is not np.ndarray or type(weight) is not np.ndarray:
        return None
    if (bias is not None and type(bias) is not np.ndarray) or \
            (out is not None and type(out) is not np.ndarray):
        return None
    for v in hyper:
        if type(v) is not int and _int_tree(v) is None:
            return None
    if type(call[1]) is not str or type(call[2]) is not str or \
            (output_size is not None and _int_tree(output_size) is None):
        return None
    return (x.shape, x.dtype, weight.shape, weight.dtype,
            None if bias is None else (bias.shape, bias.dtype), hyper, output_size, call,
            get_workspace_limit())


# ----------------------------------------------------------------------------
# the other kinds of operand


def _on_gpu(op, backend, data_format, *arrays, gradients=False):
    """Whether the call runs on the GPU module: CUDA arrays among ``arrays``, or
    ``backend="cuda"`` (except the forward transposed convolution of rank 1 or 2 on NumPy
    arrays, which the CPU backend's ``"cuda"`` entry copies to the GPU and back). Refuses,
    before any work and in this order, a bad ``data_format`` or ``backend``, a CPU backend
    named with CUDA arrays and a channels-last layout there. ``arrays`` are the forward's ``x, weight, bias, out``, or with ``gradients``
    ``grad_output, x, weight``."""
    names = ("grad_output", "x", "weight") if gradients else ("x", "weight", "bias", "out")
    device = [n for n, a in zip(names, arrays) if a is not None and is_device_array(a, n)]
    if not device and not (isinstance(backend, str) and backend in dispatch.GPU_BACKENDS):
        return False            # a bad backend name is said after the operands are checked
    last = is_channels_last(data_format, op.rank)
    check = dispatch.check_backend if op.transposed and not gradients else dispatch.check_method
    name = check(backend)
    if device and name not in ("auto", *dispatch.GPU_BACKENDS):
        raise ValueError(f"backend {backend!r} runs on the CPU but {device[0]} is a CUDA "
                         "array: use backend='auto' or 'cuda', or copy the arrays to NumPy")
    if last:
        raise NotImplementedError(GPU_LAYOUT)
    return bool(device) or gradients or not op.transposed or op.rank == 3


def _gpu(op, x, weight, bias, hyper, output_size, out):
    """The call on the GPU (:mod:`convtranspose.cuda`; 3-D by :mod:`convtranspose.cuda.rank3`)."""
    stride, padding, output_padding, groups, dilation = hyper
    if op.rank == 3:
        cuda._check_usable(x=x, weight=weight, bias=bias, out=out)
        if out is not None:
            raise NotImplementedError("out= is not taken by the 3-D functions on the GPU")
        from .cuda import rank3 as gpu
        if op.transposed:
            return gpu.conv_transpose3d(x, weight, bias, stride, padding, output_padding,
                                        groups, dilation, output_size=output_size)
        return gpu.conv3d(x, weight, bias, stride, padding, dilation, groups)
    if op.transposed:
        return cuda.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups,
                                     dilation, output_size=output_size, out=out)
    return cuda.conv2d(x, weight, bias, stride, padding, dilation, groups)


def _complex(op, x, weight, bias, hyper, output_size, out, backend, data_format):
    """Complex operands: :func:`convtranspose.complexops.run_forward`, whose real calls come
    back to :func:`forward`."""
    stride, padding, output_padding, groups, dilation = hyper
    arguments = dict(x=x, weight=weight, bias=bias, stride=stride, padding=padding,
                     groups=groups, dilation=dilation, out=out, backend=backend,
                     data_format=data_format)
    if op.transposed:
        arguments.update(output_padding=output_padding, output_size=output_size)
    return complexops.run_forward(_named_call(op), arguments, op.rank,
                                  not op.transposed)


def _lifted_call(op, x, weight, bias, hyper, output_size, out, backend, data_format):
    """A 1-D call on Dask or CUDA operands: validated at rank 1 (so errors speak of the
    1-D arguments), then run as the 2-D call of unit height on views of the operands."""
    x, weight, bias, dtypes = operands_of_any_kind(("x", x), ("weight", weight),
                                                   ("bias", bias))
    problem = validate(op, tuple(x.shape), tuple(weight.shape),
                       None if bias is None else tuple(bias.shape), dtypes, hyper,
                       output_size, data_format, backend)
    last = problem.last
    if out is not None and not is_dask_array(out) and not is_device_array(out, "out"):
        check_out(out, problem.caller_shape, problem.dtype)
    p = ops.lifted(problem).params
    kw = dict(stride=p.stride, padding=p.pads, groups=p.groups, dilation=p.dilation,
              backend=backend, data_format=DATA_FORMATS[2][last])
    if op.transposed:
        kw.update(output_padding=p.output_padding, out=lift(out, "out", last))
    y = forward(Op(op.transposed, 2), lift(x, "x", last), lift(weight, "weight"), bias, **kw)
    return out if out is not None else unlift(y, last)


def tiles(rank, backward=None):
    """What the tasks of a Dask graph of ``rank`` call on NumPy tiles
    (:class:`convtranspose.dask_ops.TileCalls`): :func:`forward` for the forward
    operations, and ``backward`` (the rank's public gradient function, which the forward
    graphs do not call)."""
    return dask_ops.TileCalls(rank, _named_call(Op(True, rank)), _named_call(Op(False, rank)),
                              backward)


@functools.lru_cache(maxsize=None)
def _named_call(op):
    """:func:`forward` of ``op`` as a function named as the public one (graph keys say it)."""
    call = functools.partial(forward, op)
    call.__name__ = call.__qualname__ = op.name
    return call


# ----------------------------------------------------------------------------
# rank 1 as rank 2 of unit height: operands of any kind viewed, never copied


def operand_of_any_kind(a, name, required=True):
    """``a`` as something with a ``.shape`` and a NumPy dtype: NumPy, Dask and CUDA
    arrays as they are, anything else through ``numpy.asarray``; with its dtype."""
    if a is None and not required:
        return None, None
    if isinstance(a, np.ndarray) or is_dask_array(a):
        return a, a.dtype
    if is_device_array(a, name):
        typestr = getattr(a, "__cuda_array_interface__", {}).get("typestr")
        return a, np.dtype(a.dtype if typestr is None else typestr)   # simulator: no typestr
    a = host_array(a, name, required)
    return a, a.dtype


def operands_of_any_kind(*named):
    """The ``(name, operand)`` pairs through :func:`operand_of_any_kind` (``"bias"`` may be
    ``None``), then their named dtypes, for validation."""
    arrays, dtypes = [], []
    for name, a in named:
        a, dtype = operand_of_any_kind(a, name, required=name != "bias")
        arrays.append(a)
        if a is not None:
            dtypes.append((name, dtype))
    return (*arrays, dtypes)


def lift(a, name, last=False):
    """``a`` of shape ``(..., L)`` as a view of shape ``(..., 1, L)``, never a copy; with
    ``last`` (a channels-last ``(..., L, C)``), ``(..., 1, L, C)``."""
    if a is None:
        return None
    if last:
        a = operand_of_any_kind(a, name)[0]
        if not (isinstance(a, np.ndarray) or is_dask_array(a)):
            raise NotImplementedError(f"{name} is a CUDA array: channels-last layouts are "
                                      "taken on the CPU only")
        return a[..., None, :, :]
    if isinstance(a, np.ndarray) or is_dask_array(a):
        return a[..., None, :]
    if not hasattr(a, "reshape"):
        raise TypeError(f"{name} is a {type(a).__name__} without a reshape method, which "
                        "the 1-D functions need to view it as a 2-D array of unit height")
    shape = tuple(a.shape)
    return a.reshape(shape[:-1] + (1, shape[-1]))


def unlift(a, last=False):
    """The view of :func:`lift` undone: ``(..., 1, L)`` as ``(..., L)``."""
    if a is None:
        return None
    if last:
        return a[..., 0, :, :]
    if isinstance(a, np.ndarray) or is_dask_array(a):
        return a[..., 0, :]
    shape = tuple(a.shape)
    return a.reshape(shape[:-2] + (shape[-1],))
