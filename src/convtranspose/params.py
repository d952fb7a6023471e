"""Validation and normalisation of every argument, in one place.

Nothing here touches array data: the functions check types, shapes and the
integer hyper-parameters, turn ``stride=2`` into ``(2, 2)`` and so on, and
return a frozen :class:`ConvParams`. Kernels receive only what this module has
approved, so they never validate.

The output-size arithmetic (Dumoulin & Visin, 2016, relationship 14) lives here
too, as :func:`output_shape`: it is the one definition the API, the tests, the
CLI and the benchmarks use.
"""
from __future__ import annotations

import numbers
import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._typing import IntPair, Padding, Shape

__all__ = ["ConvParams", "normalise", "output_shape", "result_dtype", "SUPPORTED_DTYPES"]

#: Largest stride, dilation or padding accepted: keeps every index product of the
#: kernels' int64 arithmetic far from overflow.
MAX_PARAM = 2**31 - 1

#: Floating dtypes the kernels are compiled for.
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class ConvParams:
    """Validated hyper-parameters of one transposed convolution.

    All pairs are ``(height, width)``. ``pad_h`` and ``pad_w`` are
    ``(before, after)`` pairs, so asymmetric padding is represented directly.
    """

    stride: tuple[int, int]
    pad_h: tuple[int, int]
    pad_w: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @property
    def padding(self):
        """Padding as ``((top, bottom), (left, right))``."""
        return (self.pad_h, self.pad_w)


# ----------------------------------------------------------------------------
# scalar and pair parsing


def _scalar(value):
    """A 0-d array as its scalar (``np.array(2)`` -> ``2``); anything else unchanged."""
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _as_int(value, name):
    """Return ``value`` as a Python int, refusing bools, floats and the like (a 0-d
    integer array counts as its int)."""
    scalar = _scalar(value)
    if isinstance(scalar, (bool, np.bool_)) or not isinstance(scalar, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r} of type {type(value).__name__}")
    return operator.index(scalar)


def _as_pair(value, name):
    """``2`` -> ``(2, 2)``; ``(2, 3)`` -> ``(2, 3)``; ``(2,)`` -> ``(2, 2)`` (as PyTorch
    expands a one-element list); anything else is an error."""
    if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) != 0:
        items = list(value.tolist() if isinstance(value, np.ndarray) else value)
        if len(items) == 1:
            items = items * 2
        if len(items) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        try:
            return (_as_int(items[0], name), _as_int(items[1], name))
        except TypeError:
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    try:
        v = _as_int(value, name)
    except TypeError:
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    return (v, v)


def _as_padding(value):
    """int, ``(pH, pW)`` or ``((top, bottom), (left, right))`` -> two pairs."""
    message = ("padding must be an int, a pair (pH, pW) or ((top, bottom), (left, right)), "
               f"got {value!r}")
    items = value.tolist() if isinstance(value, np.ndarray) else value
    nested = isinstance(items, (list, tuple)) and any(isinstance(i, (list, tuple)) for i in items)
    try:
        if nested:
            if len(items) != 2:
                raise ValueError(message)
            return _as_pair(items[0], "padding"), _as_pair(items[1], "padding")
        ph, pw = _as_pair(items, "padding")
    except ValueError:
        raise ValueError(message) from None
    except TypeError:
        raise TypeError(message) from None
    return (ph, ph), (pw, pw)


def _plain(value):
    """True for an exact ``int`` or a tuple of such (nested): safe as a cache key."""
    kind = type(value)
    return kind is int or (kind is tuple and all(_plain(v) for v in value))


_PARAMS_CACHE = {}   # (stride, padding, output_padding, dilation, groups) -> ConvParams


