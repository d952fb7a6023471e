"""The public entry points :func:`conv_transpose2d` and :func:`explain`.

:func:`conv_transpose2d` is a name over the operation layer
(:func:`convtranspose.operation.forward`), which routes Dask, CUDA, complex and NumPy
operands, validates NumPy ones once and runs the CPU backend.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import explain as explaining
from . import operation
from ._arrays import any_dask
from .operation import _VALIDATED  # noqa: F401  (the validated-call cache, which tests reset)

if TYPE_CHECKING:
    from ._typing import Array, ArrayLike, AutoPadding, Backend, IntPair, IntTuple, Shape
    from .dask_ops import GraphPlan
    from .dispatch import Choice

__all__ = ["conv_transpose2d", "explain"]


def conv_transpose2d(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
                     stride: IntPair = 1, padding: AutoPadding = 0, output_padding: IntPair = 0,
                     groups: int = 1, dilation: IntPair = 1, *, output_size: Shape | None = None,
                     out: Array | None = None, backend: Backend = "auto",
                     data_format: str = "NCHW") -> Array:
    """2-D transposed convolution ("deconvolution") with PyTorch's semantics.

    Parameters
    ----------
    x : array_like, shape (N, C_in, H, W) or (C_in, H, W)
        Input: float16, bfloat16 (``ml_dtypes.bfloat16``), float32, float64, complex64 or
        complex128. Any memory
        layout, byte order or writeability. A Dask array gives a lazy Dask array (see
        :doc:`/guide/dask`).
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
        with NumPy arrays copies them to the GPU and the result back. Half-precision
        operands run on the engine with any CPU backend (see Notes) and are refused by
        ``"cuda"``.
    data_format : {"NCHW", "NHWC"}, default "NCHW"
        Layout of ``x`` and of the result (and of ``out``): channels first, as PyTorch has it, or
        channels last, ``(N, H, W, C)`` or ``(H, W, C)``, as image libraries and TensorFlow
        hand it over. ``weight`` keeps PyTorch's layout. Channels-last NumPy arrays are
        read and written in place by the engine (see :ref:`ranks-and-layouts`).

    Returns
    -------
    numpy.ndarray, or an array of x's kind for CUDA or Dask input
        ``(N, C_out, H_out, W_out)``, or ``(C_out, H_out, W_out)`` for unbatched input, of
        dtype ``np.result_type(x, weight, bias)``. CUDA arrays (Numba, CuPy, torch) give a
        result of the same kind on the same GPU (see :func:`convtranspose.cuda.conv_transpose2d`);
        a Dask ``x`` gives a lazy Dask array whose tiles follow ``x``'s chunks (``weight`` and
        ``bias`` must then be NumPy arrays, and ``out`` is refused). Anything else that
        ``numpy.asarray`` reads (a PyTorch CPU tensor, a nested list) gives a NumPy array.

    Raises
    ------
    TypeError
        Arrays of other dtypes than float16, bfloat16, float32, float64, complex64 and
        complex128 (integer, bool, object, long double), non-integer hyper-parameters, an
        ``out`` that is not an ndarray, half-precision or complex operands on the GPU.
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

    float16 and bfloat16 (``ml_dtypes.bfloat16``) operands stay in half precision: where
    the float32 call would run the channels-last engine (``direct``, named or picked by
    ``auto``, with many channels per group), the engine widens the input to float32 one
    batch chunk at a time (within the workspace limit), sums in float32 and rounds each
    result once (to nearest, ties to even), with no float32 copy of the whole input or
    output. Elsewhere (and for a weight holding Inf or NaN) the float32 code of that
    backend runs on float32 copies of one batch chunk at a time, rounded once into place.

    complex64 and complex128 operands run as three real convolutions in one call (Gauss's
    form, as PyTorch's CPU; no conjugation; an element that is not finite is ``nan+nanj``,
    as PyTorch gives it): ``convtranspose.complexops`` says how.

    Callable from ``@njit`` code as well (float32 and float64, ``backend`` ``"direct"`` or
    ``"auto"``, numeric padding): ``convtranspose.jit`` says what differs there.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> ct.conv_transpose2d(np.array([[[[1 + 2j]]]]), np.array([[[[3 + 4j]]]]))
    array([[[[-5.+10.j]]]])
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
    >>> ct.conv_transpose2d(x.astype(np.float16), w.astype(np.float16), stride=2).dtype
    dtype('float16')
    """
    return operation.forward(_TRANSPOSED, x, weight, bias, stride, padding, output_padding,
                             groups, dilation, output_size=output_size, out=out,
                             backend=backend, data_format=data_format)


_TRANSPOSED = operation.Op(transposed=True, rank=2)


def explain(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None,
            stride: IntTuple = 1, padding: AutoPadding = 0, output_padding: IntTuple = 0,
            groups: int = 1, dilation: IntTuple = 1, *, output_size: Shape | None = None,
            backend: Backend = "auto", data_format: str | None = None) -> Choice | GraphPlan:
    """Say what a transposed convolution call of any rank would run, and why.

    Takes the arguments of :func:`convtranspose.conv_transpose1d`,
    :func:`convtranspose.conv_transpose2d` or :func:`convtranspose.conv_transpose3d` (the
    rank is the weight's) but ``out``, reads only their shapes and dtypes, and validates
    them as the call would.

    Parameters
    ----------
    x, weight, bias
        Arrays as for :func:`convtranspose.conv_transpose2d` (NumPy arrays, CUDA arrays,
        Dask arrays, CPU torch tensors, nested lists), or anything with a ``.shape`` and a
        NumPy ``.dtype``; no data is read from those.
    stride, padding, output_padding, groups, dilation, output_size : int, tuple, str or None
        As for the call, one entry per spatial dimension.
    backend : {"auto", "direct", "im2col", "cuda"}, default "auto"
        The call's backend: ``"auto"`` shows what it picks; a named backend is reported
        with ``auto``'s estimates beside it.
    data_format : str, optional
        The call's layout (``"NCW"``/``"NWC"``, ``"NCHW"``/``"NHWC"``,
        ``"NCDHW"``/``"NDHWC"``); by default the rank's channels-first one.

    Returns
    -------
    Choice or GraphPlan
        ``.backend``, ``.reason``, ``.estimates`` (seconds per backend) and ``.flops``;
        ``str()`` gives a readable summary. 1-D problems are described as the 2-D problem
        of unit height they run as; 3-D problems per kernel depth tap (one 2-D problem
        each, the estimates added up). CUDA arrays and ``backend="cuda"`` give the GPU
        kernel. For a Dask ``x``, a :class:`~convtranspose.dask_ops.GraphPlan` of the graph
        the call would build (chunks, halo, tasks, the backend picked per tile).
        Complex operands give the choice of the real call they run as, its reason saying
        so. Half-precision operands (float16, bfloat16) give the backend that runs them
        (the engine where float32 would run it, else float32 code on float32 chunks) and a
        reason saying how they are converted.

    Raises
    ------
    TypeError, ValueError
        For the arguments the call refuses (``None`` for ``x`` or ``weight`` included),
        naming the argument.
    NotImplementedError
        For a channels-last layout on the GPU, as the call.

    See Also
    --------
    convtranspose.conv_transpose2d : the call whose backend this explains.
    convtranspose.dispatch.Choice : the result, field by field.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> choice = ct.explain(np.empty((64, 512, 4, 4), np.float32),
    ...                     np.empty((512, 256, 4, 4), np.float32), stride=2, padding=1)
    >>> choice.backend
    'direct'
    >>> ct.explain(np.empty((64, 100, 1, 1), np.float32),
    ...            np.empty((100, 512, 4, 4), np.float32)).backend
    'im2col'
    >>> ct.explain([[[1.0]]], np.ones((1, 1, 2, 2))).backend
    'direct'
    >>> ct.explain(np.empty((2, 8, 8, 8, 64), np.float32),
    ...            np.empty((64, 32, 2, 2, 2), np.float32), stride=2,
    ...            data_format="NDHWC").reason.startswith("3-D runs as one problem")
    True
    >>> ct.explain(np.empty((2, 8, 8, 8, 64), np.float32),
    ...            np.empty((64, 4, 2, 2, 2), np.float32), stride=2,
    ...            data_format="NDHWC").reason.startswith("3-D runs one 2-D problem per")
    True
    """
    if any_dask(x, weight, bias):
        return explaining.dask_plan(x, weight, bias, stride, padding, output_padding, groups,
                                    dilation, output_size=output_size, backend=backend,
                                    data_format=data_format)
    return explaining.choice(x, weight, bias, stride, padding, output_padding, groups,
                             dilation, output_size=output_size, backend=backend,
                             data_format=data_format)
