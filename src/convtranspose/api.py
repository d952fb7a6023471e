"""The public entry point: :func:`conv_transpose2d`."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import dispatch
from ._alloc import allocate
from .cpu.workspace import get_workspace_limit
from .dask_ops import is_dask_array
from .params import normalise

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, AutoPadding, Backend, IntPair, Shape

__all__ = ["conv_transpose2d"]


def _host_array(a, name, required=True):
    if a is None:
        if required:
            raise TypeError(f"{name} must be an array of float32 or float64, got None")
        return None
    try:
        return np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} must be an array of float32 or float64, "
                        f"got {type(a).__name__}: {exc}") from None


def host_operands(x, weight, bias):
    """``x``, ``weight`` and ``bias`` as NumPy arrays (``TypeError`` naming the one that
    cannot be), and the dtypes of those given."""
    x = _host_array(x, "x")
    weight = _host_array(weight, "weight")
    bias = _host_array(bias, "bias", required=False)
    return x, weight, bias, [a.dtype for a in (x, weight, bias) if a is not None]


def _check_out(out, shape, dtype):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"out must have shape {shape}, got {out.shape}")
    if out.dtype.newbyteorder("=") != dtype:
        raise ValueError(f"out must have dtype {dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out must be writeable, got a read-only array")


def conv_transpose2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntPair = 1, padding: AutoPadding = 0, output_padding: IntPair = 0,
                     groups: int = 1, dilation: IntPair = 1, *, output_size: Shape | None = None,
                     out: Array | None = None, backend: Backend = "auto") -> Array:
    """2-D transposed convolution ("deconvolution") with PyTorch's semantics.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        Input, float32 or float64. Any memory layout, byte order or writeability. A Dask
        array gives a lazy Dask array (see README's "Scaling out with Dask").
    weight : array_like, shape (C_in, C_out // groups, kH, kW)
        Kernel, laid out as in ``torch.nn.ConvTranspose2d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output pixel of its channel.
    stride : int or (int, int), default 1
        Spacing of the input pixels on the output grid.
    padding : int, (int, int), ((int, int), (int, int)), "valid" or "same", default 0
        Rows and columns cropped from the full result: ``p`` crops ``p`` on every side,
        ``(pH, pW)`` crops ``pH`` top and bottom and ``pW`` left and right, and
        ``((top, bottom), (left, right))`` crops each side on its own (as ONNX's ``pads``).
        ``"valid"`` is 0; ``"same"`` gives an output of ``input * stride`` per dimension
        (Keras's ``Conv2DTranspose``, ONNX's ``SAME_UPPER``): of the ``T = dilation *
        (kernel - 1) + 1 - stride`` extra rows, ``T // 2`` are cropped at the start and the
        rest at the end, and a negative ``T`` adds ``-T`` rows at the end.
    output_padding : int or (int, int), default 0
        Extra rows (columns) at the bottom (right); each must be smaller than the stride
        or the dilation of its dimension.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups;
        ``groups == C_in`` is a depthwise transposed convolution.
    dilation : int or (int, int), default 1
        Spacing between kernel taps.
    output_size : sequence of int, optional
        Wanted ``(H_out, W_out)`` (or a full shape whose last two entries count); picks the
        ``output_padding`` as ``torch.nn.ConvTranspose2d.forward`` does.
    out : numpy.ndarray, optional
        Array of exactly the result's shape and dtype to write into; returned.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        Which implementation runs; ``"auto"`` sends CUDA arrays to the GPU and chooses a
        CPU backend for NumPy arrays by a cost model (see :func:`explain`); ``"cuda"``
        with NumPy arrays copies them to the GPU and the result back.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, H_out, W_out)``, or ``(C_out, H_out, W_out)`` for unbatched input, of
        dtype ``np.result_type(x, weight, bias)``. CUDA arrays (Numba, CuPy, torch) give a
        result of the same kind on the same GPU (see :func:`convtranspose.cuda.conv_transpose2d`);
        a Dask ``x`` gives a lazy Dask array whose tiles follow ``x``'s chunks (``weight`` and
        ``bias`` must then be NumPy arrays, and ``out`` is refused).

    Raises
    ------
    TypeError
        Non-float arrays (integer, bool, complex, float16, object), non-integer
        hyper-parameters, an ``out`` that is not an ndarray.
    ValueError
        Wrong number of dimensions, inconsistent channels, bias shape, stride or dilation
        below 1, negative padding, ``output_padding`` not below ``max(stride, dilation)``,
        an empty or unreachable output size, ``out`` of the wrong shape or dtype, an
        unknown backend.

    See Also
    --------
    output_shape : the output shape alone.
    explain : which backend ``"auto"`` picks, and why.
    conv_transpose2d_backward : the gradients.
    ConvTranspose2d : the layer, holding its weight and bias.

    Notes
    -----
    Input pixel ``(ih, iw)`` reaches output pixel ``(ih*sH + kh*dH - top,
    iw*sW + kw*dW - left)`` through kernel tap ``(kh, kw)``, so
    ``H_out = (H - 1)*sH - (top + bottom) + dH*(kH - 1) + output_padding_H + 1``. This is
    the gradient of a convolution with respect to its input, and equals a stride-1
    convolution of the zero-inserted input with the flipped kernel (Dumoulin & Visin,
    "A guide to convolution arithmetic for deep learning", 2016).

    Inputs are never modified; they are copied only when they are not C-contiguous native
    arrays of the result dtype. Results do not depend on the number of threads.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.ones((1, 1, 2, 2), np.float32)
    >>> w = np.ones((1, 1, 3, 3), np.float32)
    >>> ct.conv_transpose2d(x, w, stride=2)[0, 0]
    array([[1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.],
           [2., 2., 4., 2., 2.],
           [1., 1., 2., 1., 1.],
           [1., 1., 2., 1., 1.]], dtype=float32)
    >>> ct.conv_transpose2d(np.zeros((16, 4, 4)), np.zeros((16, 8, 4, 4)),
    ...                     stride=2, padding=1).shape
    (8, 8, 8)
    """
    key = _fast_key(x, weight, bias, out, stride, padding, output_padding, groups, dilation,
                    output_size, backend)
    hit = _VALIDATED.get(key) if key is not None else None
    if hit is None:
        if any(is_dask_array(a) for a in (x, weight, bias, out)):
            from . import dask_ops
            return dask_ops.conv_transpose2d(x, weight, bias, stride, padding, output_padding,
                                             groups, dilation, output_size=output_size,
                                             out=out, backend=backend)
        if any(dispatch.is_device_array(a, n) for a, n in
               ((x, "x"), (weight, "weight"), (bias, "bias"), (out, "out")) if a is not None):
            if dispatch.check_backend(backend) not in ("auto", *dispatch.GPU_BACKENDS):
                raise ValueError(f"backend {backend!r} runs on the CPU but CUDA arrays were "
                                 "given: use backend='auto' or 'cuda', or copy them to NumPy "
                                 "arrays")
            from .cuda import conv_transpose2d as on_device
            return on_device(x, weight, bias, stride, padding, output_padding, groups,
                             dilation, output_size=output_size, out=out)
        x, weight, bias, dtypes = host_operands(x, weight, bias)
        params, shape, dtype = normalise(
            x.shape, weight.shape, None if bias is None else bias.shape,
            dtypes, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size)
        hit = params, shape, dtype, dispatch.check_backend(backend)
        if key is not None:
            if len(_VALIDATED) >= _VALIDATED_MAX:
                _VALIDATED.clear()
            _VALIDATED[key] = hit
    params, shape, dtype, name = hit
    if out is not None:
        _check_out(out, shape, dtype)
    operands = (x, weight) if bias is None else (x, weight, bias)
    x, weight = _native(x, dtype), _native(weight, dtype)
    bias = None if bias is None else _native(bias, dtype)
    # compute straight into `out` when the kernels can write it and it aliases no input
    direct_out = (out is not None and out.flags.c_contiguous and out.dtype.isnative
                  and not any(np.may_share_memory(out, a) for a in operands))
    result = out if direct_out else allocate(shape, dtype, "output")
    if result.size:
        x4, r4 = (x, result) if x.ndim == 4 else (x[None], result[None])
        if name == "auto":      # chosen once the output exists: the model's tables need it
            name = dispatch.choose(x4.shape, weight.shape, params, dtype, r4.shape[2:]).backend
            if key is not None:
                _VALIDATED[key] = params, shape, dtype, name
        dispatch.run_backend(name)(x4, weight, bias, params, r4)
    if out is not None and result is not out:
        out[...] = result
        return out
    return result


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
    if type(backend) is not str or (output_size is not None and _int_tree(output_size) is None):
        return None
    return (x.shape, x.dtype, weight.shape, weight.dtype,
            None if bias is None else (bias.shape, bias.dtype), hyper, output_size, backend,
            get_workspace_limit())


def _native(a, dtype):
    """``a`` as a C-contiguous array of ``dtype`` (itself when it already is one)."""
    if a.dtype == dtype and a.dtype.isnative and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype)
