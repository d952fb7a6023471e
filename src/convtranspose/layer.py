"""The layers ``ConvTranspose2d``, ``Conv2d`` and their 1-D and 3-D twins
(``ConvTranspose1d``, ``Conv1d``, ``ConvTranspose3d``, ``Conv3d``): each holds its weight and bias, initialised as PyTorch does.

One body serves every rank: the private bases hold the construction, ``forward`` and
``backward``, and each public class names its rank and the functions it calls."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .api import conv_transpose2d
from .conv import conv2d, conv2d_backward
from .grad import conv_transpose2d_backward
from .dask_ops import is_dask_array
from .rank1 import conv1d, conv1d_backward, conv_transpose1d, conv_transpose1d_backward
from .rank3 import conv3d, conv3d_backward, conv_transpose3d, conv_transpose3d_backward
from .params import (DATA_FORMATS, _as_int, _as_tuple, _conv_padding, _make_params,
                     _transpose_padding, check_dtype, is_channels_last)

if TYPE_CHECKING:
    from ._typing import (Array, ArrayLike, AutoPadding, Conv2dPadding, DTypeLike, IntPair, Seed,
                          Shape)

__all__ = ["ConvTranspose2d", "Conv2d", "ConvTranspose1d", "Conv1d", "ConvTranspose3d", "Conv3d"]


def _computed(weight_grad, bias_grad):
    """The parameters' gradients as NumPy arrays: with Dask input they are reduced at
    ``backward`` (one ``dask.compute``), so that an optimiser step keeps the parameters
    NumPy arrays; the input's gradient stays lazy."""
    if not is_dask_array(weight_grad):
        return weight_grad, bias_grad
    import dask
    return dask.compute(weight_grad, bias_grad)



def _parameter_dtype(dtype):
    """A layer's ``dtype``: one the functions take (``TypeError`` naming ``dtype`` else),
    in native byte order."""
    dt = np.dtype(dtype)
    if dt in (np.dtype(np.complex64), np.dtype(np.complex128)):
        return dt
    return check_dtype(dt, "dtype").newbyteorder("=")


def _uniform(rng, bound, shape, dtype):
    """PyTorch's initial values: uniform on ``[-bound, bound)``, for a complex ``dtype``
    each part on its own (as ``torch.Tensor.uniform_`` fills complex parameters)."""
    values = rng.uniform(-bound, bound, shape)
    if dtype.kind == "c":
        values = values + 1j * rng.uniform(-bound, bound, shape)
    return values.astype(dtype)

class _Parameters:
    """What both layers share: their learnable arrays and the gradients of them."""

    def parameters(self) -> list:
        """Return the learnable arrays: ``[weight, bias]``, or ``[weight]`` without bias.

        Returns
        -------
        list of numpy.ndarray
            The layer's own arrays, not copies: an optimiser updates them in place.

        See Also
        --------
        gradients : their gradients, in the same order.

        Examples
        --------
        >>> import convtranspose as ct
        >>> layer = ct.ConvTranspose2d(4, 2, kernel_size=3, seed=0)
        >>> [p.shape for p in layer.parameters()]
        [(4, 2, 3, 3), (2,)]
        >>> len(ct.Conv2d(1, 4, kernel_size=3, bias=False).parameters())
        1
        """
        return [self.weight] + ([] if self.bias is None else [self.bias])

    def gradients(self) -> list:
        """Return the gradients of :meth:`parameters` from the last :meth:`backward`.

        Returns
        -------
        list of numpy.ndarray or None
            ``[weight_grad, bias_grad]`` (``[weight_grad]`` without bias), in the order of
            :meth:`parameters`; ``None`` entries before the first :meth:`backward`.

        See Also
        --------
        parameters : the arrays these are the gradients of.
        backward : what computes them.

        Examples
        --------
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> layer = ct.Conv2d(1, 4, kernel_size=3, seed=0)
        >>> layer.gradients()
        [None, None]
        >>> y = layer(np.ones((2, 1, 5, 5), np.float32))
        >>> _ = layer.backward(np.ones_like(y))
        >>> [g.shape for g in layer.gradients()]
        [(4, 1, 3, 3), (4,)]
        """
        return [self.weight_grad] + ([] if self.bias is None else [self.bias_grad])