def _make_params(stride, padding, output_padding, dilation, groups):
    """Parse and range-check the hyper-parameters that do not depend on shapes.

    Valid plain-int arguments are remembered, so a layer called again skips the parsing;
    anything else (and every invalid value) goes through the checks each time.
    """
    key = (stride, padding, output_padding, dilation, groups)
    cacheable = _plain(key)
    if cacheable and key in _PARAMS_CACHE:
        return _PARAMS_CACHE[key]
    params = _parse_params(stride, padding, output_padding, dilation, groups)
    if cacheable and len(_PARAMS_CACHE) < 1024:
        _PARAMS_CACHE[key] = params
    return params


def _parse_params(stride, padding, output_padding, dilation, groups):
    stride = _as_pair(stride, "stride")
    dilation = _as_pair(dilation, "dilation")
    pad_h, pad_w = _as_padding(padding)
    output_padding = _as_pair(output_padding, "output_padding")
    groups = _as_int(groups, "groups")
    if min(stride) < 1:
        raise ValueError(f"stride must be >= 1 in each dimension, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"dilation must be >= 1 in each dimension, got {dilation}")
    if min(pad_h + pad_w) < 0:
        raise ValueError(f"padding must be >= 0, got {_show_padding(pad_h, pad_w)}")
    if min(output_padding) < 0:
        raise ValueError(f"output_padding must be >= 0, got {output_padding}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    for name, value in (("stride", stride), ("dilation", dilation),
                        ("padding", pad_h + pad_w)):
        if max(value) > MAX_PARAM:
            raise ValueError(f"{name} must be at most 2**31 - 1 = {MAX_PARAM} in each "
                             f"dimension, got {value}")
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= max(s, d):
            raise ValueError(
                f"output_padding {output_padding} must be smaller than stride or dilation "
                f"in each dimension, got stride {stride}, dilation {dilation}")
    return ConvParams(stride, pad_h, pad_w, output_padding, dilation, groups)


def _show_padding(pad_h, pad_w):
    if pad_h[0] == pad_h[1] and pad_w[0] == pad_w[1]:
        return (pad_h[0], pad_w[0])
    return (pad_h, pad_w)


# ----------------------------------------------------------------------------
# shapes


def _spatial_out(size, k, s, pad, op, d):
    return (size - 1) * s - pad[0] - pad[1] + d * (k - 1) + op + 1


def _output_hw(hw, khw, p):
    return (_spatial_out(hw[0], khw[0], p.stride[0], p.pad_h, p.output_padding[0], p.dilation[0]),
            _spatial_out(hw[1], khw[1], p.stride[1], p.pad_w, p.output_padding[1], p.dilation[1]))


def _check_x_ndim(x_shape):
    if len(x_shape) not in (3, 4):
        raise ValueError(
            f"x must be 3-D (C_in, H, W) or 4-D (N, C_in, H, W), got shape {tuple(x_shape)}")


def _check_sizes(x_shape, w_shape):
    """Non-empty images in ``x`` (3-D or 4-D) and a non-empty 4-D ``weight``."""
    _check_x_ndim(x_shape)
    if min(w_shape) < 1:
        raise ValueError(f"weight must have a non-zero size in every dimension, "
                         f"got shape {tuple(w_shape)}")
    if min(x_shape[-2:]) < 1:
        raise ValueError(f"x must have non-zero height and width, got shape {tuple(x_shape)}")


def _check_shapes(x_shape, w_shape, b_shape, groups):
    """Check the array shapes against each other; return ``(batched, C_out)``."""
    _check_x_ndim(x_shape)
    if len(w_shape) != 4:
        raise ValueError(
            f"weight must be 4-D (C_in, C_out // groups, kH, kW), got shape {tuple(w_shape)}")
    _check_sizes(x_shape, w_shape)
    c_in = x_shape[-3]
    if c_in != w_shape[0]:
        raise ValueError(f"x has {c_in} input channels (shape {tuple(x_shape)}) but weight "
                         f"expects C_in = {w_shape[0]} (shape {tuple(w_shape)})")
    if c_in % groups:
        raise ValueError(f"input channels C_in = {c_in} must be divisible by groups = {groups}")
    c_out = w_shape[1] * groups
    if b_shape is not None and tuple(b_shape) != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {tuple(b_shape)}")
    return len(x_shape) == 4, c_out


def output_shape(input_shape: Shape, weight_shape: Shape, stride: IntPair = 1,
                 padding: Padding = 0, output_padding: IntPair = 0, dilation: IntPair = 1,
                 groups: int = 1) -> tuple[int, ...]:
    """Shape of ``conv_transpose2d``'s result, without computing it.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C_in, H, W)`` or unbatched ``(C_in, H, W)``.
    weight_shape : tuple of int
        ``(C_in, C_out // groups, kH, kW)``.
    stride, padding, output_padding, dilation, groups : int or tuple
        As for :func:`convtranspose.conv_transpose2d`.

    Returns
    -------
    tuple of int
        ``(N, C_out, H_out, W_out)``, or ``(C_out, H_out, W_out)`` for unbatched input.

    Raises
    ------
    ValueError, TypeError
        For the same bad arguments as :func:`convtranspose.conv_transpose2d`;
        ``TypeError`` for shapes that are not sequences of ints (``7.0`` included).

    See Also
    --------
    convtranspose.conv_transpose2d : the operation whose shape this is.

    Notes
    -----
    ``H_out = (H - 1)*sH - (top + bottom) + dH*(kH - 1) + opH + 1``, and likewise for the
    width: the inverse of a convolution's ``H = floor((H_out + top + bottom - dH*(kH - 1)
    - 1) / sH) + 1``, with ``output_padding`` choosing among the ``sH`` sizes that the
    floor maps to the same ``H``.

    Examples
    --------
    >>> from convtranspose import output_shape
    >>> output_shape((1, 3, 7, 9), (3, 5, 3, 3))
    (1, 5, 9, 11)
    >>> output_shape((16, 4, 4), (16, 8, 4, 4), stride=2, padding=1)
    (8, 8, 8)
    """
    params = _make_params(stride, padding, output_padding, dilation, groups)
    return _shape_for(_as_shape(input_shape, "input_shape"),
                      _as_shape(weight_shape, "weight_shape"), None, params)


def _as_shape(shape, name):
    """``shape`` as a tuple of Python ints; ``TypeError`` naming it otherwise (a float size
    would give float output sizes)."""
    try:
        items = tuple(shape)
        return tuple(_as_int(v, name) for v in items)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}") from None


