"""Complex operands: how a call with a complex64 or complex128 array runs on the CPU.

A complex convolution is a real one with twice the channels. Channel ``c`` of a complex
array is taken as the real channels ``2c`` (its real part) and ``2c + 1`` (its imaginary
part), which is how a channels-last complex array already lies in memory: its float view
is the real operand, with no copy. Each complex tap ``w = a + ib`` of the weight becomes
the real 2x2 block ``[[a, b], [-b, a]]`` (input part by output part), so one real call of
the same public function, on the channels-last engine and backends, computes

    Re y = sum(Re x * Re w - Im x * Im w),   Im y = sum(Re x * Im w + Im x * Re w)

the textbook product: four real products per complex one, each rounded once into a
float32 (complex64) or float64 (complex128) sum, so every part of the result is within the
bound of a real sum of the same terms: ``|y - y_exact| <= K u (|Re x| * |Re w| + |Im x| *
|Im w|)`` for the real part (``|Re x| * |Im w| + |Im x| * |Re w|`` for the imaginary part),
``K`` the number of terms, ``u`` the unit roundoff. Gauss's three-product form (one real
convolution less) is not used: its ``c - a - b`` loses the imaginary part under
cancellation.

* **Forward calls** (``conv_transpose{1,2,3}d``, ``conv{1,2,3}d``, either layout, ``out=``,
  every CPU backend): channels-last operands are read in place; a channels-first input is
  laid out channels-last once (a copy of its size), and a channels-first result is laid
  out back once.
* **Gradients** (the ``*_backward`` functions): the same real call's gradients, which are
  PyTorch's convention for a complex operand ``z`` (``dL/dRe z + i dL/dIm z``, i.e. the
  adjoint with the conjugated weight): ``grad_input`` and ``grad_bias`` are the real
  gradients' pairs, ``grad_weight`` the sum of the gradients of each 2x2 block's four
  entries.
* **Non-finite values:** every result element that is not finite in both parts is
  ``nan+nanj`` (:func:`convtranspose.cpu.pairs.poison`). In the forward this is
  PyTorch's placement exactly (its complex GEMM scales each product by ``1 + 0j``, which
  turns ``0 * inf`` into NaN in the other part); in the gradients the elements are
  PyTorch's, and PyTorch sometimes keeps an Inf in one of their parts.
* **Mixed dtypes** promote as NumPy does (complex64 with float64 gives complex128; float16
  and bfloat16 with complex64 give complex64): a real operand is widened to complex (a copy
  of its size).
* **CUDA** arrays of complex dtype and ``backend="cuda"`` are refused with a ``TypeError``;
  **Dask** arrays of complex dtype run chunk by chunk through the same functions.
"""
from __future__ import annotations

import functools
import inspect

import numpy as np

from ._arrays import check_out, host_array, is_dask_array, is_device_array
from .cpu.pairs import poison
from .params import (DATA_FORMATS, _caller_shape, _first_shape, is_channels_last, normalise,
                     normalise_backward, normalise_conv, normalise_conv_backward, result_dtype)

__all__ = ["is_complex", "complex_result", "forward", "gradients", "real_channels_last",
           "real_weight", "complex_weight_grad"]

_COMPLEX = {4: np.dtype(np.complex64), 8: np.dtype(np.complex128)}


def is_complex(a):
    """Whether the operand ``a`` (any array-like, or ``None``) holds complex numbers.
    Arrays with a NumPy ``dtype`` are asked for it; anything else (a nested list, a torch
    tensor) is read with ``numpy.asarray``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.complexops import is_complex
    >>> is_complex(np.zeros(2, np.complex64)), is_complex([1j]), is_complex(None)
    (True, True, False)
    """
    if a is None:
        return False
    dtype = getattr(a, "dtype", None)
    if isinstance(dtype, np.dtype):
        return dtype.kind == "c"
    if hasattr(a, "__cuda_array_interface__"):
        return False
    try:
        return np.asarray(a).dtype.kind == "c"
    except Exception:   # the real path names the operand that cannot be read
        return False


