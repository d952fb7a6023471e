"""Complex operands: how a call with a complex64 or complex128 array runs on the CPU.

A complex convolution runs as three real ones, the form PyTorch's CPU convolutions use
(Gauss's trick): with ``x = xr + i xi`` and ``w = wr + i wi``,

    a = xr * wr,   b = xi * wi,   c = (xr + xi) * (wr + wi)
    Re y = a - b,  Im y = c - a - b

(``*`` the real convolution, no conjugation). The three are one real call of the same
public function with three times the groups: the input laid out as ``(xr, xi, xr + xi)``
side by side on the channel axis and the weight as ``(wr, wi, wr + wi)`` on its first
axis (:func:`convtranspose.cpu.pairs.split`, one parallel pass, in the caller's layout so
the real call runs the backend ``auto`` picks for that layout), and the complex result
made of the three real ones in one parallel pass (:func:`convtranspose.cpu.pairs.join`,
which adds the bias). Three real products per complex one instead of four; the price is
accuracy under cancellation: each part is within ``(K + 2) u`` times the same sums of
``(|xr| + |xi|) (|wr| + |wi|)`` (``K`` terms per output, ``u`` the unit roundoff), where
the textbook product would bound the imaginary part by ``|xr| |wi| + |xi| |wr|`` alone.

* **Every forward function** (``conv_transpose{1,2,3}d``, ``conv{1,2,3}d``), either
  layout, ``out=``, every CPU backend, Dask arrays (block by block). Memory: the real
  input is 1.5 times the complex input, the real result 1.5 times the complex result,
  made for as many images at a time as fit in the workspace limit (one image at least).
  The gradients make theirs whole.
* **Gradients** (the ``*_backward`` functions): the real call's gradients through the same
  passes (:data:`convtranspose.cpu.pairs.ADJOINT`), which is PyTorch's convention for a
  complex operand ``z`` and a real loss (``dL/dRe z + i dL/dIm z``: the adjoint, with the
  conjugated weight or input).
* **Non-finite values:** every result element that is not finite in both parts is
  ``nan+nanj``. In the forward this is PyTorch's placement exactly (tested); in the
  gradients the elements are PyTorch's, and PyTorch sometimes keeps an Inf in one of
  their parts.
* **Mixed dtypes** promote as NumPy does (complex64 with float64 gives complex128; float16
  and bfloat16 with complex64 give complex64): a real operand is widened to complex.
* **CUDA** arrays of complex dtype and ``backend="cuda"`` are refused with a ``TypeError``.
"""
from __future__ import annotations

import math

import numpy as np

from ._alloc import allocate
from ._arrays import check_out, host_array, is_complex, is_dask_array, is_device_array
from .cpu.pairs import ADJOINT, FORWARD, gradient_parts, join, split
from .cpu.workspace import get_workspace_limit
from .params import (_caller_shape, _first_shape, is_channels_last, normalise,
                     normalise_backward, normalise_conv, normalise_conv_backward, result_dtype)

__all__ = ["is_complex", "complex_result", "run_forward", "run_gradients", "gauss_weight",
           "complex_weight_grad"]

_COMPLEX = {4: np.dtype(np.complex64), 8: np.dtype(np.complex128)}


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


def _part(dtype):
    return np.dtype(f"f{dtype.itemsize // 2}")


def gauss_weight(w, dtype):
    """The real weight of the three convolutions: ``(Re w, Im w, Re w + Im w)`` along the
    first axis (three times the groups), in the parts' dtype (one compiled pass).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.complexops import gauss_weight
    >>> gauss_weight(np.array([[[3 + 4j]]]), np.dtype(np.complex128))[:, 0, 0]
    array([3., 4., 7.])
    """
    return split(w, 0, dtype)


def complex_weight_grad(g3, dtype):
    """The complex weight gradient from the real one of :func:`gauss_weight`'s weight:
    ``Re w`` gets the gradients of the first and third blocks, ``Im w`` of the second and
    third (:func:`convtranspose.cpu.pairs.gradient_parts`)."""
    return _gradient(g3, dtype, False)


def _complex_bias_grad(g3, dtype):
    """``sum(g)`` from the bias gradient of the three real outputs ``(Re g - Im g, ...,
    Im g)``."""
    return _gradient(g3, dtype, True)