def _shape_for(x_shape, w_shape, b_shape, params):
    batched, c_out = _check_shapes(x_shape, w_shape, b_shape, params.groups)
    h_out, w_out = _output_hw(x_shape[-2:], w_shape[2:], params)
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"output size ({h_out}, {w_out}) must be >= 1: input {tuple(x_shape[-2:])}, "
            f"kernel {tuple(w_shape[2:])}, stride {params.stride}, padding "
            f"{_show_padding(params.pad_h, params.pad_w)}, dilation {params.dilation}")
    return ((x_shape[0],) if batched else ()) + (c_out, h_out, w_out)


def _output_padding_for_size(output_size, x_shape, w_shape, params):
    """Turn ``output_size`` into ``output_padding`` as ``nn.ConvTranspose2d`` does."""
    if isinstance(output_size, np.ndarray):
        output_size = output_size.tolist()
    if not isinstance(output_size, (list, tuple)):
        raise TypeError(f"output_size must be a sequence of ints, got {output_size!r}")
    if len(output_size) not in (2, len(x_shape)):
        raise ValueError(f"output_size must have 2 or {len(x_shape)} elements for "
                         f"{len(x_shape)}-D input, got {tuple(output_size)}")
    size = tuple(_as_int(v, "output_size") for v in output_size[-2:])
    zero = ConvParams(params.stride, params.pad_h, params.pad_w, (0, 0), params.dilation,
                      params.groups)
    lo = _output_hw(x_shape[-2:], w_shape[2:], zero)
    hi = (lo[0] + params.stride[0] - 1, lo[1] + params.stride[1] - 1)
    if not (lo[0] <= size[0] <= hi[0] and lo[1] <= size[1] <= hi[1]):
        raise ValueError(f"output_size {size} cannot be reached: valid sizes range from "
                         f"{lo} to {hi} for input size {tuple(x_shape[-2:])}")
    return (size[0] - lo[0], size[1] - lo[1])


