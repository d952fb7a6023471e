"""``conv2d`` (forward and backward) with PyTorch's semantics.

A convolution is the adjoint of a transposed convolution with the same weight, so the
two share their kernels: ``conv2d``'s forward is the correlation kernel of
:mod:`convtranspose.cpu.backward` (which is also the transposed convolution's input
gradient), and ``conv2d``'s input gradient is a transposed convolution, computed by the
forward backends of :mod:`convtranspose.dispatch`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np

from . import dispatch, nonfinite
from .api import _host_array, host_operands
from .dask_ops import is_dask_array
from .cpu import backward as kernels
from .cpu.direct import correlation_uses_engine, weight_grad_uses_engine
from .params import ConvParams, normalise_conv2d, normalise_conv2d_backward

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, Backend, Conv2dPadding, Gradients, IntPair

__all__ = ["conv2d", "conv2d_backward"]

#: Backends of ``conv2d`` and of the gradients: a gather kernel or patches + BLAS GEMM on
#: the CPU, or :mod:`convtranspose.cuda`.
METHODS = ("auto", "direct", "im2col", "cuda")


def check_method(backend):
    """Return ``backend`` if it is one of :data:`METHODS`, else raise ``ValueError``."""
    if not isinstance(backend, str) or backend not in METHODS:
        raise ValueError(f"backend must be one of {METHODS} for conv2d and the gradients, "
                         f"got {backend!r}")
    return backend


def on_gpu(backend, **arrays):
    """True when the call runs on the GPU: ``backend="cuda"``, or CUDA arrays among
    ``arrays`` (``ValueError`` if a CPU backend is named with them)."""
    device = [n for n, a in arrays.items() if a is not None and dispatch.is_device_array(a, n)]
    if device and check_method(backend) not in ("auto", "cuda"):
        raise ValueError(f"backend {backend!r} runs on the CPU but {device[0]} is a CUDA array: "
                         "use backend='auto' or 'cuda', or copy the arrays to NumPy")
    return bool(device) or check_method(backend) == "cuda"


#: Multiply-adds per group below which the gather kernel's lower overhead wins.
_SMALL_WORK = 2 ** 20


#: Output pixels (times the process's threads) from which a correlation that ``direct``
#: runs on the engine is cut into enough tasks to keep every thread busy (two tasks of
#: ``cpu.deconv``'s smallest size per thread).
_ENGINE_PIXELS_PER_THREAD = 512


def _gemm_method(rows, depth, pixels):
    """``"im2col"`` when the GEMM (``rows``, ``depth`` deep, ``pixels`` columns) is large
    enough to beat the gather kernel, else ``"direct"``."""
    big = rows * depth * pixels >= _SMALL_WORK
    return "im2col" if big and rows >= 4 and depth >= 16 else "direct"


def correlate_method(c_out_g, c_in_g, k_hw, pixels):
    """The CPU backend ``"auto"`` runs a correlation with: ``"direct"`` where it runs on
    the register-blocked engine (many channels, :func:`~convtranspose.cpu.direct.correlation_uses_engine`)
    and the output has enough pixels to keep every thread busy; else ``"im2col"`` when
    the GEMM (``C_out_g`` rows, ``C_in_g*kH*kW`` deep, ``pixels`` columns) is large enough
    to beat the gather kernel, and ``"direct"`` (the gather kernel) below that.

    The engine was 1.1-2.4x faster than ``im2col`` on the input gradients of the
    benchmark suite's channel-heavy layers (AVX-512, 2 threads), and slower only where
    the output has too few pixels to be cut into a task per thread (``dcgan_g1``).

    Examples
    --------
    >>> from convtranspose.conv import correlate_method
    >>> correlate_method(64, 32, (3, 3), 4096), correlate_method(64, 32, (3, 3), 64)
    ('direct', 'im2col')
    """
    threads = max(1, numba.config.NUMBA_NUM_THREADS)
    if (correlation_uses_engine((c_out_g, c_in_g, *k_hw), 1)
            and pixels >= _ENGINE_PIXELS_PER_THREAD * threads):
        return "direct"
    return _gemm_method(c_out_g, c_in_g * k_hw[0] * k_hw[1], pixels)


def weight_grad_method(c_a_g, c_b_g, k_hw, pixels):
    """The CPU backend ``"auto"`` runs a weight gradient ``(C_a_g, C_b_g*kH*kW)`` per
    group, summed over ``pixels``, with: ``"direct"`` where that runs on the engine (many
    channels, :func:`~convtranspose.cpu.direct.weight_grad_uses_engine`), else
    ``"im2col"`` for large GEMMs and ``"direct"`` (the gather kernel) for small ones.

    The engine was as fast as ``im2col`` or up to 1.7x faster on the weight gradients of
    the benchmark suite's channel-heavy layers (AVX-512, 2 threads).

    Examples
    --------
    >>> from convtranspose.conv import weight_grad_method
    >>> weight_grad_method(64, 32, (3, 3), 4096), weight_grad_method(4, 4, (3, 3), 10**6)
    ('direct', 'im2col')
    """
    if weight_grad_uses_engine((c_a_g, c_b_g, *k_hw), 1):
        return "direct"
    return _gemm_method(c_a_g, c_b_g * k_hw[0] * k_hw[1], pixels)


#: ``np.asarray`` with a clear ``TypeError``; CUDA arrays took the GPU path before it.
host_array = _host_array


def _batched(a):
    return a if a.ndim == 4 else a[None]


def _before(params):
    return params.pad_h[0], params.pad_w[0]


def correlate(x, weight, bias, out, params, method):
    """The correlation of :mod:`convtranspose.cpu.backward` (4-D ``x`` and ``out``) by
    ``method``, with PyTorch's NaN where a padding zero meets a non-finite weight
    (:func:`convtranspose.nonfinite.correlate_nan`). Returns ``out``."""
    kernels.correlate(x, weight, bias, out, params.stride, params.dilation, _before(params),
                      params.groups, method)
    return nonfinite.correlate_nan(out, weight, x.shape[2:], params.stride, params.dilation,
                                   _before(params))


def weight_grad(a, b, gw, params, method):
    """The weight gradient of :mod:`convtranspose.cpu.backward` (``a`` on the strided
    grid, ``b`` sampled, both 4-D) by ``method``, with PyTorch's NaN where a non-finite
    ``a`` meets a zero read outside ``b`` (:func:`convtranspose.nonfinite.weight_grad_nan`).
    Returns ``gw``."""
    kernels.weight_grad(a, b, gw, params.stride, params.dilation, _before(params),
                        params.groups, method)
    return nonfinite.weight_grad_nan(gw, a, b.shape[2:], params.stride, params.dilation,
                                     _before(params))


def bias_grad(g):
    """``grad_bias``: ``g`` (N, C, H, W) summed over all but the channels, silently
    (``inf - inf`` gives NaN and a float32 sum may overflow to Inf, as in PyTorch)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return g.sum(axis=(0, 2, 3))