def complex_result(named):
    """The complex result dtype of ``(name, dtype)`` operands: their parts' promotion (each
    checked as the real functions check it, naming the operand), as complex.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.complexops import complex_result
    >>> complex_result([("x", np.dtype(np.complex64)), ("weight", np.dtype(np.float64))])
    dtype('complex128')
    """
    parts = []
    for name, dt in named:
        if dt.kind == "c":
            if dt.itemsize not in (8, 16):
                raise TypeError(f"{name} must be float16, bfloat16, float32, float64, "
                                f"complex64 or complex128, got dtype {dt}")
            dt = np.dtype(f"f{dt.itemsize // 2}")
        parts.append((name, dt))
    real = result_dtype(*parts)
    return _COMPLEX[max(real.itemsize, 4)]


def _refuse_device(backend, operands):
    if backend == "cuda" or any(a is not None and is_device_array(a, n)
                                for n, a in operands.items()):
        raise TypeError("complex operands run on the CPU only: the cuda backend takes "
                        "float32 or float64")


def _channel_axis(a, rank, last):
    return a.ndim - 1 if last else a.ndim - rank - 1


def real_channels_last(a, rank, last, dtype):
    """The complex array ``a`` (``rank`` spatial dimensions, channels-last if ``last``) as
    a real channels-last array with channels ``2c`` and ``2c + 1`` for channel ``c``'s
    parts: a view where ``a`` is channels-last with unit-stride pairs, else one copy.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.complexops import real_channels_last
    >>> x = np.array([[[1 + 2j, 3 + 4j]]])           # (N, C, L) = (1, 1, 2)
    >>> real_channels_last(x, 1, False, x.dtype)
    array([[[1., 2.],
            [3., 4.]]])
    """
    if not last:
        a = np.moveaxis(a, _channel_axis(a, rank, last), -1)
    if a.dtype == dtype and a.ndim and a.strides[-1] == dtype.itemsize:
        return a.view(_part(dtype))
    return np.ascontiguousarray(a, dtype).view(_part(dtype))


def _part(dtype):
    return np.dtype(f"f{dtype.itemsize // 2}")


def _as_complex(y, dtype):
    """A real channels-last array of ``2 C`` channels as its complex view of ``C``."""
    return y.view(dtype)


def real_weight(w, correlation, dtype):
    """The real weight of twice the channels on both sides for the complex weight ``w``:
    ``(C_in, C_out/g, *k)`` (``correlation=False``, a transposed convolution's) or
    ``(C_out, C_in/g, *k)`` (a convolution's), each tap's 2x2 block laid out at the pairs'
    channels.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.complexops import real_weight
    >>> real_weight(np.array([[[1 + 2j]]]), False, np.dtype(np.complex128))[..., 0]
    array([[ 1.,  2.],
           [-2.,  1.]])
    """
    w = np.asarray(w, dtype)
    re, im = w.real, w.imag
    a, b = w.shape[:2]
    blocks = np.empty((a, 2, b, 2) + w.shape[2:], _part(dtype))
    # [first-axis part, second-axis part]: the transposed weight's first axis is the input,
    # a convolution's the output
    blocks[:, 0, :, 0] = re
    blocks[:, 1, :, 1] = re
    blocks[:, 0, :, 1] = -im if correlation else im
    blocks[:, 1, :, 0] = im if correlation else -im
    return blocks.reshape((2 * a, 2 * b) + w.shape[2:])


def complex_weight_grad(g, correlation, dtype):
    """The complex weight gradient from the real one ``g`` of :func:`real_weight`'s
    weight: each complex tap's real part gets the gradients of its two ``a`` entries, its
    imaginary part those of ``b`` less those of ``-b``."""
    a, b = g.shape[0] // 2, g.shape[1] // 2
    g = g.reshape((a, 2, b, 2) + g.shape[2:])
    out = np.empty((a, b) + g.shape[4:], dtype)
    out.real = g[:, 0, :, 0] + g[:, 1, :, 1]
    sign = -1 if correlation else 1
    out.imag = sign * (g[:, 0, :, 1] - g[:, 1, :, 0])
    return poison(out)