# ----------------------------------------------------------------------------
# arrays


def result_dtype(*dtypes):
    """The dtype of the result: ``np.result_type`` of the operands, float32 or float64.

    Each operand is a dtype or a ``(name, dtype)`` pair; ``TypeError`` naming the operand
    (``"arrays"`` when it has no name) for integer, bool, complex, float16 or object ones.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import result_dtype
    >>> result_dtype(np.dtype(np.float32), ("weight", np.dtype(">f8")))
    dtype('float64')
    >>> result_dtype(("x", np.dtype(np.int64)))
    Traceback (most recent call last):
    ...
    TypeError: x must be float32 or float64, got dtype int64
    """
    named = [d if isinstance(d, tuple) else ("arrays", d) for d in dtypes]
    for name, dt in named:
        if dt.kind != "f" or dt.itemsize not in (4, 8):
            raise TypeError(f"{name} must be float32 or float64, got dtype {dt}")
    return np.result_type(*(dt for _, dt in named)).newbyteorder("=")


def _named(dtypes, names):
    """Pair bare dtypes with the operand names, in order (pairs are kept as given)."""
    return [d if isinstance(d, tuple) else (names[i] if i < len(names) else "arrays", d)
            for i, d in enumerate(dtypes)]


_OPERANDS = ("x", "weight", "bias")
_GRAD_OPERANDS = ("grad_output", "x", "weight")


def normalise(x_shape, w_shape, b_shape, dtypes, *, stride=1, padding=0, output_padding=0,
              dilation=1, groups=1, output_size=None):
    """Validate everything about one call; return ``(params, out_shape, dtype)``.

    ``x_shape``, ``w_shape`` and ``b_shape`` (``None`` without bias) are the operand
    shapes; ``dtypes`` are their dtypes in that order (or ``(name, dtype)`` pairs), so a
    bad one is named. The returned ``out_shape`` keeps the batched/unbatched form of
    ``x_shape``.
    """
    dtype = result_dtype(*_named(dtypes, _OPERANDS))
    params = _make_params(stride, padding, output_padding, dilation, groups)
    _check_shapes(x_shape, w_shape, b_shape, params.groups)
    if output_size is not None:
        op = _output_padding_for_size(output_size, x_shape, w_shape, params)
        if params.output_padding not in ((0, 0), op):
            raise ValueError(f"output_padding {params.output_padding} conflicts with "
                             f"output_size {tuple(output_size)}, which needs output_padding {op}")
        params = _make_params(params.stride, params.padding, op, params.dilation, params.groups)
    return params, _shape_for(x_shape, w_shape, b_shape, params), dtype


# ----------------------------------------------------------------------------
# conv2d and the gradients (appended; the functions above are shared)


