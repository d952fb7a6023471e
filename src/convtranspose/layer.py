"""``ConvTranspose2d``: a layer holding its weight and bias, initialised as PyTorch does."""
from __future__ import annotations

import math

import numpy as np

from .api import conv_transpose2d
from .conv import conv2d, conv2d_backward
from .grad import conv_transpose2d_backward
from .dask_ops import is_dask_array
from .params import _as_pair, _make_params, _as_int, _conv2d_padding

__all__ = ["ConvTranspose2d", "Conv2d"]



def _computed(weight_grad, bias_grad):
    """The parameters' gradients as NumPy arrays: with Dask input they are reduced at
    ``backward`` (one ``dask.compute``), so that an optimiser step keeps the parameters
    NumPy arrays; the input's gradient stays lazy."""
    if not is_dask_array(weight_grad):
        return weight_grad, bias_grad
    import dask
    return dask.compute(weight_grad, bias_grad)

class _Parameters:
    """What both layers share: their learnable arrays and the gradients of them."""

    def parameters(self):
        """The learnable arrays: ``[weight, bias]``, or ``[weight]`` without bias."""
        return [self.weight] + ([] if self.bias is None else [self.bias])

    def gradients(self):
        """The gradients of :meth:`parameters` from the last :meth:`backward`, same order."""
        return [self.weight_grad] + ([] if self.bias is None else [self.bias_grad])


