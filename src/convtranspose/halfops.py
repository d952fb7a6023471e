"""Half precision: how a call with a float16 or bfloat16 operand runs on the CPU.

NumPy's ``float16`` and ``ml_dtypes.bfloat16`` (the type JAX and TensorFlow hand to NumPy;
an optional dependency this package never imports: the arrays bring it) are accepted by
every function; the result dtype is the operands' promotion, as in PyTorch (float16 with
float16 gives float16, bfloat16 with bfloat16 bfloat16, float16 with bfloat16 float32, and
either with float32 or float64 that dtype).

* **Forward calls** (``conv_transpose{1,2,3}d``, ``conv{1,2,3}d``, either layout, with
  ``out=``) run on the channels-last N-d engine (:mod:`convtranspose.cpu.nd_engine`)
  where the float32 call would (in 1-D and 2-D: the backend named, or ``auto``'s choice
  for the float32 problem, is ``direct`` and ``direct`` runs the engine for it; in 3-D
  always): the operands stay in half precision; the engine widens the input to float32
  in its zero-bordered channels-last copy, one batch chunk at a time within the
  workspace limit, and the weight when it packs it (both in compiled code: NumPy's
  float16 casts take about 1.7 ns an element); accumulates in float32; and rounds each
  result element once (to nearest, ties to even, bitwise as NumPy's ``astype``) as its
  micro-kernel stores it, a vector of channels at a time. So no float32 copy of the
  whole input or output is made.
* **Elsewhere** (few channels per group, where ``direct`` runs its gather kernel, or
  where ``im2col`` is named or picked; and a transposed convolution whose weight holds
  Inf or NaN, which the engine cannot take: its zero border would turn into NaN) the
  float32 code of that backend runs one batch chunk at a time: the chunk's input and
  result converted to float32 (within the workspace limit, one image at least), the
  result rounded into place.
* **Gradients** (the ``*_backward`` functions, and so the layers' ``backward``) take
  float32 copies of their half-precision operands, whole (:func:`float32_gradients`),
  compute in float32, and return the gradients in the promoted dtype.
* **CUDA** arrays and ``backend="cuda"`` refuse half precision with a ``TypeError``.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, TypeVar

import numpy as np

from ._arrays import batched, host_array, is_dask_array, is_device_array
from . import dispatch
from .cpu import direct, nd_engine
from .cpu.half import compute_dtype, narrow, widen
from .cpu.workspace import get_workspace_limit
from .params import is_half, result_dtype

__all__ = ["takes", "transposed", "correlation", "rounded", "float32_gradients"]

_Function = TypeVar("_Function", bound=Callable[..., Any])


def takes(*arrays):
    """Whether one of ``arrays`` (NumPy arrays or ``None``) is float16 or bfloat16.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose import halfops
    >>> halfops.takes(np.zeros(2, np.float32), np.zeros(2, np.float16), None)
    True
    """
    return any(a is not None and is_half(a.dtype) for a in arrays)


def _check_backend(backend):
    if backend == "cuda":
        raise TypeError("backend='cuda' takes float32 or float64 only: half-precision "
                        "operands run on the CPU (backend 'auto', 'direct' or 'im2col')")


def _deep(a, rank):
    """A batched channels-first ``(N, C, *spatial)`` array as 5-D (unit leading spatial
    dimensions), a view."""
    return a[(slice(None), slice(None)) + (None,) * (3 - rank)]


def _geometry(params):
    """``(stride, pads, dilation)`` of ``params`` as the engine's three dimensions."""
    lead = 3 - params.rank
    return ((1,) * lead + params.stride, ((0, 0),) * lead + params.pads,
            (1,) * lead + params.dilation)


def transposed(backend, fallback):
    """The ``run(x, weight, bias, params, out)`` of a transposed convolution with a
    half-precision operand (for :func:`convtranspose._arrays.compute_into` with
    ``convert=False``): the engine where the float32 call would run it (see the module
    notes), else the float32 ``run`` of the backend (``fallback`` for a named one and in
    3-D; ``auto``'s choice in 1-D and 2-D) on float32 batch chunks.
    ``TypeError`` for ``backend="cuda"``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose import dispatch, halfops
    >>> from convtranspose.params import normalise
    >>> x, w = np.ones((1, 1, 1, 2), np.float16), np.ones((1, 1, 1, 3), np.float16)
    >>> params, shape, dtype = normalise(x.shape, w.shape, None, [x.dtype, w.dtype],
    ...                                  stride=2)
    >>> run = halfops.transposed("direct", dispatch.run_backend("direct"))
    >>> run(x, w, None, params, np.empty(shape, dtype))
    array([[[[1., 1., 2., 1., 1.]]]], dtype=float16)
    """
    _check_backend(backend)

    def run(x, weight, bias, params, out):
        rank = params.rank
        name = backend
        if rank < 3 and backend == "auto" and out.size:
            name = dispatch.choose(batched(x).shape, weight.shape, params, _F32,
                                   out.shape[-2:]).backend
        engine = rank == 3 or (name == "direct" and direct.uses_engine(weight.shape, params))
        if not (engine and nd_engine.supported(weight)):
            run32 = fallback if name == backend else dispatch.run_backend(name)
            return _in_float32(run32, x, weight, bias, params, out)
        nd_engine.conv_transpose(_deep(x, rank), _deep(weight, rank), bias, *_geometry(params),
                                 params.groups, _deep(out, rank), False,
                                 limit=get_workspace_limit())
        return out
    return run


