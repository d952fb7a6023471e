"""The 1-D operations: :func:`conv_transpose1d`, :func:`conv1d` and their gradients.

A 1-D problem is a 2-D one of unit height (kernel height 1, stride and dilation 1 and no
padding along it). The functions here are names over the operation layer
(:func:`convtranspose.operation.forward` and :func:`~convtranspose.operation.gradients`),
which validates at rank 1, so that errors speak of the 1-D arguments, and runs the problem
lifted on zero-copy views ``(N, C, 1, L)`` of the operands (CUDA arrays through their
``reshape``), the results viewed back as ``(N, C, L_out)``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import operation

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, AutoPadding, Backend, Gradients, IntTuple, Shape

__all__ = ["conv_transpose1d", "conv1d", "conv_transpose1d_backward", "conv1d_backward"]


# ----------------------------------------------------------------------------
# operands and views


def conv_transpose1d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntTuple = 1, padding: AutoPadding = 0,
                     output_padding: IntTuple = 0, groups: int = 1, dilation: IntTuple = 1, *,
                     output_size: Shape | None = None, out: Array | None = None,
                     backend: Backend = "auto", data_format: str = "NCW") -> Array:
    """1-D transposed convolution with the semantics of ``torch.nn.functional.conv_transpose1d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, L) or (C_in, L)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array; a CUDA array runs on its GPU.
    weight : array_like, shape (C_in, C_out // groups, k)
        Kernel, laid out as in ``torch.nn.ConvTranspose1d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output sample of its channel.
    stride : int or (int,), default 1
        Spacing of the input samples on the output grid.
    padding : int, (int,), ((int, int),), "valid" or "same", default 0
        Samples cropped from the full result: ``p`` (or ``(p,)``) on both sides,
        ``((lo, hi),)`` each side on its own (a flat ``(lo, hi)`` is refused: it would
        read as two spatial dimensions). ``"same"`` gives an
        output of ``L * stride`` samples, as for :func:`conv_transpose2d`.
    output_padding : int or (int,), default 0
        Extra samples at the end; smaller than the stride or the dilation.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups.
    dilation : int or (int,), default 1
        Spacing between kernel taps.
    output_size : sequence of int, optional
        Wanted ``(L_out,)`` (or a full shape whose last entry counts); picks the
        ``output_padding`` as ``torch.nn.ConvTranspose1d.forward`` does.
    out : numpy.ndarray, optional
        Array of exactly the result's shape and dtype to write into; returned.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        As for :func:`conv_transpose2d`.
    data_format : {"NCW", "NWC"}, default "NCW"
        Layout of ``x`` and of the result (and of ``out``): channels first, as PyTorch has it, or
        channels last, ``(N, L, C)`` or ``(L, C)`` (audio frames with their channels).
        ``weight`` keeps PyTorch's layout.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, L_out)``, or ``(C_out, L_out)`` for unbatched input, with
        ``L_out = (L - 1)*stride - (lo + hi) + dilation*(k - 1) + output_padding + 1``,
        of dtype ``np.result_type(x, weight, bias)``. Anything else that
        ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a NumPy array.

    Raises
    ------
    TypeError
        Non-float arrays, non-integer hyper-parameters, an ``out`` that is not an ndarray,
        a CUDA array without ``reshape``.
    ValueError
        Wrong number of dimensions, inconsistent channels, bias shape, stride or dilation
        below 1, negative padding, ``output_padding`` not below ``max(stride, dilation)``,
        an unreachable output size, ``out`` of the wrong shape or dtype, an unknown
        backend; tuples of other than one value (or one ``(lo, hi)`` pair for ``padding``).

    See Also
    --------
    conv_transpose2d : the 2-D operation this runs, on views of unit height.
    conv_transpose1d_backward : the gradients.
    ConvTranspose1d : the layer, holding its weight and bias.

    Notes
    -----
    Input sample ``i`` reaches output sample ``i*stride + j*dilation - lo`` through kernel
    tap ``j`` (Dumoulin & Visin, "A guide to convolution arithmetic for deep learning",
    2016). Inputs are never copied when they are C-contiguous native arrays of the result
    dtype: the 2-D call gets views of them.

    float16 and bfloat16 operands run as in :func:`conv_transpose2d` (Notes there): on the
    engine where float32 would run it, else in float32 code on float32 chunks; summed in
    float32 and rounded once.

    Callable from ``@njit`` code as well (float32 and float64, ``backend`` ``"direct"`` or
    ``"auto"``, numeric padding): ``convtranspose.jit`` says what differs there.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.ones((1, 1, 2))
    >>> ct.conv_transpose1d(x, np.ones((1, 1, 3)), stride=2)
    array([[[1., 1., 2., 1., 1.]]])
    >>> ct.conv_transpose1d(np.zeros((8, 32), np.float32), np.zeros((8, 4, 16), np.float32),
    ...                     stride=8, padding="same").shape
    (4, 256)
    """
    return operation.forward(_TRANSPOSED, x, weight, bias, stride, padding, output_padding,
                             groups, dilation, output_size=output_size, out=out,
                             backend=backend, data_format=data_format)


_TRANSPOSED = operation.Op(transposed=True, rank=1)


def conv1d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntTuple = 1, padding: AutoPadding = 0, dilation: IntTuple = 1,
           groups: int = 1, *, backend: Backend = "auto", data_format: str = "NCW") -> Array:
    """1-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv1d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, L) or (C_in, L)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array; a CUDA array runs on its GPU.
    weight : array_like, shape (C_out, C_in // groups, k)
        Kernel, laid out as in ``torch.nn.Conv1d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output sample of its channel.
    stride : int or (int,), default 1
        Step of the kernel over the input.
    padding : int, (int,), ((int, int),), "valid" or "same", default 0
        Zeros added at both ends (``p``), or ``((lo, hi),)`` at each end on its own;
        ``"same"`` keeps the length at stride 1 (an odd total puts the extra zero at the
        end).
    dilation : int or (int,), default 1
        Spacing between kernel taps.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        As for :func:`conv2d`.
    data_format : {"NCW", "NWC"}, default "NCW"
        Layout of ``x`` and of the result: channels first, as PyTorch has it, or
        channels last, ``(N, L, C)`` or ``(L, C)`` (audio frames with their channels).
        ``weight`` keeps PyTorch's layout.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, L_out)`` (or unbatched), with ``L_out = floor((L + lo + hi -
        dilation*(k - 1) - 1) / stride) + 1``, of dtype ``np.result_type(x, weight, bias)``.
        Anything else that ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a
        NumPy array.

    Raises
    ------
    TypeError
        Non-float arrays, non-integer hyper-parameters, a CUDA array without ``reshape``.
    ValueError
        Wrong dimensions, inconsistent channels or groups, bias shape, stride or dilation
        below 1, negative padding, ``"same"`` with a stride, an empty output, an unknown
        backend; tuples of other than one value (or one ``(lo, hi)`` pair for ``padding``).
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv2d : the 2-D operation this runs, on views of unit height.
    conv1d_backward : the gradients.
    Conv1d : the layer, holding its weight and bias.

    Notes
    -----
    ``out[n, co, i] = bias[co] + sum x[n, ci, i*stride + j*dilation - lo] * weight[co, c, j]``
    over the input channels of ``co``'s group and the taps ``j``, reading zero outside the
    input (Dumoulin & Visin, 2016).

    float16 and bfloat16 operands run as in :func:`conv_transpose1d` (Notes there): on the
    engine where float32 would run it, else in float32 code on float32 chunks; summed in
    float32 and rounded once. The
    engine's zero border is the padding, so an Inf or NaN weight gives PyTorch's NaN.

    Callable from ``@njit`` code as well (float32 and float64, ``backend`` ``"direct"`` or
    ``"auto"``, numeric padding): ``convtranspose.jit`` says what differs there.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> ct.conv1d(np.arange(4.0).reshape(1, 1, 4), np.ones((1, 1, 2)), stride=2)
    array([[[1., 5.]]])
    >>> ct.conv1d(np.zeros((3, 7)), np.zeros((5, 3, 4)), padding="same").shape
    (5, 7)
    """
    return operation.forward(_CORRELATION, x, weight, bias, stride, padding, groups=groups,
                             dilation=dilation, backend=backend, data_format=data_format)


_CORRELATION = operation.Op(transposed=False, rank=1)


def conv_transpose1d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                              stride: IntTuple = 1, padding: AutoPadding = 0,
                              output_padding: IntTuple = 0, groups: int = 1,
                              dilation: IntTuple = 1, *, output_size: Shape | None = None,
                              needs_input_grad: bool = True, needs_weight_grad: bool = True,
                              needs_bias_grad: bool = True, backend: Backend = "auto",
                              data_format: str = "NCW") -> Gradients:
    """Gradients of :func:`conv_transpose1d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv_transpose1d(x, weight, ...)``; of the
        forward result's shape. Dask operands give lazy Dask gradients.
    x : array_like, shape (N, C_in, L) or (C_in, L)
        The forward call's input.
    weight : array_like, shape (C_in, C_out // groups, k)
        The forward call's weight.
    stride, padding, output_padding, groups, dilation, output_size : int, tuples or None
        The forward call's hyper-parameters, as for :func:`conv_transpose1d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        As for :func:`conv_transpose2d_backward`.
    data_format : {"NCW", "NWC"}, default "NCW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv_transpose1d`.

    Returns
    -------
    grad_input : numpy.ndarray or None
        Shape of ``x``; dtype ``np.result_type(grad_output, x, weight)``, as the others.
    grad_weight : numpy.ndarray or None
        Shape of ``weight``.
    grad_bias : numpy.ndarray or None
        Shape ``(C_out,)``. NumPy arrays also for operands that ``numpy.asarray`` reads (a
        PyTorch CPU tensor, a nested list); arrays of the operands' kind for CUDA or Dask
        ones.

    Raises
    ------
    TypeError, ValueError
        As :func:`conv_transpose1d`, and for a ``grad_output`` whose shape is not the
        forward result's.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv_transpose1d : the forward operation.
    conv_transpose2d_backward : the 2-D gradients this runs, on views of unit height.
    ConvTranspose1d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is ``conv1d(grad_output, weight, stride, padding, dilation, groups)``
    cropped to ``x``'s length; ``grad_weight[ci, j, t] = sum x[n, ci, i] * grad_output[n,
    g*C_out_g + j, i*stride + t*dilation - lo]``; ``grad_bias`` sums ``grad_output`` over
    all but the channels.

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
    >>> x, w = np.ones((1, 1, 2)), np.ones((1, 1, 3))
    >>> y = ct.conv_transpose1d(x, w, stride=2)
    >>> gx, gw, gb = ct.conv_transpose1d_backward(np.ones_like(y), x, w, stride=2)
    >>> gx, gw, gb
    (array([[[3., 3.]]]), array([[[2., 2., 2.]]]), array([5.]))
    """
    return operation.gradients(_TRANSPOSED, grad_output, x, weight, stride, padding,
                               output_padding, groups, dilation, output_size=output_size,
                               needs_input_grad=needs_input_grad,
                               needs_weight_grad=needs_weight_grad,
                               needs_bias_grad=needs_bias_grad, backend=backend,
                               data_format=data_format)


def conv1d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                    stride: IntTuple = 1, padding: AutoPadding = 0, dilation: IntTuple = 1,
                    groups: int = 1, *, needs_input_grad: bool = True,
                    needs_weight_grad: bool = True, needs_bias_grad: bool = True,
                    backend: Backend = "auto", data_format: str = "NCW") -> Gradients:
    """Gradients of :func:`conv1d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv1d(x, weight, ...)``; of its shape.
        Dask operands give lazy Dask gradients.
    x : array_like, shape (N, C_in, L) or (C_in, L)
        The forward call's input.
    weight : array_like, shape (C_out, C_in // groups, k)
        The forward call's weight.
    stride, padding, dilation, groups : int, tuples or str
        The forward call's hyper-parameters, as for :func:`conv1d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        As for :func:`conv2d_backward`.
    data_format : {"NCW", "NWC"}, default "NCW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv1d`.

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
        As :func:`conv1d`, and for a ``grad_output`` not of the forward result's shape.

    See Also
    --------
    conv1d : the forward operation.
    conv2d_backward : the 2-D gradients this runs, on views of unit height.
    Conv1d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is the transposed convolution of ``grad_output`` with the same weight,
    sized to give back ``x``'s length; ``grad_weight[co, c, j] = sum grad_output[n, co, i]
    * x[n, g*C_in_g + c, i*stride + j*dilation - lo]``; ``grad_bias`` sums
    ``grad_output`` over all but the channels.

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
    >>> x, w = np.ones((1, 1, 3)), np.ones((1, 1, 2))
    >>> gx, gw, gb = ct.conv1d_backward(np.ones((1, 1, 2)), x, w)
    >>> gx, gw, gb
    (array([[[1., 2., 1.]]]), array([[[2., 2.]]]), array([2.]))
    """
    return operation.gradients(_CORRELATION, grad_output, x, weight, stride, padding,
                               groups=groups, dilation=dilation,
                               needs_input_grad=needs_input_grad,
                               needs_weight_grad=needs_weight_grad,
                               needs_bias_grad=needs_bias_grad, backend=backend,
                               data_format=data_format)
