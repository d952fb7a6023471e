"""``conv2d`` (forward and backward) with PyTorch's semantics.

A convolution is the adjoint of a transposed convolution with the same weight, so the
two share their kernels (see :mod:`convtranspose.ops`). Both functions are names over the
operation layer (:func:`convtranspose.operation.forward` and
:func:`~convtranspose.operation.gradients`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import operation

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, Backend, Conv2dPadding, Gradients, IntPair

__all__ = ["conv2d", "conv2d_backward"]


def conv2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntPair = 1, padding: Conv2dPadding = 0, dilation: IntPair = 1,
           groups: int = 1, *, backend: Backend = "auto", data_format: str = "NCHW") -> Array:
    """2-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array, tiled over its chunks.
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
    data_format : {"NCHW", "NHWC"}, default "NCHW"
        Layout of ``x`` and of the result: channels first, as PyTorch has it, or
        channels last, ``(N, H, W, C)`` or ``(H, W, C)``, as image libraries and TensorFlow
        hand it over. ``weight`` keeps PyTorch's layout. Channels-last NumPy arrays are
        read and written in place by the engine (see :ref:`ranks-and-layouts`).

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, H_out, W_out)`` (or unbatched), dtype ``np.result_type(x, weight, bias)``.
        Anything else that ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a
        NumPy array.

    Raises
    ------
    TypeError
        Arrays of other dtypes than float16, bfloat16, float32 and float64, non-integer
        hyper-parameters, half-precision operands on the GPU.
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

    float16 and bfloat16 operands run as in :func:`conv_transpose2d` (Notes there): on the
    engine where float32 would run it, else in float32 code on float32 chunks; summed in
    float32 and rounded once. The
    engine's zero border is the padding, so an Inf or NaN weight gives PyTorch's NaN.

    Callable from ``@njit`` code as well (float32 and float64, ``backend`` ``"direct"`` or
    ``"auto"``, numeric padding): ``convtranspose.jit`` says what differs there.

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
    return operation.forward(_CORRELATION, x, weight, bias, stride, padding, groups=groups,
                             dilation=dilation, backend=backend, data_format=data_format)


_CORRELATION = operation.Op(transposed=False, rank=2)


def conv2d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                    stride: IntPair = 1, padding: Conv2dPadding = 0, dilation: IntPair = 1,
                    groups: int = 1, *, needs_input_grad: bool = True,
                    needs_weight_grad: bool = True, needs_bias_grad: bool = True,
                    backend: Backend = "auto", data_format: str = "NCHW") -> Gradients:
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
    data_format : {"NCHW", "NHWC"}, default "NCHW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv2d`.

    Returns
    -------
    grad_input : numpy.ndarray or None
        Shape of ``x``.
    grad_weight : numpy.ndarray or None
        Shape of ``weight``.
    grad_bias : numpy.ndarray or None
        Shape ``(C_out,)``. NumPy arrays also for operands that ``numpy.asarray`` reads (a
        PyTorch CPU tensor, a nested list); arrays of the operands' kind for CUDA or Dask
        ones.

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

    Half-precision operands (float16, bfloat16) are converted to float32 copies, whole,
    the gradients computed in float32 and returned in the operands' promoted dtype
    (rounded once); ``backend="cuda"`` refuses them. Complex operands give PyTorch's
    gradients for a real loss (``dL/dRe + i dL/dIm``: the adjoint, with the conjugated
    weight or input), from the real call of the three convolutions
    (``convtranspose.complexops``).

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
    return operation.gradients(_CORRELATION, grad_output, x, weight, stride, padding,
                               groups=groups, dilation=dilation,
                               needs_input_grad=needs_input_grad,
                               needs_weight_grad=needs_weight_grad,
                               needs_bias_grad=needs_bias_grad, backend=backend,
                               data_format=data_format)