def _in_layout(yc, rank, last, out):
    """The complex channels-last array ``yc`` in the caller's layout: itself, or laid out
    channels-first (into ``out`` when given, else a new C-contiguous array)."""
    poison(yc)
    if last:
        if out is not None and out is not yc:
            out[...] = yc
            return out
        return yc
    moved = np.moveaxis(yc, -1, _channel_axis(yc, rank, False))
    if out is not None:
        out[...] = moved
        return out
    return np.ascontiguousarray(moved)


def _bound(sig, args, kwargs):
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    return bound.arguments


def _taking_complex(run, rank, correlation):
    """A decorator of a public function whose first three parameters are its array
    operands: calls with a complex one go to ``run(fn, arguments, rank, correlation)``."""
    def decorate(fn):
        sig = inspect.signature(fn)
        names = tuple(sig.parameters)[:3]

        @functools.wraps(fn)
        def call(*args, **kwargs):
            operands = args[:3] + tuple(kwargs.get(n) for n in names[len(args):])
            if not any(is_complex(a) for a in operands):
                return fn(*args, **kwargs)
            return run(fn, _bound(sig, args, kwargs), rank, correlation)
        return call
    return decorate


def forward(rank, correlation):
    """Decorate a public forward function (``conv_transpose{rank}d``, or ``conv{rank}d``
    with ``correlation``) so that complex operands run as described in this module."""
    return _taking_complex(_forward, rank, correlation)


def _forward(fn, p, rank, correlation):
    x, weight, bias, out = p["x"], p["weight"], p["bias"], p.get("out")
    _refuse_device(p["backend"], {"x": x, "weight": weight, "bias": bias, "out": out})
    lazy = any(is_dask_array(a) for a in (x, weight, bias))
    if lazy:
        from .dask_ops import as_small
        weight, bias = as_small(weight, "weight"), as_small(bias, "bias")
        if out is not None:
            raise TypeError("out is not taken with Dask arrays: the result is a lazy Dask "
                            "array")
    else:
        x, weight = host_array(x, "x"), host_array(weight, "weight")
        bias = host_array(bias, "bias", required=False)
    last = is_channels_last(p["data_format"], rank)
    dtype = complex_result([(n, a.dtype) for n, a in (("x", x), ("weight", weight), ("bias", bias))
                     if a is not None])
    params, shape = _validate(x, weight, bias, p, rank, correlation, last)
    if out is not None:
        check_out(out, _caller_shape(shape, rank, last), dtype)
    real_out = None
    if out is not None and last and out.dtype == dtype and out.flags.c_contiguous:
        real_out = out.view(_part(dtype))
    y = fn(_real_input(x, rank, last, dtype), real_weight(weight, correlation, dtype),
           None if bias is None else np.ascontiguousarray(bias, dtype).view(_part(dtype)),
           **_real_params(params, correlation), backend=p["backend"],
           data_format=DATA_FORMATS[rank][1], **({} if real_out is None else {"out": real_out}))
    if lazy:
        return _lazy_complex(y, rank, last, dtype)
    yc = _as_complex(y, dtype)
    return _in_layout(out if real_out is not None else yc, rank, last,
                      None if real_out is not None else out)


def _validate(x, weight, bias, p, rank, correlation, last):
    """``(params, out_shape)`` of the call, checked as the real functions check it (the
    parts' dtype stands in for each complex one)."""
    f4 = np.dtype(np.float32)
    shapes = (_first_shape(x.shape, rank, last), weight.shape,
              None if bias is None else bias.shape)
    common = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                  groups=p["groups"], rank=rank, last=last)
    if correlation:
        params, shape, _ = normalise_conv(*shapes, [f4, f4], **common)
    else:
        params, shape, _ = normalise(*shapes, [f4, f4], output_padding=p["output_padding"],
                                     output_size=p["output_size"], **common)
    return params, shape


def _real_params(params, correlation):
    """The hyper-parameters of the real call: numbers (``"same"`` and ``output_size``
    resolved)."""
    kw = dict(stride=params.stride, padding=params.pads, groups=params.groups,
              dilation=params.dilation)
    if not correlation:
        kw["output_padding"] = params.output_padding
    return kw


