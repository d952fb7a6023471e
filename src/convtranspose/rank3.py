"""The 3-D operations: :func:`conv_transpose3d`, :func:`conv3d` and their gradients.

The functions are names over the operation layer (:func:`convtranspose.operation.forward`
and :func:`~convtranspose.operation.gradients`), which validates at rank 3 (so errors speak
of the 3-D arguments) and runs the volume on the CPU through :mod:`convtranspose.depth`
(the engine for the whole volume, or one 2-D problem per kernel depth tap). CUDA arrays
(or ``backend="cuda"``) go to :mod:`convtranspose.cuda.rank3`, which stacks the taps as
channels on the GPU instead. A Dask operand gives a lazy Dask result tiled as at every
rank (:mod:`convtranspose.dask_ops`: spatial tiles with halos along D, H and W, channel
blocks), each tile a call on NumPy pieces (:func:`convtranspose.operation.tiles`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import operation

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, AutoPadding, Backend, Gradients, IntTuple, Shape

__all__ = ["conv_transpose3d", "conv3d", "conv_transpose3d_backward", "conv3d_backward"]


# ----------------------------------------------------------------------------
# the operations


def conv_transpose3d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntTuple = 1, padding: AutoPadding = 0,
                     output_padding: IntTuple = 0, groups: int = 1, dilation: IntTuple = 1, *,
                     output_size: Shape | None = None, out: Array | None = None,
                     backend: Backend = "auto", data_format: str = "NCDHW") -> Array:
    """3-D transposed convolution with the semantics of ``torch.nn.functional.conv_transpose3d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array tiled along its batch, depth, height and width chunks, as in 2-D; a CUDA
        array runs on its GPU (channels-first only) and gives one of its kind.
    weight : array_like, shape (C_in, C_out // groups, kD, kH, kW)
        Kernel, laid out as in ``torch.nn.ConvTranspose3d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output voxel of its channel.
    stride : int or (int, int, int), default 1
        Spacing of the input voxels on the output grid.
    padding : int, 3 ints, 3 (lo, hi) pairs, "valid" or "same", default 0
        Voxels cropped from the full result per dimension, as for
        :func:`conv_transpose2d` (``"same"`` gives an output of ``input * stride``).
    output_padding : int or (int, int, int), default 0
        Extra voxels at the end of each dimension; smaller than its stride or dilation.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups.
    dilation : int or (int, int, int), default 1
        Spacing between kernel taps.
    output_size : sequence of int, optional
        Wanted ``(D_out, H_out, W_out)`` (or a full shape whose last three entries
        count); picks the ``output_padding`` as ``torch.nn.ConvTranspose3d.forward`` does.
    out : numpy.ndarray, optional
        Array of exactly the result's shape and dtype to write into; returned.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back); ``"auto"`` picks one per 2-D call.
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``x`` and of the result (and of ``out``): channels first, as PyTorch has
        it, or channels last, ``(N, D, H, W, C)`` or ``(D, H, W, C)``. ``weight`` keeps
        PyTorch's layout.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, D_out, H_out, W_out)``, or unbatched, with ``D_out = (D - 1)*sD -
        (front + back) + dD*(kD - 1) + output_padding_D + 1`` (and the same for ``H`` and
        ``W``), of dtype ``np.result_type(x, weight, bias)``. Anything else that
        ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a NumPy array.

    Raises
    ------
    TypeError
        Non-float arrays, non-integer hyper-parameters, an ``out`` that is not an ndarray.
    ValueError
        As :func:`conv_transpose2d`, for the 3-D shapes and tuples of three.
    NotImplementedError
        CUDA arrays with a channels-last ``data_format`` or an ``out``.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv_transpose2d : the 2-D operation each depth tap runs.
    conv_transpose3d_backward : the gradients.
    ConvTranspose3d : the layer, holding its weight and bias.

    Notes
    -----
    Input voxel ``(i, j, l)`` reaches output voxel ``(i*sD + t*dD - front, j*sH + kh*dH -
    top, l*sW + kw*dW - left)`` through tap ``(t, kh, kw)``. Computed per depth tap on 2-D
    backends (see the module's notes): the input's depth slices folded into the batch,
    at most one copy of the input at a time.

    float16 and bfloat16 operands run on the engine in 3-D whatever CPU ``backend`` is named
    (a weight with Inf or NaN: float32 code on float32 chunks), summed in float32 and
    rounded once, as :func:`conv_transpose2d`'s Notes say.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.ones((1, 1, 2, 1, 1))
    >>> ct.conv_transpose3d(x, np.ones((1, 1, 3, 1, 1)), stride=2)[0, 0, :, 0, 0]
    array([1., 1., 2., 1., 1.])
    >>> ct.conv_transpose3d(np.zeros((64, 8, 8, 8), np.float32),
    ...                     np.zeros((64, 32, 2, 2, 2), np.float32), stride=2).shape
    (32, 16, 16, 16)
    """
    return operation.forward(_TRANSPOSED, x, weight, bias, stride, padding, output_padding,
                             groups, dilation, output_size=output_size, out=out,
                             backend=backend, data_format=data_format)


_TRANSPOSED = operation.Op(transposed=True, rank=3)


def conv3d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
           stride: IntTuple = 1, padding: AutoPadding = 0, dilation: IntTuple = 1,
           groups: int = 1, *, backend: Backend = "auto",
           data_format: str = "NCDHW") -> Array:
    """3-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv3d``.

    Parameters
    ----------
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        Input: float16, bfloat16, float32, float64, complex64 or complex128 (as for
        :func:`conv_transpose2d`, Notes there). A Dask array gives a lazy Dask
        array tiled along its batch, depth, height and width chunks, as in 2-D; a CUDA
        array runs on its GPU (channels-first only) and gives one of its kind.
    weight : array_like, shape (C_out, C_in // groups, kD, kH, kW)
        Kernel, laid out as in ``torch.nn.Conv3d.weight``.
    bias : array_like, shape (C_out,), optional
        Added to every output voxel of its channel.
    stride : int or (int, int, int), default 1
        Step of the kernel over the input.
    padding : int, 3 ints, 3 (lo, hi) pairs, "valid" or "same", default 0
        Zeros added around the input, as for :func:`conv2d`.
    dilation : int or (int, int, int), default 1
        Spacing between kernel taps.
    groups : int, default 1
        Input and output channels are split into ``groups`` independent groups.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back).
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``x`` and of the result: channels first, as PyTorch has it, or
        channels last, ``(N, D, H, W, C)`` or ``(D, H, W, C)``. ``weight`` keeps
        PyTorch's layout.

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, D_out, H_out, W_out)`` (or unbatched), ``D_out = floor((D + front +
        back - dD*(kD - 1) - 1) / sD) + 1`` and the same for ``H`` and ``W``.
        Anything else that ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a
        NumPy array.

    Raises
    ------
    TypeError, ValueError
        As :func:`conv2d`, for the 3-D shapes and tuples of three.
    NotImplementedError
        CUDA arrays with a channels-last ``data_format`` or an ``out``.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv2d : the 2-D operation each depth tap runs.
    conv3d_backward : the gradients.
    Conv3d : the layer.

    Notes
    -----
    Padding zeros take part in the products, as in PyTorch: where one meets an Inf or NaN
    weight the output is NaN.

    float16 and bfloat16 operands run on the engine in 3-D whatever CPU ``backend`` is
    named, summed in float32 and rounded once; the engine's zero border is the padding, so
    an Inf or NaN weight gives PyTorch's NaN.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> x = np.arange(4.0).reshape(1, 1, 4, 1, 1)
    >>> ct.conv3d(x, np.ones((1, 1, 2, 1, 1)), stride=2)[0, 0, :, 0, 0]
    array([1., 5.])
    >>> ct.conv3d(np.zeros((3, 5, 6, 7)), np.zeros((4, 3, 3, 3, 3)), padding="same").shape
    (4, 5, 6, 7)
    """
    return operation.forward(_CORRELATION, x, weight, bias, stride, padding, groups=groups,
                             dilation=dilation, backend=backend, data_format=data_format)


_CORRELATION = operation.Op(transposed=False, rank=3)


def conv_transpose3d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                              stride: IntTuple = 1, padding: AutoPadding = 0,
                              output_padding: IntTuple = 0, groups: int = 1,
                              dilation: IntTuple = 1, *, output_size: Shape | None = None,
                              needs_input_grad: bool = True, needs_weight_grad: bool = True,
                              needs_bias_grad: bool = True, backend: Backend = "auto",
                              data_format: str = "NCDHW") -> Gradients:
    """Gradients of :func:`conv_transpose3d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv_transpose3d(x, weight, ...)``; of the
        forward result's shape.
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        The forward call's input.
    weight : array_like, shape (C_in, C_out // groups, kD, kH, kW)
        The forward call's weight.
    stride, padding, output_padding, groups, dilation, output_size : int, tuples or None
        The forward call's hyper-parameters, as for :func:`conv_transpose3d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back).
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv_transpose3d`.

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
    TypeError, ValueError, NotImplementedError
        As :func:`conv_transpose3d`, and for a ``grad_output`` not of the forward
        result's shape.

    See Also
    --------
    conv_transpose3d : the forward operation.
    conv3d : the operator that gives ``grad_input``.
    ConvTranspose3d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is ``conv3d(grad_output, weight, stride, padding, dilation, groups)``
    cropped to ``x``'s size; ``grad_weight[ci, j, t, kh, kw] = sum x[n, ci, i, h, w] *
    grad_output[n, g*C_out_g + j, i*sD + t*dD - front, h*sH + kh*dH - top, w*sW + kw*dW -
    left]``; ``grad_bias`` sums ``grad_output`` over all but the channels.

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
    >>> x, w = np.ones((1, 1, 2, 1, 1)), np.ones((1, 1, 3, 1, 1))
    >>> y = ct.conv_transpose3d(x, w, stride=2)
    >>> gx, gw, gb = ct.conv_transpose3d_backward(np.ones_like(y), x, w, stride=2)
    >>> gx.ravel(), gw.ravel(), gb
    (array([3., 3.]), array([2., 2., 2.]), array([5.]))
    """
    return operation.gradients(_TRANSPOSED, grad_output, x, weight, stride, padding,
                               output_padding, groups, dilation, output_size=output_size,
                               needs_input_grad=needs_input_grad,
                               needs_weight_grad=needs_weight_grad,
                               needs_bias_grad=needs_bias_grad, backend=backend,
                               data_format=data_format)


def conv3d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                    stride: IntTuple = 1, padding: AutoPadding = 0, dilation: IntTuple = 1,
                    groups: int = 1, *, needs_input_grad: bool = True,
                    needs_weight_grad: bool = True, needs_bias_grad: bool = True,
                    backend: Backend = "auto", data_format: str = "NCDHW") -> Gradients:
    """Gradients of :func:`conv3d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv3d(x, weight, ...)``; of its shape.
    x : array_like, shape (N, C_in, D, H, W) or (C_in, D, H, W)
        The forward call's input.
    weight : array_like, shape (C_out, C_in // groups, kD, kH, kW)
        The forward call's weight.
    stride, padding, dilation, groups : int, tuples or str
        The forward call's hyper-parameters, as for :func:`conv3d`.
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The CPU backend of the 2-D calls, or ``"cuda"`` (NumPy arrays copied to the GPU and
        the result back).
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv3d`.

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
    TypeError, ValueError, NotImplementedError
        As :func:`conv3d`, and for a ``grad_output`` not of the forward result's shape.

    See Also
    --------
    conv3d : the forward operation.
    conv_transpose3d : the operator that gives ``grad_input``.
    Conv3d : a layer that calls this in its ``backward``.

    Notes
    -----
    ``grad_input`` is the transposed convolution of ``grad_output`` with the same weight,
    sized to give back ``x``'s shape; ``grad_weight[co, c, t, kh, kw] = sum
    grad_output[n, co, i, h, w] * x[n, g*C_in_g + c, i*sD + t*dD - front, ...]``.

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
    >>> x, w = np.ones((1, 1, 3, 1, 1)), np.ones((1, 1, 2, 1, 1))
    >>> gx, gw, gb = ct.conv3d_backward(np.ones((1, 1, 2, 1, 1)), x, w)
    >>> gx.ravel(), gw.ravel(), gb
    (array([1., 2., 1.]), array([2., 2.]), array([2.]))
    """
    return operation.gradients(_CORRELATION, grad_output, x, weight, stride, padding,
                               groups=groups, dilation=dilation,
                               needs_input_grad=needs_input_grad,
                               needs_weight_grad=needs_weight_grad,
                               needs_bias_grad=needs_bias_grad, backend=backend,
                               data_format=data_format)