class ConvTranspose2d(_Parameters):
    """Transposed 2-D convolution layer, the NumPy twin of ``torch.nn.ConvTranspose2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int)
        Kernel height and width.
    stride, padding, output_padding, groups, dilation
        As for :func:`convtranspose.conv_transpose2d` (``padding`` may be asymmetric).
    bias : bool, default True
        Whether the layer adds a learnable bias.
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
        Dtype of the parameters.
    seed : int or numpy.random.Generator, optional
        Seeds the initialisation.

    Attributes
    ----------
    weight : numpy.ndarray, shape (in_channels, out_channels // groups, kH, kW)
    bias : numpy.ndarray of shape (out_channels,), or None
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it).

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

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, *, dtype=np.float32,
                 seed=None):
        self.in_channels = _as_int(in_channels, "in_channels")
        self.out_channels = _as_int(out_channels, "out_channels")
        self.kernel_size = _as_pair(kernel_size, "kernel_size")
        params = _make_params(stride, padding, output_padding, dilation, groups)
        self.stride, self.padding = params.stride, padding
        self.output_padding, self.dilation = params.output_padding, params.dilation
        self.groups = params.groups
        for name, value in (("in_channels", self.in_channels),
                            ("out_channels", self.out_channels)):
            if value < 1 or value % self.groups:
                raise ValueError(f"{name} must be a positive multiple of groups = "
                                 f"{self.groups}, got {value}")
        if min(self.kernel_size) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        rng = np.random.default_rng(seed)
        shape = (self.in_channels, self.out_channels // self.groups, *self.kernel_size)
        fan_in = shape[1] * shape[2] * shape[3]
        bound = 1.0 / math.sqrt(fan_in)
        self.weight = rng.uniform(-bound, bound, shape).astype(dtype)
        self.bias = rng.uniform(-bound, bound, self.out_channels).astype(dtype) if bias else None
        self.weight_grad = self.bias_grad = None
        self._cache = None

    def __call__(self, x, output_size=None):
        """Apply the layer; see :meth:`forward`."""
        return self.forward(x, output_size)

    def forward(self, x, output_size=None):
        """Transposed convolution of ``x`` with the layer's weight and bias.

        With ``output_size`` the layer's ``output_padding`` is ignored and derived from the
        wanted size instead, as in ``torch.nn.ConvTranspose2d.forward``. The layer keeps
        a reference to ``x`` for :meth:`backward`.
        """
        output_padding = 0 if output_size is not None else self.output_padding
        y = conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                             output_padding, self.groups, self.dilation,
                             output_size=output_size)
        self._cache = (x, output_padding, output_size)
        return y

    def backward(self, grad_output):
        """Gradients of the last :meth:`forward` call, given ``grad_output``.

        Sets :attr:`weight_grad` and :attr:`bias_grad` (overwriting, not accumulating)
        and returns the gradient with respect to the input of that call.

        Raises
        ------
        RuntimeError
            When no forward call came first.
        """
        if self._cache is None:
            raise RuntimeError("backward() needs a forward() call first")
        x, output_padding, output_size = self._cache
        gx, self.weight_grad, self.bias_grad = conv_transpose2d_backward(
            grad_output, x, self.weight, self.stride, self.padding, output_padding,
            self.groups, self.dilation, output_size=output_size,
            needs_bias_grad=self.bias is not None)
        self.weight_grad, self.bias_grad = _computed(self.weight_grad, self.bias_grad)
        return gx

    def __repr__(self):
        return (f"ConvTranspose2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, output_padding={self.output_padding}, "
                f"groups={self.groups}, dilation={self.dilation}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype})")


class Conv2d(_Parameters):
    """2-D convolution layer, the NumPy twin of ``torch.nn.Conv2d``.

    Parameters
    ----------
    in_channels, out_channels : int
        Channels of the input and of the output; both divisible by ``groups``.
    kernel_size : int or (int, int)
    stride, padding, dilation, groups
        As for :func:`convtranspose.conv2d` (``padding`` may be asymmetric, ``"valid"``
        or ``"same"``).
    bias : bool, default True
    dtype : {numpy.float32, numpy.float64}, default numpy.float32
    seed : int or numpy.random.Generator, optional

    Attributes
    ----------
    weight : numpy.ndarray, shape (out_channels, in_channels // groups, kH, kW)
    bias : numpy.ndarray of shape (out_channels,), or None
    weight_grad, bias_grad : numpy.ndarray or None
        Gradients from the last :meth:`backward` (``None`` before it).

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

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, *, dtype=np.float32, seed=None):
        self.in_channels = _as_int(in_channels, "in_channels")
        self.out_channels = _as_int(out_channels, "out_channels")
        self.kernel_size = _as_pair(kernel_size, "kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"kernel_size must be >= 1, got {self.kernel_size}")
        # validated now so that a bad layer fails at construction, not at first call
        _make_params(stride, _conv2d_padding(padding, self.kernel_size, stride, dilation), 0,
                     dilation, groups)
        self.stride, self.padding = _as_pair(stride, "stride"), padding
        self.dilation, self.groups = _as_pair(dilation, "dilation"), _as_int(groups, "groups")
        for name, value in (("in_channels", self.in_channels),
                            ("out_channels", self.out_channels)):
            if value < 1 or value % self.groups:
                raise ValueError(f"{name} must be a positive multiple of groups = "
                                 f"{self.groups}, got {value}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        rng = np.random.default_rng(seed)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        bound = 1.0 / math.sqrt(shape[1] * shape[2] * shape[3])
        self.weight = rng.uniform(-bound, bound, shape).astype(dtype)
        self.bias = rng.uniform(-bound, bound, self.out_channels).astype(dtype) if bias else None
        self.weight_grad = self.bias_grad = None
        self._x = None

    def __call__(self, x):
        """Apply the layer; see :meth:`forward`."""
        return self.forward(x)

    def forward(self, x):
        """Convolution of ``x`` with the layer's weight and bias; remembers ``x`` for
        :meth:`backward`."""
        y = conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                   self.groups)
        self._x = x
        return y

    def backward(self, grad_output):
        """Gradients of the last :meth:`forward` call, given ``grad_output``.

        Sets :attr:`weight_grad` and :attr:`bias_grad` (overwriting, not accumulating)
        and returns the gradient with respect to that call's input.

        Raises
        ------
        RuntimeError
            When no forward call came first.
        """
        if self._x is None:
            raise RuntimeError("backward() needs a forward() call first")
        gx, self.weight_grad, self.bias_grad = conv2d_backward(
            grad_output, self._x, self.weight, self.stride, self.padding, self.dilation,
            self.groups, needs_bias_grad=self.bias is not None)
        self.weight_grad, self.bias_grad = _computed(self.weight_grad, self.bias_grad)
        return gx

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}, dtype={self.weight.dtype})")