def _layout(data_format, rank):
    """The layer's ``data_format``: the rank's channels-first one by default."""
    if data_format is None:
        return DATA_FORMATS[rank][0]
    is_channels_last(data_format, rank)          # ValueError naming the two
    return data_format


def _format_repr(data_format, rank):
    return "" if data_format == DATA_FORMATS[rank][0] else f", data_format={data_format!r}"


class _ConvTransposeNd(_Parameters):
    """The body of the transposed convolution layers of every rank: a subclass sets
    ``_rank`` and the functions ``_forward`` and ``_backward`` it calls."""

    _rank = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: AutoPadding = 0, output_padding: IntPair = 0,
                 groups: int = 1, bias: bool = True, dilation: IntPair = 1, *,
                 dtype: DTypeLike = np.float32, seed: Seed = None,
                 data_format: str | None = None) -> None:
        self.in_channels = _as_int(in_channels, "in_channels")
        self.out_channels = _as_int(out_channels, "out_channels")
        rank = self._rank
        self.data_format = _layout(data_format, rank)
        self.kernel_size = _as_tuple(kernel_size, "kernel_size", rank)
        numbers, extra, _ = _transpose_padding(padding, output_padding, self.kernel_size, stride,
                                               dilation)
        params = _make_params(stride, numbers, extra, dilation, groups, rank)
        self.stride, self.padding = params.stride, padding
        # "same" keeps output_padding 0: the call resolves the string itself
        self.output_padding = (0,) * rank if isinstance(padding, str) and \
            padding.lower() == "same" else params.output_padding
        self.dilation = params.dilation
        self.groups = params.groups
        for name, value in (("in_channels", self.in_channels),
                            ("out_channels", self.out_channels)):
            if value < 1 or value % self.groups:
                raise ValueError(f"{name} must be a positive multiple of groups = "
                                 f"{self.groups}, got {value}")
        if min(self.kernel_size) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}")
        dtype = _parameter_dtype(dtype)
        rng = np.random.default_rng(seed)
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        fan_in = math.prod(shape[1:])
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = _uniform(rng, bound, shape, dtype)
        self.bias = _uniform(rng, bound, (self.out_channels,), dtype) if bias else None
        self.weight_grad = self.bias_grad = None
        self._cache = None

    def __call__(self, x: ArrayLike, output_size: Shape | None = None) -> Array:
        """Apply the layer; see :meth:`forward`."""
        return self.forward(x, output_size)

    def forward(self, x: ArrayLike, output_size: Shape | None = None) -> Array:
        """Return the transposed convolution of ``x`` with the layer's weight and bias.

        With ``output_size`` the layer's ``output_padding`` is ignored and derived from the
        wanted size instead, as in ``torch.nn.ConvTranspose2d.forward``. The layer keeps
        a reference to ``x`` for :meth:`backward`. ``layer(x)`` is ``layer.forward(x)``.
        The same for :class:`ConvTranspose1d`, with one spatial dimension.

        Parameters
        ----------
        x : array_like, shape (N, in_channels, H, W) or (in_channels, H, W)
            Input, as for :func:`convtranspose.conv_transpose2d` (``(N, in_channels, L)``
            or ``(in_channels, L)`` for :class:`ConvTranspose1d`).
        output_size : sequence of int, optional
            Wanted ``(H_out, W_out)`` (or ``(L_out,)``), or a full shape whose last
            spatial entries count.

        Returns
        -------
        numpy.ndarray, or an array of x's kind for CUDA or Dask input
            ``(N, out_channels, H_out, W_out)`` (or ``(N, out_channels, L_out)``), or
            unbatched. A Dask ``x`` gives a lazy Dask array (:doc:`/guide/dask`); a
            PyTorch CPU tensor (or a nested list) gives a NumPy array: it is read as
            ``numpy.asarray`` reads it.

        Raises
        ------
        TypeError, ValueError
            For the inputs :func:`convtranspose.conv_transpose2d` rejects (wrong channels,
            dimensions or dtype; an unreachable ``output_size``).

        See Also
        --------
        backward : the gradients of this call.
        convtranspose.conv_transpose2d : the operation.

        Examples
        --------
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> layer = ct.ConvTranspose2d(4, 2, kernel_size=4, stride=2, padding=1, seed=0)
        >>> layer.forward(np.zeros((4, 8, 8), np.float32)).shape
        (2, 16, 16)
        >>> layer(np.zeros((1, 4, 8, 8), np.float32), output_size=(17, 17)).shape
        (1, 2, 17, 17)
        """
        output_padding = 0 if output_size is not None else self.output_padding
        y = self._forward(x, self.weight, self.bias, self.stride, self.padding,
                          output_padding, self.groups, self.dilation, output_size=output_size,
                          data_format=self.data_format)
        self._cache = (x, output_padding, output_size)
        return y

    def backward(self, grad_output: ArrayLike) -> Array:
        """Compute the gradients of the last :meth:`forward` call, given ``grad_output``.

        Sets ``weight_grad`` and ``bias_grad`` (overwriting, not accumulating) and returns
        the gradient with respect to the input of that call.

        Parameters
        ----------
        grad_output : array_like
            Gradient of the loss with respect to the last forward call's result; of its
            shape.

        Returns
        -------
        numpy.ndarray, or an array of grad_output's kind for CUDA input
            The gradient with respect to that call's ``x``, of its shape: a lazy Dask
            array when that ``x`` or ``grad_output`` is a Dask array, a NumPy array for a
            PyTorch CPU tensor.

        Raises
        ------
        RuntimeError
            When no forward call came first.
        TypeError, ValueError
            A ``grad_output`` that is not of the forward result's shape, or of a dtype
            :func:`convtranspose.conv_transpose2d_backward` rejects.

        See Also
        --------
        forward : the call differentiated.
        gradients : ``[weight_grad, bias_grad]``.
        convtranspose.conv_transpose2d_backward : the gradients computed.

        Examples
        --------
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> layer = ct.ConvTranspose2d(4, 2, kernel_size=3, stride=2, seed=0)
        >>> y = layer(np.ones((1, 4, 5, 5), np.float32))
        >>> layer.backward(np.ones_like(y)).shape
        (1, 4, 5, 5)
        >>> layer.weight_grad.shape, layer.bias_grad
        ((4, 2, 3, 3), array([121., 121.], dtype=float32))
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() call first")
        x, output_padding, output_size = self._cache
        gx, self.weight_grad, self.bias_grad = self._backward(
            grad_output, x, self.weight, self.stride, self.padding, output_padding,
            self.groups, self.dilation, output_size=output_size,
            needs_bias_grad=self.bias is not None, data_format=self.data_format)
        self.weight_grad, self.bias_grad = _computed(self.weight_grad, self.bias_grad)
        return gx

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}, "
                f"groups={self.groups}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype}"
                f"{_format_repr(self.data_format, self._rank)})")


class ConvTranspose2d(_ConvTransposeNd):
    """Transposed 2-D convolution layer, the NumPy twin of ``torch.nn.ConvTranspose2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int)
        Kernel height and width.
    stride, padding, output_padding, groups : int, tuple or str
        As for :func:`convtranspose.conv_transpose2d` (``padding`` may be asymmetric, or
        ``"valid"`` or ``"same"``).
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dilation : int or (int, int), default 1
        As for :func:`convtranspose.conv_transpose2d`.
    dtype : {numpy.float32, numpy.float64, numpy.float16, ml_dtypes.bfloat16, numpy.complex64, numpy.complex128}, default numpy.float32
        Dtype of the parameters. Half precision runs as the functions run it (the
        forward on the engine in float32 arithmetic, :meth:`backward` on float32 copies).
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    data_format : {"NCHW", "NHWC"}, default "NCHW"
        Layout of the input, the output and the input's gradient, as for
        :func:`convtranspose.conv_transpose2d`; the weight keeps PyTorch's layout.

    Attributes
    ----------
    weight : numpy.ndarray, shape (in_channels, out_channels // groups, kH, kW)
        The kernel, laid out as ``torch.nn.ConvTranspose2d.weight``.
    bias : numpy.ndarray of shape (out_channels,), or None
        The bias, or ``None`` for a layer made with ``bias=False``.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it).

    Raises
    ------
    TypeError
        Non-integer channels, kernel size or hyper-parameters; a ``dtype`` other than
        float16, bfloat16, float32 or float64.
    ValueError
        Channels that are not positive multiples of ``groups``, a kernel size below 1, and
        the hyper-parameters :func:`convtranspose.conv_transpose2d` rejects.

    See Also
    --------
    conv_transpose2d : the operation it applies.
    conv_transpose2d_backward : the gradients its :meth:`backward` computes.
    Conv2d : the convolution layer.

    Notes
    -----
    PyTorch's initialisation: ``kaiming_uniform_(weight, a=sqrt(5))`` with the fan-in
    ``(out_channels // groups) * kH * kW`` that PyTorch computes from this weight layout,
    which draws ``weight`` and ``bias`` from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> layer = ct.ConvTranspose2d(4, 2, kernel_size=3, stride=2, seed=0)
    >>> x = np.zeros((1, 4, 5, 5), np.float32)
    >>> layer(x).shape
    (1, 2, 11, 11)
    >>> layer(x, output_size=(12, 12)).shape
    (1, 2, 12, 12)
    """

    _rank = 2
    _forward = staticmethod(conv_transpose2d)
    _backward = staticmethod(conv_transpose2d_backward)


class _ConvNd(_Parameters):
    """The body of the convolution layers of every rank: a subclass sets ``_rank``
    and the functions ``_forward`` and ``_backward`` it calls."""

    _rank = 2

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair,
                 stride: IntPair = 1, padding: Conv2dPadding = 0, dilation: IntPair = 1,
                 groups: int = 1, bias: bool = True, *, dtype: DTypeLike = np.float32,
                 seed: Seed = None, data_format: str | None = None) -> None:
        self.in_channels = _as_int(in_channels, "in_channels")
        self.out_channels = _as_int(out_channels, "out_channels")
        rank = self._rank
        self.data_format = _layout(data_format, rank)
        self.kernel_size = _as_tuple(kernel_size, "kernel_size", rank)
        if min(self.kernel_size) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}")
        # validated now so that a bad layer fails at construction, not at first call
        _make_params(stride, _conv_padding(padding, self.kernel_size, stride, dilation), 0,
                     dilation, groups, rank)
        self.stride, self.padding = _as_tuple(stride, "stride", rank), padding
        self.dilation = _as_tuple(dilation, "dilation", rank)
        self.groups = _as_int(groups, "groups")
        for name, value in (("in_channels", self.in_channels),
                            ("out_channels", self.out_channels)):
            if value < 1 or value % self.groups:
                raise ValueError(f"{name} must be a positive multiple of groups = "
                                 f"{self.groups}, got {value}")
        dtype = _parameter_dtype(dtype)
        rng = np.random.default_rng(seed)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        bound = 1.0 / math.sqrt(math.prod(shape[1:]))
        self.weight = _uniform(rng, bound, shape, dtype)
        self.bias = _uniform(rng, bound, (self.out_channels,), dtype) if bias else None
        self.weight_grad = self.bias_grad = None
        self._x = None

    def __call__(self, x: ArrayLike) -> Array:
        """Apply the layer; see :meth:`forward`."""
        return self.forward(x)

    def forward(self, x: ArrayLike) -> Array:
        """Return the convolution of ``x`` with the layer's weight and bias.

        The layer keeps a reference to ``x`` for :meth:`backward`. ``layer(x)`` is
        ``layer.forward(x)``. The same for :class:`Conv1d`, with one spatial dimension.

        Parameters
        ----------
        x : array_like, shape (N, in_channels, H, W) or (in_channels, H, W)
            Input, as for :func:`convtranspose.conv2d` (``(N, in_channels, L)`` or
            ``(in_channels, L)`` for :class:`Conv1d`).

        Returns
        -------
        numpy.ndarray, or an array of x's kind for CUDA or Dask input
            ``(N, out_channels, H_out, W_out)`` (or ``(N, out_channels, L_out)``), or
            unbatched. A Dask ``x`` gives a lazy Dask array (:doc:`/guide/dask`); a
            PyTorch CPU tensor (or a nested list) gives a NumPy array: it is read as
            ``numpy.asarray`` reads it.

        Raises
        ------
        TypeError, ValueError
            For the inputs :func:`convtranspose.conv2d` rejects (wrong channels,
            dimensions or dtype; an input smaller than the dilated kernel).

        See Also
        --------
        backward : the gradients of this call.
        convtranspose.conv2d : the operation.

        Examples
        --------
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> layer = ct.Conv2d(3, 8, kernel_size=3, padding="same", seed=0)
        >>> layer.forward(np.zeros((2, 3, 10, 12), np.float32)).shape
        (2, 8, 10, 12)
        """
        y = self._forward(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                          self.groups, data_format=self.data_format)
        self._x = x
        return y

    def backward(self, grad_output: ArrayLike) -> Array:
        """Compute the gradients of the last :meth:`forward` call, given ``grad_output``.

        Sets ``weight_grad`` and ``bias_grad`` (overwriting, not accumulating) and returns
        the gradient with respect to that call's input.

        Parameters
        ----------
        grad_output : array_like
            Gradient of the loss with respect to the last forward call's result; of its
            shape.

        Returns
        -------
        numpy.ndarray, or an array of grad_output's kind for CUDA input
            The gradient with respect to that call's ``x``, of its shape: a lazy Dask
            array when that ``x`` or ``grad_output`` is a Dask array, a NumPy array for a
            PyTorch CPU tensor.

        Raises
        ------
        RuntimeError
            When no forward call came first.
        TypeError, ValueError
            A ``grad_output`` that is not of the forward result's shape, or of a dtype
            :func:`convtranspose.conv2d_backward` rejects.

        See Also
        --------
        forward : the call differentiated.
        gradients : ``[weight_grad, bias_grad]``.
        convtranspose.conv2d_backward : the gradients computed.

        Examples
        --------
        >>> import numpy as np
        >>> import convtranspose as ct
        >>> layer = ct.Conv2d(1, 4, kernel_size=3, stride=2, padding=1, seed=0)
        >>> y = layer(np.ones((2, 1, 8, 8), np.float32))
        >>> layer.backward(np.ones_like(y)).shape
        (2, 1, 8, 8)
        >>> layer.bias_grad
        array([32., 32., 32., 32.], dtype=float32)
        """
        if self._x is None:
            raise RuntimeError("backward() needs a forward() call first")
        gx, self.weight_grad, self.bias_grad = self._backward(
            grad_output, self._x, self.weight, self.stride, self.padding, self.dilation,
            self.groups, needs_bias_grad=self.bias is not None, data_format=self.data_format)
        self.weight_grad, self.bias_grad = _computed(self.weight_grad, self.bias_grad)
        return gx

    def __repr__(self):
        return (f"{type(self).__name__}({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype}"
                f"{_format_repr(self.data_format, self._rank)})")


class Conv2d(_ConvNd):
    """2-D convolution layer, the NumPy twin of ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int)
        Kernel height and width.
    stride, padding, dilation, groups : int, tuple or str
        As for :func:`convtranspose.conv2d` (``padding`` may be asymmetric, ``"valid"``
        or ``"same"``).
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dtype : {numpy.float32, numpy.float64, numpy.float16, ml_dtypes.bfloat16, numpy.complex64, numpy.complex128}, default numpy.float32
        Dtype of the parameters. Half precision runs as the functions run it (the
        forward on the engine in float32 arithmetic, :meth:`backward` on float32 copies).
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    data_format : {"NCHW", "NHWC"}, default "NCHW"
        Layout of the input, the output and the input's gradient, as for
        :func:`convtranspose.conv2d`; the weight keeps PyTorch's layout.

    Attributes
    ----------
    weight : numpy.ndarray, shape (out_channels, in_channels // groups, kH, kW)
        The kernel, laid out as ``torch.nn.Conv2d.weight``.
    bias : numpy.ndarray of shape (out_channels,), or None
        The bias, or ``None`` for a layer made with ``bias=False``.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it).

    Raises
    ------
    TypeError
        Non-integer channels, kernel size or hyper-parameters; a ``dtype`` other than
        float16, bfloat16, float32 or float64.
    ValueError
        Channels that are not positive multiples of ``groups``, a kernel size below 1,
        ``padding="same"`` with a stride, and the hyper-parameters
        :func:`convtranspose.conv2d` rejects.

    See Also
    --------
    conv2d : the operation it applies.
    conv2d_backward : the gradients its :meth:`backward` computes.
    ConvTranspose2d : the transposed convolution layer.

    Notes
    -----
    PyTorch's initialisation: ``kaiming_uniform_(weight, a=sqrt(5))`` with fan-in
    ``(in_channels // groups) * kH * kW``, so ``weight`` and ``bias`` are drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> layer = ct.Conv2d(1, 4, kernel_size=3, stride=2, padding=1, seed=0)
    >>> x = np.ones((2, 1, 8, 8), np.float32)
    >>> y = layer(x)
    >>> y.shape
    (2, 4, 4, 4)
    >>> gx = layer.backward(np.ones_like(y))
    >>> gx.shape, layer.weight_grad.shape, layer.bias_grad.shape
    ((2, 1, 8, 8), (4, 1, 3, 3), (4,))
    """

    _rank = 2
    _forward = staticmethod(conv2d)
    _backward = staticmethod(conv2d_backward)


class ConvTranspose1d(_ConvTransposeNd):
    """Transposed 1-D convolution layer, the NumPy twin of ``torch.nn.ConvTranspose1d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int,)
        Kernel length.
    stride, padding, output_padding, groups : int, tuple or str
        As for :func:`convtranspose.conv_transpose1d` (``padding`` may be asymmetric,
        ``((lo, hi),)``, or ``"valid"`` or ``"same"``).
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dilation : int or (int,), default 1
        As for :func:`convtranspose.conv_transpose1d`.
    dtype : {numpy.float32, numpy.float64, numpy.float16, ml_dtypes.bfloat16, numpy.complex64, numpy.complex128}, default numpy.float32
        Dtype of the parameters. Half precision runs as the functions run it (the
        forward on the engine in float32 arithmetic, :meth:`backward` on float32 copies).
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    data_format : {"NCW", "NWC"}, default "NCW"
        Layout of the input, the output and the input's gradient, as for
        :func:`convtranspose.conv_transpose1d`; the weight keeps PyTorch's layout.

    Attributes
    ----------
    weight : numpy.ndarray, shape (in_channels, out_channels // groups, k)
        The kernel, laid out as ``torch.nn.ConvTranspose1d.weight``; updating it in place
        changes the next call.
    bias : numpy.ndarray of shape (out_channels,), or None
        The bias, or ``None`` for a layer made with ``bias=False``.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it), of the shapes of
        ``weight`` and ``bias``.

    Raises
    ------
    TypeError
        Non-integer channels, kernel size or hyper-parameters; a ``dtype`` other than
        float16, bfloat16, float32 or float64.
    ValueError
        Channels that are not positive multiples of ``groups``, a kernel size below 1, and
        the hyper-parameters :func:`convtranspose.conv_transpose1d` rejects (tuples of
        other than one value among them).

    See Also
    --------
    conv_transpose1d : the operation it applies.
    conv_transpose1d_backward : the gradients its :meth:`backward` computes.
    ConvTranspose2d : the 2-D layer, whose code this shares.
    Conv1d : the 1-D convolution layer.

    Notes
    -----
    PyTorch's initialisation: ``kaiming_uniform_(weight, a=sqrt(5))`` with the fan-in
    ``(out_channels // groups) * k`` that PyTorch computes from this weight layout, which
    draws ``weight`` and ``bias`` from ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> layer = ct.ConvTranspose1d(4, 2, kernel_size=3, stride=2, seed=0)
    >>> x = np.ones((1, 4, 5), np.float32)
    >>> layer(x, output_size=(12,)).shape
    (1, 2, 12)
    >>> y = layer(x)
    >>> y.shape, layer.weight.shape
    ((1, 2, 11), (4, 2, 3))
    >>> layer.backward(np.ones_like(y)).shape
    (1, 4, 5)
    >>> layer.weight_grad.shape, layer.bias_grad
    ((4, 2, 3), array([11., 11.], dtype=float32))
    """

    _rank = 1
    _forward = staticmethod(conv_transpose1d)
    _backward = staticmethod(conv_transpose1d_backward)


class Conv1d(_ConvNd):
    """1-D convolution layer, the NumPy twin of ``torch.nn.Conv1d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int,)
        Kernel length.
    stride, padding, dilation, groups : int, tuple or str
        As for :func:`convtranspose.conv1d` (``padding`` may be asymmetric,
        ``((lo, hi),)``, ``"valid"`` or ``"same"``).
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dtype : {numpy.float32, numpy.float64, numpy.float16, ml_dtypes.bfloat16, numpy.complex64, numpy.complex128}, default numpy.float32
        Dtype of the parameters. Half precision runs as the functions run it (the
        forward on the engine in float32 arithmetic, :meth:`backward` on float32 copies).
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    data_format : {"NCW", "NWC"}, default "NCW"
        Layout of the input, the output and the input's gradient, as for
        :func:`convtranspose.conv1d`; the weight keeps PyTorch's layout.

    Attributes
    ----------
    weight : numpy.ndarray, shape (out_channels, in_channels // groups, k)
        The kernel, laid out as ``torch.nn.Conv1d.weight``; updating it in place changes
        the next call.
    bias : numpy.ndarray of shape (out_channels,), or None
        The bias, or ``None`` for a layer made with ``bias=False``.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it), of the shapes of
        ``weight`` and ``bias``.

    Raises
    ------
    TypeError
        Non-integer channels, kernel size or hyper-parameters; a ``dtype`` other than
        float16, bfloat16, float32 or float64.
    ValueError
        Channels that are not positive multiples of ``groups``, a kernel size below 1,
        ``padding="same"`` with a stride, and the hyper-parameters
        :func:`convtranspose.conv1d` rejects (tuples of other than one value among them).

    See Also
    --------
    conv1d : the operation it applies.
    conv1d_backward : the gradients its :meth:`backward` computes.
    Conv2d : the 2-D layer, whose code this shares.
    ConvTranspose1d : the 1-D transposed convolution layer.

    Notes
    -----
    PyTorch's initialisation: ``kaiming_uniform_(weight, a=sqrt(5))`` with fan-in
    ``(in_channels // groups) * k``, so ``weight`` and ``bias`` are drawn from
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> layer = ct.Conv1d(1, 4, kernel_size=3, stride=2, padding=1, seed=0)
    >>> y = layer(np.ones((2, 1, 8), np.float32))
    >>> y.shape
    (2, 4, 4)
    >>> gx = layer.backward(np.ones_like(y))
    >>> gx.shape, layer.weight_grad.shape, layer.bias_grad
    ((2, 1, 8), (4, 1, 3), array([8., 8., 8., 8.], dtype=float32))
    """

    _rank = 1
    _forward = staticmethod(conv1d)
    _backward = staticmethod(conv1d_backward)


class ConvTranspose3d(_ConvTransposeNd):
    """Transposed 3-D convolution layer, the NumPy twin of ``torch.nn.ConvTranspose3d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int, int)
        Kernel depth, height and width.
    stride, padding, output_padding, groups : int, tuple or str
        As for :func:`convtranspose.conv_transpose3d` (``padding`` may be asymmetric, three
        ``(lo, hi)`` pairs, or ``"valid"`` or ``"same"``).
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dilation : int or (int, int, int), default 1
        As for :func:`convtranspose.conv_transpose3d`.
    dtype : {numpy.float32, numpy.float64, numpy.float16, ml_dtypes.bfloat16, numpy.complex64, numpy.complex128}, default numpy.float32
        Dtype of the parameters. Half precision runs as the functions run it (the
        forward on the engine in float32 arithmetic, :meth:`backward` on float32 copies).
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of the input, the output and the input's gradient, as for
        :func:`convtranspose.conv_transpose3d`; the weight keeps PyTorch's layout.

    Attributes
    ----------
    weight : numpy.ndarray, shape (in_channels, out_channels // groups, kD, kH, kW)
        The kernel, laid out as ``torch.nn.ConvTranspose3d.weight``.
    bias : numpy.ndarray of shape (out_channels,), or None
        The bias, or ``None`` for a layer made with ``bias=False``.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it).

    Raises
    ------
    TypeError, ValueError
        As :class:`ConvTranspose2d`, for tuples of three.

    See Also
    --------
    conv_transpose3d : the operation it applies.
    conv_transpose3d_backward : the gradients its :meth:`backward` computes.
    ConvTranspose2d : the 2-D layer, whose code this shares.

    Notes
    -----
    PyTorch's initialisation: ``weight`` and ``bias`` drawn from ``U(-1/sqrt(fan_in),
    1/sqrt(fan_in))`` with ``fan_in = (out_channels // groups) * kD * kH * kW``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> layer = ct.ConvTranspose3d(4, 2, kernel_size=2, stride=2, seed=0)
    >>> y = layer(np.ones((1, 4, 3, 3, 3), np.float32))
    >>> y.shape, layer.weight.shape
    ((1, 2, 6, 6, 6), (4, 2, 2, 2, 2))
    >>> layer.backward(np.ones_like(y)).shape
    (1, 4, 3, 3, 3)
    >>> layer.bias_grad
    array([216., 216.], dtype=float32)
    """

    _rank = 3
    _forward = staticmethod(conv_transpose3d)
    _backward = staticmethod(conv_transpose3d_backward)


class Conv3d(_ConvNd):
    """3-D convolution layer, the NumPy twin of ``torch.nn.Conv3d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int, int)
        Kernel depth, height and width.
    stride, padding, dilation, groups : int, tuple or str
        As for :func:`convtranspose.conv3d`.
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dtype : {numpy.float32, numpy.float64, numpy.float16, ml_dtypes.bfloat16, numpy.complex64, numpy.complex128}, default numpy.float32
        Dtype of the parameters. Half precision runs as the functions run it (the
        forward on the engine in float32 arithmetic, :meth:`backward` on float32 copies).
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.
    data_format : {"NCDHW", "NDHWC"}, default "NCDHW"
        Layout of the input, the output and the input's gradient, as for
        :func:`convtranspose.conv3d`; the weight keeps PyTorch's layout.

    Attributes
    ----------
    weight : numpy.ndarray, shape (out_channels, in_channels // groups, kD, kH, kW)
        The kernel, laid out as ``torch.nn.Conv3d.weight``.
    bias : numpy.ndarray of shape (out_channels,), or None
        The bias, or ``None`` for a layer made with ``bias=False``.
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it).

    Raises
    ------
    TypeError, ValueError
        As :class:`Conv2d`, for tuples of three.

    See Also
    --------
    conv3d : the operation it applies.
    conv3d_backward : the gradients its :meth:`backward` computes.
    Conv2d : the 2-D layer, whose code this shares.

    Notes
    -----
    PyTorch's initialisation, with fan-in ``(in_channels // groups) * kD * kH * kW``.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> layer = ct.Conv3d(2, 4, kernel_size=3, padding=1, seed=0)
    >>> y = layer(np.ones((1, 2, 4, 4, 4), np.float32))
    >>> y.shape
    (1, 4, 4, 4, 4)
    >>> layer.backward(np.ones_like(y)).shape, layer.weight_grad.shape
    ((1, 2, 4, 4, 4), (4, 2, 3, 3, 3))
    """

    _rank = 3
    _forward = staticmethod(conv3d)
    _backward = staticmethod(conv3d_backward)