def _conv2d_padding(padding, k_hw, stride, dilation):
    """Turn ``"valid"``/``"same"`` into numbers, as ``torch.nn.functional.conv2d`` does."""
    if not isinstance(padding, str):
        return padding
    if padding == "valid":
        return 0
    if padding == "same":
        if _as_pair(stride, "stride") != (1, 1):
            raise ValueError(f"padding='same' needs stride 1, got stride {stride!r}")
        d = _as_pair(dilation, "dilation")
        total = [di * (k - 1) for di, k in zip(d, k_hw)]
        # PyTorch puts the odd extra row (column) at the bottom (right)
        return tuple((t // 2, t - t // 2) for t in total)
    raise ValueError(f"padding must be 'valid', 'same', an int, a pair or "
                     f"((top, bottom), (left, right)), got {padding!r}")


def _conv2d_out_hw(hw, khw, params):
    (sh, sw), (dh, dw) = params.stride, params.dilation
    return ((hw[0] + sum(params.pad_h) - dh * (khw[0] - 1) - 1) // sh + 1,
            (hw[1] + sum(params.pad_w) - dw * (khw[1] - 1) - 1) // sw + 1)


def normalise_conv2d(x_shape, w_shape, b_shape, dtypes, *, stride=1, padding=0, dilation=1,
                     groups=1):
    """Validate one ``conv2d`` call; return ``(params, out_shape, dtype)``.

    ``w_shape`` is ``(C_out, C_in // groups, kH, kW)``; ``padding`` may also be
    ``"valid"`` or ``"same"``. The returned :class:`ConvParams` has ``output_padding``
    ``(0, 0)``. ``dtypes`` are those of ``x``, ``weight`` and ``bias``, as for
    :func:`normalise`.
    """
    dtype = result_dtype(*_named(dtypes, _OPERANDS))
    if len(w_shape) != 4:
        raise ValueError(
            f"weight must be 4-D (C_out, C_in // groups, kH, kW), got shape {tuple(w_shape)}")
    padding = _conv2d_padding(padding, w_shape[2:], stride, dilation)
    params = _make_params(stride, padding, 0, dilation, groups)
    _check_sizes(x_shape, w_shape)
    c_in, h, w = x_shape[-3:]
    c_out, g = w_shape[0], params.groups
    if c_out % g:
        raise ValueError(f"output channels C_out = {c_out} (weight shape {tuple(w_shape)}) "
                         f"must be divisible by groups = {g}")
    if c_in != w_shape[1] * g:
        raise ValueError(f"x has {c_in} input channels (shape {tuple(x_shape)}) but weight "
                         f"{tuple(w_shape)} with groups = {g} expects C_in = {w_shape[1] * g}")
    if b_shape is not None and tuple(b_shape) != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {tuple(b_shape)}")
    h_out, w_out = _conv2d_out_hw((h, w), w_shape[2:], params)
    if h_out < 1 or w_out < 1:
        raise ValueError(
            f"output size ({h_out}, {w_out}) must be >= 1: input {(h, w)} padded by "
            f"{_show_padding(params.pad_h, params.pad_w)} is smaller than the dilated kernel "
            f"{tuple(w_shape[2:])} with dilation {params.dilation}")
    shape = ((x_shape[0],) if len(x_shape) == 4 else ()) + (c_out, h_out, w_out)
    return params, shape, dtype


def _check_grad_output(g_shape, out_shape):
    if tuple(g_shape) != tuple(out_shape):
        raise ValueError(f"grad_output must have the forward result's shape {tuple(out_shape)}, "
                         f"got {tuple(g_shape)}")


def normalise_backward(g_shape, x_shape, w_shape, dtypes, *, stride=1, padding=0,
                       output_padding=0, dilation=1, groups=1, output_size=None):
    """Validate one ``conv_transpose2d_backward`` call; return ``(params, dtype)``.

    ``g_shape`` must be the shape the forward call gives; ``dtypes`` are those of
    ``grad_output``, ``x`` and ``weight``.
    """
    params, out_shape, dtype = normalise(
        x_shape, w_shape, None, _named(dtypes, _GRAD_OPERANDS), stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size)
    _check_grad_output(g_shape, out_shape)
    return params, dtype


def normalise_conv2d_backward(g_shape, x_shape, w_shape, dtypes, *, stride=1, padding=0,
                              dilation=1, groups=1):
    """Validate one ``conv2d_backward`` call; return ``(params, dtype)``."""
    params, out_shape, dtype = normalise_conv2d(
        x_shape, w_shape, None, _named(dtypes, _GRAD_OPERANDS), stride=stride,
        padding=padding, dilation=dilation, groups=groups)
    _check_grad_output(g_shape, out_shape)
    return params, dtype
