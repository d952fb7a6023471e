"""Gradients of :func:`convtranspose.conv_transpose2d`: :func:`conv_transpose2d_backward`, a
name over the operation layer (:func:`convtranspose.operation.gradients`)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import operation

if TYPE_CHECKING:
    from ._typing import ArrayLike, Backend, Gradients, IntPair, Padding, Shape

__all__ = ["conv_transpose2d_backward"]


def conv_transpose2d_backward(grad_output: ArrayLike, x: ArrayLike, weight: ArrayLike,
                              stride: IntPair = 1, padding: Padding = 0,
                              output_padding: IntPair = 0, groups: int = 1,
                              dilation: IntPair = 1, *, output_size: Shape | None = None,
                              needs_input_grad: bool = True, needs_weight_grad: bool = True,
                              needs_bias_grad: bool = True,
                              backend: Backend = "auto",
                              data_format: str = "NCHW") -> Gradients:
    """Gradients of :func:`conv_transpose2d` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_output : array_like
        Gradient of the loss with respect to ``conv_transpose2d(x, weight, ...)``; of the
        forward result's shape. With a Dask ``grad_output`` or ``x`` the gradients are lazy
        Dask arrays (``grad_input`` chunked like ``x``; ``grad_weight`` and ``grad_bias`` in
        one chunk, reduced over the chunks in a fixed order).
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        The forward call's input.
    weight : array_like, shape (C_in, C_out // groups, kH, kW)
        The forward call's weight.
    stride, padding, output_padding, groups, dilation, output_size : int, pairs or None
        The forward call's hyper-parameters, as for :func:`conv_transpose2d` (asymmetric
        padding and ``output_size`` included).
    needs_input_grad, needs_weight_grad, needs_bias_grad : bool, default True
        Which gradients to compute; the others are returned as ``None``.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        Gather kernels, or patches plus BLAS GEMMs, on the CPU; ``"cuda"`` copies NumPy
        arrays to the GPU and the gradients back. CUDA arrays (anything with
        ``__cuda_array_interface__``) run on their GPU with ``"auto"`` and give gradients
        of ``grad_output``'s kind (see :func:`convtranspose.cuda.conv_transpose2d_backward`).
    data_format : {"NCHW", "NHWC"}, default "NCHW"
        Layout of ``grad_output``, ``x`` and ``grad_input``, as for :func:`conv_transpose2d`.

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
        As :func:`conv_transpose2d`, and for a ``grad_output`` whose shape is not the
        forward result's.
    RuntimeError
        ``backend="cuda"`` where no GPU can be used.

    See Also
    --------
    conv_transpose2d : the forward operation.
    conv2d : the operator that gives ``grad_input``.
    ConvTranspose2d : a layer that calls this in its ``backward``.

    Notes
    -----
    The forward sends ``x[n, ci, ih, iw]`` through tap ``(kh, kw)`` to output pixel
    ``(ih*sH + kh*dH - top, iw*sW + kw*dW - left)``, so with ``gy = grad_output``

    * ``grad_input[n, ci, ih, iw] = sum_{j, kh, kw} gy[n, g*C_out_g + j, ih*sH + kh*dH
      - top, iw*sW + kw*dW - left] * weight[ci, j, kh, kw]``: the strided, dilated,
      grouped convolution ``conv2d(gy, weight, stride, padding, dilation, groups)``
      cropped to ``x``'s size (Dumoulin & Visin, 2016: a transposed convolution is the
      gradient of a convolution, and the other way round);
    * ``grad_weight[ci, j, kh, kw] = sum_{n, ih, iw} x[n, ci, ih, iw] * gy[n, g*C_out_g
      + j, ih*sH + kh*dH - top, iw*sW + kw*dW - left]``;
    * ``grad_bias[co] = sum_{n, oh, ow} gy[n, co, oh, ow]``,

    reading zero where an index falls outside ``gy``. Every element is summed by one
    thread in a fixed order, so results do not depend on the thread count.

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
    >>> x = np.ones((1, 1, 2, 2))
    >>> w = np.ones((1, 1, 3, 3))
    >>> y = ct.conv_transpose2d(x, w, stride=2)
    >>> gx, gw, gb = ct.conv_transpose2d_backward(np.ones_like(y), x, w, stride=2)
    >>> gx[0, 0]
    array([[9., 9.],
           [9., 9.]])
    >>> gw[0, 0], gb
    (array([[4., 4., 4.],
           [4., 4., 4.],
           [4., 4., 4.]]), array([25.]))
    """
    return operation.gradients(_TRANSPOSED, grad_output, x, weight, stride, padding,
                               output_padding, groups, dilation, output_size=output_size,
                               needs_input_grad=needs_input_grad,
                               needs_weight_grad=needs_weight_grad,
                               needs_bias_grad=needs_bias_grad, backend=backend,
                               data_format=data_format)


_TRANSPOSED = operation.Op(transposed=True, rank=2)