def _gradient(g3, dtype, bias):
    out = np.empty((g3.shape[0] // 3,) + g3.shape[1:], dtype)
    gradient_parts(np.ascontiguousarray(g3).reshape(-1), out.reshape(-1).view(_part(dtype)),
                   bias)
    return out


def run_forward(fn, p, rank, correlation):
    """A forward call with a complex operand: ``fn`` is the real call of the same operation
    (the operation layer's), ``p`` the call's arguments by name."""
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
    params, shape = _validate(p, rank, correlation, last, x, weight, bias)
    if out is not None:
        check_out(out, _caller_shape(shape, rank, last), dtype)
    axis = _channel_axis(x, rank, last)
    w3 = gauss_weight(weight, dtype)
    kwargs = dict(_real_params(params, correlation), backend=p["backend"],
                  data_format=p["data_format"])
    if lazy:
        return _join(fn(_split(x, axis, dtype, FORWARD), w3, None, **kwargs), axis, dtype,
                     bias, None, FORWARD)
    result = out if out is not None else allocate(_caller_shape(shape, rank, last), dtype,
                                                  "the result")
    batched = x.ndim == rank + 2
    per_image = 3 * (math.prod(x.shape[batched:]) + math.prod(result.shape[batched:])) \
        * _part(dtype).itemsize
    step = max(1, get_workspace_limit() // per_image) if batched else 1
    for n0 in range(0, x.shape[0] if batched else 1, step):
        part = slice(n0, n0 + step) if batched else slice(None)
        y3 = fn(split(x[part], axis, dtype, FORWARD), w3, None, **kwargs)
        join(y3, axis, dtype, bias, result[part], FORWARD)
        del y3
    return result


def _validate(p, rank, correlation, last, x, weight, bias=None, grad_output=None):
    """``(params, out_shape)`` of a forward call, or ``(params, None)`` of a gradient call
    (``grad_output`` given), checked as the real functions check them (the parts' dtype
    stands in for each complex one)."""
    f4 = np.dtype(np.float32)
    common = dict(stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                  groups=p["groups"], rank=rank, last=last)
    if not correlation:
        common.update(output_padding=p["output_padding"], output_size=p["output_size"])
    x_first = _first_shape(x.shape, rank, last)
    if grad_output is None:
        check = normalise_conv if correlation else normalise
        params, shape, _ = check(x_first, weight.shape, None if bias is None else bias.shape,
                                 [f4, f4], **common)
        return params, shape
    check = normalise_conv_backward if correlation else normalise_backward
    params, _ = check(_first_shape(grad_output.shape, rank, last), x_first, weight.shape,
                      [f4] * 3, **common)
    return params, None


def _real_params(params, correlation):
    """The hyper-parameters of the real call: numbers (``"same"`` and ``output_size``
    resolved), three times the groups."""
    kw = dict(stride=params.stride, padding=params.pads, groups=3 * params.groups,
              dilation=params.dilation)
    if not correlation:
        kw["output_padding"] = params.output_padding
    return kw


def run_gradients(fn, p, rank, correlation):
    """A gradient call with a complex operand: ``fn`` is the real gradient call of the same
    operation (the operation layer's), ``p`` the call's arguments by name."""
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
    params, _ = _validate(p, rank, correlation, last, x, weight, grad_output=g)
    axis = _channel_axis(x, rank, last)
    needs = (p["needs_input_grad"], p["needs_weight_grad"], p["needs_bias_grad"])
    gi, gw, gb = fn(_split(g, axis, dtype, ADJOINT), _split(x, axis, dtype, FORWARD),
                    gauss_weight(weight, dtype), **_real_params(params, correlation),
                    needs_input_grad=needs[0], needs_weight_grad=needs[1],
                    needs_bias_grad=needs[2], backend=p["backend"],
                    data_format=p["data_format"])
    if gi is not None:
        gi = _join(gi, axis, dtype, None, None, ADJOINT)
    if gw is not None:
        gw = (gw.map_blocks(complex_weight_grad, dtype, dtype=dtype,
                            chunks=((gw.shape[0] // 3,), *gw.chunks[1:]))
              if lazy else complex_weight_grad(gw, dtype))
    if gb is not None:
        gb = (gb.map_blocks(_complex_bias_grad, dtype, dtype=dtype,
                            chunks=((gb.shape[0] // 3,),))
              if lazy else _complex_bias_grad(gb, dtype))
    return gi, gw, gb


# ----------------------------------------------------------------------------
# NumPy and Dask arrays: the same passes, a Dask array's block by block


def _split(a, axis, dtype, mode):
    """:func:`convtranspose.cpu.pairs.split` of a NumPy array, or lazily of a Dask one
    (its ``axis`` as one chunk)."""
    if not is_dask_array(a):
        return split(a, axis, dtype, mode)
    a = a.rechunk({axis: -1})
    chunks = list(a.chunks)
    chunks[axis] = (3 * a.shape[axis],)
    return a.map_blocks(split, axis, dtype, mode, dtype=_part(dtype), chunks=tuple(chunks))


def _join(y3, axis, dtype, bias, out, mode):
    """:func:`convtranspose.cpu.pairs.join` of a NumPy result, or lazily of a Dask one."""
    if not is_dask_array(y3):
        return join(y3, axis, dtype, bias, out, mode)
    y3 = y3.rechunk({axis: -1})
    chunks = list(y3.chunks)
    chunks[axis] = (y3.shape[axis] // 3,)
    return y3.map_blocks(join, axis, dtype, bias, None, mode, dtype=dtype,
                         chunks=tuple(chunks))