def conv2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntPair = 1, padding: Conv2dPadding = 0, dilation: IntPair = 1,
           groups: int = 1, *, backend: Backend = "auto") -> Array:
    """2-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        Input, float32 or float64. A Dask array gives a lazy Dask array, tiled over its
        chunks.
    weight : array_like, shape (C_out, C_in // groups, kH, kW)
        Kernel, laid out as in ``torch.nn.Conv2d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output pixel of its channel.
    stride : int or (int, int), default 1
        Step of the kernel over the input.
    padding : int, (int, int), ((int, int), (int, int)), "valid" or "same", default 0
        Zeros added around the input: on every side, per dimension, per side
        ``((top, bottom), (left, right))``, none (``"valid"``), or enough to keep the size
        at stride 1 (``"same"``; an odd total puts the extra row/column at the bottom/right).
    dilation : int or (int, int), default 1
        Spacing between kernel taps.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups;
        ``groups == C_in`` is a depthwise convolution.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        Gather kernel, or patches plus a BLAS GEMM, on the CPU; ``"cuda"`` copies NumPy
        arrays to the GPU and the result back. CUDA arrays run on their GPU with
        ``"auto"`` and give a result of ``x``'s kind (see :func:`convtranspose.cuda.conv2d`).

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, H_out, W_out)`` (or unbatched), dtype ``np.result_type(x, weight, bias)``.

    Raises
    ------
    TypeError
        Non-float arrays, non-integer hyper-parameters.
    ValueError
        Wrong dimensions, inconsistent channels or groups, bias shape, stride or dilation
        below 1, negative padding, ``"same"`` with a stride, an empty output, an unknown
        backend, a CPU backend with CUDA arrays.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv2d_backward : the gradients.
    conv_transpose2d : the adjoint operator (the gradient of ``conv2d`` with respect to x).

    Notes
    -----
    ``out[n, co, oh, ow] = bias[co] + sum x[n, ci, oh*sH + kh*dH - top, ow*sW + kw*dW - left]
    * weight[co, ci - g*C_in_g, kh, kw]`` over the input channels ``ci`` of ``co``'s group
    ``g`` and the taps, reading zero outside the input, so
    ``H_out = floor((H + top + bottom - dH*(kH - 1) - 1) / sH) + 1``
    (Dumoulin & Visin, "A guide to convolution arithmetic for deep learning", 2016).

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> ct.conv2d(x, np.ones((1, 1, 2, 2)), stride=2)[0, 0]
    array([[10., 18.],
           [42., 50.]])
    >>> ct.conv2d(np.zeros((3, 7, 9), np.float32), np.zeros((5, 3, 3, 3), np.float32),
    ...           padding="same").shape
    (5, 7, 9)
    """
    if any(is_dask_array(a) for a in (x, weight, bias)):
        from . import dask_ops
        return dask_ops.conv2d(x, weight, bias, stride, padding, dilation, groups,
                               backend=backend)
    if on_gpu(backend, x=x, weight=weight, bias=bias):
        from . import cuda
        return cuda.conv2d(x, weight, bias, stride, padding, dilation, groups)
    x, weight, bias, dtypes = host_operands(x, weight, bias)
    params, shape, dtype = normalise_conv2d(
        x.shape, weight.shape, None if bias is None else bias.shape,
        dtypes, stride=stride, padding=padding, dilation=dilation,
        groups=groups)
    method = check_method(backend)
    x = np.ascontiguousarray(x, dtype)
    weight = np.ascontiguousarray(weight, dtype)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype)
    out = np.empty(shape, dtype)
    if out.size:
        g = params.groups
        if method == "auto":
            method = correlate_method(weight.shape[0] // g, weight.shape[1], weight.shape[2:],
                                      out.size // out.shape[-3])
        correlate(_batched(x), weight, bias, _batched(out), params, method)
    return out


def adjoint_params(params, in_hw, k_hw, out_hw):
    """The transposed convolution that maps ``conv2d``'s output grid back onto its input.

    ``in_hw`` is the convolution's output size, ``out_hw`` its input size; the rows the
    convolution's floor dropped become ``output_padding`` or a smaller bottom padding.
    """
    pads, ops = [], []
    for i in range(2):
        s, d, before = params.stride[i], params.dilation[i], params.padding[i][0]
        after = (in_hw[i] - 1) * s - before + d * (k_hw[i] - 1) + 1 - out_hw[i]
        pads.append((before, max(after, 0)))
        ops.append(max(-after, 0))
    return ConvParams(params.stride, pads[0], pads[1], tuple(ops), params.dilation,
                      params.groups)


def conv2d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                    stride: IntPair = 1, padding: Conv2dPadding = 0, dilation: IntPair = 1,
                    groups: int = 1, *, needs_input_grad: bool = True,
                    needs_weight_grad: bool = True, needs_bias_grad: bool = True,
                    backend: Backend = "auto") -> Gradients:
    """Gradients of :func:`conv2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv2d(x, weight, ...)``; of its shape. With
        a Dask ``grad_output`` or ``x`` the gradients are lazy Dask arrays (``grad_input``
        chunked like ``x``, the others in one chunk).
    x, weight : array_like
        The forward call's operands.
    stride, padding, dilation, groups : int, pairs or str
        The forward call's hyper-parameters, as for :func:`conv2d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        As for :func:`conv2d`; CUDA arrays give gradients of ``grad_output``'s kind.

    Returns
    -------
    grad_input : numpy.ndarray or None
        Shape of ``x``.
    grad_weight : numpy.ndarray or None
        Shape of ``weight``.
    grad_bias : numpy.ndarray or None
        Shape ``(C_out,)``.

    Raises
    ------
    TypeError, ValueError, RuntimeError
        As :func:`conv2d`, and for a ``grad_output`` not of the forward result's shape.

    See Also
    --------
    conv2d : the forward operation.
    conv_transpose2d : the operator that gives ``grad_input``.
    Conv2d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is the transposed convolution of ``grad_output`` with the same weight
    (output padding chosen to give back ``x``'s size); ``grad_weight[co, c, kh, kw] =
    sum grad_output[n, co, oh, ow] * x[n, g*C_in_g + c, oh*sH + kh*dH - top, ow*sW +
    kw*dW - left]``; ``grad_bias`` sums ``grad_output`` over all but the channels.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.ones((1, 1, 3, 3))
    >>> w = np.ones((1, 1, 2, 2))
    >>> gx, gw, gb = ct.conv2d_backward(np.ones((1, 1, 2, 2)), x, w)
    >>> gx[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    >>> gw[0, 0], gb
    (array([[4., 4.],
           [4., 4.]]), array([4.]))
    """
    if any(is_dask_array(a) for a in (grad_output, x, weight)):
        from . import dask_ops
        return dask_ops.conv2d_backward(grad_output, x, weight, stride, padding, dilation,
                                        groups, needs_input_grad=needs_input_grad,
                                        needs_weight_grad=needs_weight_grad,
                                        needs_bias_grad=needs_bias_grad, backend=backend)
    if on_gpu(backend, grad_output=grad_output, x=x, weight=weight):
        from . import cuda
        return cuda.conv2d_backward(grad_output, x, weight, stride, padding, dilation, groups,
                                    needs_input_grad=needs_input_grad,
                                    needs_weight_grad=needs_weight_grad,
                                    needs_bias_grad=needs_bias_grad)
    g = host_array(grad_output, "grad_output")
    x = host_array(x, "x")
    weight = host_array(weight, "weight")
    params, dtype = normalise_conv2d_backward(
        g.shape, x.shape, weight.shape, [g.dtype, x.dtype, weight.dtype], stride=stride,
        padding=padding, dilation=dilation, groups=groups)
    method = check_method(backend)
    g4 = _batched(np.ascontiguousarray(g, dtype))
    x4 = _batched(np.ascontiguousarray(x, dtype))
    weight = np.ascontiguousarray(weight, dtype)
    grp = params.groups
    grad_input = grad_weight = grad_bias = None
    if needs_input_grad:
        grad_input = np.zeros(x.shape, dtype)
        if grad_input.size:
            tparams = adjoint_params(params, g4.shape[2:], weight.shape[2:], x4.shape[2:])
            name = method
            if name == "auto":
                name = dispatch.choose(g4.shape, weight.shape, tparams, dtype).backend
            dispatch.BACKENDS[name](g4, weight, None, tparams, _batched(grad_input))
    if needs_weight_grad:
        grad_weight = np.empty(weight.shape, dtype)
        name = method
        if name == "auto":
            name = weight_grad_method(weight.shape[0] // grp, weight.shape[1], weight.shape[2:],
                                      g4.size // g4.shape[1])
        weight_grad(g4, x4, grad_weight, params, name)
    if needs_bias_grad:
        grad_bias = bias_grad(g4)
    return grad_input, grad_weight, grad_bias
