"""What a call is once validated: an :class:`Op` and a :class:`Problem`.

:func:`validate` (a forward call) and :func:`validate_gradients` (a gradient call) are the
one validation of a call on NumPy operands, for every rank and layout: pure functions of
the operands' shapes and dtypes and the hyper-parameters as ints and tuples
(:mod:`convtranspose.params`), with messages in the caller's layout, checked in one order:
``data_format``, the shapes, dtypes and hyper-parameters, then ``backend``. The operation
layer (:mod:`convtranspose.operation`) calls one of them once per new call and hands the
:class:`Problem` to the CPU backend (:func:`convtranspose.ops.forward`,
:func:`~convtranspose.ops.gradients`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .params import (ConvParams, _caller_shape, _first_shape, check_backend, check_method,
                     is_channels_last, normalise, normalise_backward, normalise_conv,
                     normalise_conv_backward)

__all__ = ["Op", "Problem", "validate", "validate_gradients"]


@dataclass(frozen=True)
class Op:
    """What a public function computes: the transposed convolution (``transposed``) or
    the correlation, over ``rank`` spatial dimensions.

    Examples
    --------
    >>> from convtranspose.problem import Op
    >>> Op(transposed=True, rank=3).name, Op(transposed=False, rank=1).name
    ('conv_transpose3d', 'conv1d')
    """

    transposed: bool
    rank: int

    @property
    def name(self):
        """The public function's name, as messages say it."""
        return f"conv_transpose{self.rank}d" if self.transposed else f"conv{self.rank}d"


@dataclass(frozen=True)
class Problem:
    """One validated call on NumPy operands.

    ``params`` are the resolved hyper-parameters (:class:`~convtranspose.params.ConvParams`,
    ``"same"`` and ``output_size`` turned into numbers), ``shape`` the forward result's
    shape in channels-first order (for a gradient call, ``grad_output``'s), ``last``
    whether the caller's layout is channels-last, and ``backend`` the backend named
    (``"auto"``: the CPU backend picks one).
    """

    op: Op
    last: bool
    params: ConvParams
    shape: tuple
    dtype: np.dtype
    backend: str

    @property
    def caller_shape(self):
        """The result's shape in the caller's layout."""
        return _caller_shape(self.shape, self.op.rank, self.last)


def validate(op, x_shape, w_shape, b_shape, dtypes, hyper, output_size, data_format,
             backend):
    """The :class:`Problem` of a forward call of ``op``.

    Parameters
    ----------
    op : Op
    x_shape, w_shape, b_shape : tuple of int
        The operands' shapes, ``x_shape`` as the caller laid it out; ``b_shape`` ``None``
        without bias.
    dtypes : list of (str, numpy.dtype)
        The operands' named dtypes.
    hyper : tuple
        ``(stride, padding, output_padding, groups, dilation)`` as given (``output_padding``
        is ignored for a correlation).
    output_size, data_format, backend
        As given to the public function.

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument, with shapes in the caller's layout.
    """
    stride, padding, output_padding, groups, dilation = hyper
    last = is_channels_last(data_format, op.rank)
    x_first = _first_shape(x_shape, op.rank, last)
    if op.transposed:
        params, shape, dtype = normalise(
            x_first, w_shape, b_shape, dtypes, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size, rank=op.rank, last=last)
        name = check_backend(backend)
    else:
        params, shape, dtype = normalise_conv(
            x_first, w_shape, b_shape, dtypes, stride=stride, padding=padding,
            dilation=dilation, groups=groups, rank=op.rank, last=last)
        name = check_method(backend)
    return Problem(op, last, params, shape, dtype, name)


def validate_gradients(op, g_shape, x_shape, w_shape, dtypes, hyper, output_size, data_format,
                       backend):
    """The :class:`Problem` of a gradient call of ``op`` (``op.name + "_backward"``):
    :func:`validate`'s arguments with ``grad_output``'s shape first and the named dtypes
    of ``grad_output``, ``x`` and ``weight``; ``grad_output`` must have the forward
    result's shape."""
    stride, padding, output_padding, groups, dilation = hyper
    last = is_channels_last(data_format, op.rank)
    g_first = _first_shape(g_shape, op.rank, last)
    x_first = _first_shape(x_shape, op.rank, last)
    if op.transposed:
        params, dtype = normalise_backward(
            g_first, x_first, w_shape, dtypes, stride=stride, padding=padding,
            output_padding=output_padding, dilation=dilation, groups=groups,
            output_size=output_size, rank=op.rank, last=last)
    else:
        params, dtype = normalise_conv_backward(
            g_first, x_first, w_shape, dtypes, stride=stride, padding=padding,
            dilation=dilation, groups=groups, rank=op.rank, last=last)
    return Problem(op, last, params, g_first, dtype, check_method(backend))