def correlation(backend, float32_correlate):
    """The ``run(x, weight, bias, params, out)`` of a convolution (``conv{1,2,3}d``'s
    forward) with a half-precision operand: the engine where the float32 call would run
    it (its zero border gives PyTorch's NaN where padding meets an Inf or NaN weight),
    else ``float32_correlate(x, weight, bias, params, out, method)`` (the float32
    correlation of the method named or picked) on float32 batch chunks. ``TypeError`` for
    ``backend="cuda"``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose import halfops
    >>> from convtranspose.ops import correlate
    >>> from convtranspose.params import normalise_conv
    >>> x = np.arange(4.0, dtype=np.float16).reshape(1, 1, 1, 4)
    >>> w = np.ones((1, 1, 1, 2), np.float16)
    >>> params, shape, dtype = normalise_conv(x.shape, w.shape, None, [x.dtype, w.dtype],
    ...                                       stride=2)
    >>> run = halfops.correlation("direct", lambda x, w, b, p, o, m: correlate(x, w, b, o, p, m))
    >>> run(x, w, None, params, np.empty(shape, dtype))
    array([[[[1., 5.]]]], dtype=float16)
    """
    _check_backend(backend)

    def run(x, weight, bias, params, out):
        rank = params.rank
        method = backend
        if rank < 3 and backend == "auto" and out.size:
            g = params.groups
            method = dispatch.correlate_method(
                weight.shape[0] // g, weight.shape[1], weight.shape[2:],
                out.size // out.shape[-3],
                direct.correlation_fits(x, weight, params, out, _F32.itemsize, False),
                images=out.shape[0] if out.ndim == 4 else 1)
        if rank < 3 and not (method == "direct" and direct.correlation_uses_engine(
                weight.shape, params.groups)):
            return _in_float32(lambda xc, w, b, p, o: float32_correlate(xc, w, b, p, o, method),
                               x, weight, bias, params, out)
        nd_engine.correlate(_deep(x, rank), _deep(weight, rank), bias, *_geometry(params),
                            params.groups, _deep(out, rank), False, limit=get_workspace_limit())
        return out
    return run


_F32 = np.dtype(np.float32)


def _in_float32(run, x, weight, bias, params, out):
    """``run`` (a float32 or float64 backend) on batch chunks of ``x`` converted to the
    compute dtype of ``out``, each chunk's result converted into ``out``; the chunks'
    copies together within the workspace limit (one image at least)."""
    dtype = compute_dtype(out.dtype)
    weight, bias = (None if a is None else
                    widen(a) if is_half(a.dtype) and dtype == np.float32 else
                    np.ascontiguousarray(a, dtype) for a in (weight, bias))
    per_image = (math.prod(x.shape[1:]) + math.prod(out.shape[1:])) * dtype.itemsize
    chunk = max(1, get_workspace_limit() // per_image)
    for n0 in range(0, x.shape[0], chunk):
        part = slice(n0, n0 + chunk)
        if is_half(x.dtype) and dtype == np.float32:
            xc = widen(x[part])                   # compiled: NumPy's float16 cast is slow
        else:
            xc = np.empty_like(x[part], dtype)    # the layout of x, in the compute dtype
            xc[...] = x[part]
        result = np.empty(out[part].shape, dtype)
        run(xc, weight, bias, params, result)
        out[part] = narrow(result, out.dtype) if is_half(out.dtype) else result
    return out


def rounded(a, dtype):
    """``a`` (a NumPy or Dask array) in ``dtype``, rounded to nearest even where that is
    narrower, overflow to Inf and NaN given silently (a lazy cast for a Dask array).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose import halfops
    >>> halfops.rounded(np.array([1e5, np.nan], np.float32), np.dtype(np.float16))
    array([inf, nan], dtype=float16)
    """
    if is_dask_array(a):
        return a.map_blocks(rounded, dtype, dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dtype, copy=False)


# ----------------------------------------------------------------------------
# the gradients


def _operand(a, name):
    """``a`` as the gradients read it: NumPy, Dask and CUDA arrays as they are, anything
    else through ``numpy.asarray`` (``TypeError`` naming ``name`` if that fails)."""
    if isinstance(a, np.ndarray) or is_dask_array(a) or is_device_array(a, name):
        return a
    return host_array(a, name)


def _half_on_host(a):
    return (isinstance(a, np.ndarray) or is_dask_array(a)) and is_half(a.dtype)


def float32_gradients(fn: _Function) -> _Function:
    """``fn`` (a gradient function taking ``grad_output, x, weight`` first and returning a
    tuple of arrays or ``None``) run on float32 copies of its half-precision NumPy or Dask
    operands, its results returned in the operands' promoted dtype.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x, w = np.ones((1, 1, 2), np.float16), np.ones((1, 1, 3), np.float16)
    >>> y = ct.conv_transpose1d(x, w, stride=2)
    >>> [a.dtype.name for a in ct.conv_transpose1d_backward(np.ones_like(y), x, w, stride=2)]
    ['float16', 'float16', 'float16']
    """
    @functools.wraps(fn)
    def gradients(grad_output, x, weight, *args, **kwargs):
        operands = {n: _operand(a, n) for n, a in
                    (("grad_output", grad_output), ("x", x), ("weight", weight))}
        half = any(_half_on_host(a) for a in operands.values())
        if half:
            _check_backend(kwargs.get("backend"))
        on_host = all(isinstance(a, np.ndarray) or is_dask_array(a) for a in operands.values())
        if not (half and on_host):
            return fn(*operands.values(), *args, **kwargs)    # CUDA refuses half itself
        dtype = result_dtype(*((n, a.dtype) for n, a in operands.items()))
        results = fn(*(a.astype(np.float32) if _half_on_host(a) else a
                       for a in operands.values()), *args, **kwargs)
        return tuple(None if r is None else rounded(r, dtype) for r in results)
    return gradients    # type: ignore[return-value]