def gradients(rank, correlation):
    """Decorate a public gradient function (``conv_transpose{rank}d_backward``, or
    ``conv{rank}d_backward`` with ``correlation``) so that complex operands run as
    described in this module."""
    return _taking_complex(_gradients, rank, correlation)


def _gradients(fn, p, rank, correlation):
    g, x, weight = p["grad_output"], p["x"], p["weight"]
    _refuse_device(p["backend"], {"grad_output": g, "x": x, "weight": weight})
    lazy = any(is_dask_array(a) for a in (g, x, weight))
    if lazy:
        from .dask_ops import as_small
        weight = as_small(weight, "weight")
        g, x = (a if is_dask_array(a) else host_array(a, n) for a, n in
                ((g, "grad_output"), (x, "x")))
    else:
        g, x = host_array(g, "grad_output"), host_array(x, "x")
        weight = host_array(weight, "weight")
    last = is_channels_last(p["data_format"], rank)
    dtype = complex_result([("grad_output", g.dtype), ("x", x.dtype), ("weight", weight.dtype)])
    f4 = np.dtype(np.float32)
    shapes = (_first_shape(g.shape, rank, last), _first_shape(x.shape, rank, last),
              weight.shape)
    common = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                  groups=p["groups"], rank=rank, last=last)
    if correlation:
        params, _ = normalise_conv_backward(*shapes, [f4] * 3, **common)
    else:
        params, _ = normalise_backward(*shapes, [f4] * 3, output_padding=p["output_padding"],
                                       output_size=p["output_size"], **common)
    gi, gw, gb = fn(_real_input(g, rank, last, dtype), _real_input(x, rank, last, dtype),
                    real_weight(weight, correlation, dtype), **_real_params(params, correlation),
                    needs_input_grad=p["needs_input_grad"],
                    needs_weight_grad=p["needs_weight_grad"],
                    needs_bias_grad=p["needs_bias_grad"], backend=p["backend"],
                    data_format=DATA_FORMATS[rank][1])
    if lazy:
        return (None if gi is None else _lazy_complex(gi, rank, last, dtype),
                None if gw is None else gw.map_blocks(
                    complex_weight_grad, correlation, dtype, dtype=dtype,
                    chunks=((gw.shape[0] // 2,), (gw.shape[1] // 2,), *gw.chunks[2:])),
                None if gb is None else _lazy_complex(gb, 0, True, dtype))
    return (None if gi is None else _in_layout(_as_complex(gi, dtype), rank, last, None),
            None if gw is None else complex_weight_grad(gw, correlation, dtype),
            None if gb is None else poison(np.ascontiguousarray(gb).view(dtype)))


# ----------------------------------------------------------------------------
# Dask arrays: the same maps, block by block


def _real_input(a, rank, last, dtype):
    """:func:`real_channels_last` of a NumPy array, or lazily of a Dask one (its channel
    axis as one chunk; each block's pairs a view where they lie in place)."""
    if not is_dask_array(a):
        return real_channels_last(a, rank, last, dtype)
    import dask.array as da
    if not last:
        a = da.moveaxis(a, _channel_axis(a, rank, last), -1)
    a = a.rechunk({a.ndim - 1: -1})
    return a.map_blocks(real_channels_last, 0, True, dtype, dtype=_part(dtype),
                        chunks=(*a.chunks[:-1], (2 * a.shape[-1],)))


def _complex_block(block, dtype):
    return poison(np.array(block, order="C").view(dtype))


def _lazy_complex(y, rank, last, dtype):
    """The real channels-last Dask result ``y`` as complex, in the caller's layout."""
    import dask.array as da
    y = y.rechunk({y.ndim - 1: -1})
    yc = y.map_blocks(_complex_block, dtype, dtype=dtype,
                      chunks=(*y.chunks[:-1], (y.shape[-1] // 2,)))
    return yc if last else da.moveaxis(yc, -1, _channel_axis(yc, rank, False))
