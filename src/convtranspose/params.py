"""Validation and normalisation of every argument, in one place, for any rank.

Nothing here touches array data: the functions check types, shapes and the
integer hyper-parameters, turn ``stride=2`` into ``(2, 2)`` and so on, and
return a frozen :class:`ConvParams`. Kernels receive only what this module has
approved, so they never validate.

One implementation serves every rank ``r`` in 1, 2, 3 (1-D signals, 2-D images,
3-D volumes): ``x`` is ``(N, C, *spatial)`` or unbatched ``(C, *spatial)`` with ``r``
spatial dimensions, the weight has ``r + 2`` dimensions, and each hyper-parameter is an
int or one value per spatial dimension. The public 2-D functions pass ``rank=2`` (the
default of every function here, so that 2-D callers need not say it); ``rank=None``
takes the rank from the weight.

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
    from ._typing import AutoPadding, IntTuple, Rank, Shape

__all__ = ["ConvParams", "normalise", "normalise_backward", "normalise_conv",
           "normalise_conv_backward", "output_shape", "result_dtype", "SUPPORTED_DTYPES",
           "ACCEPTED_DTYPES", "check_dtype", "is_half", "check_device_dtype",
           "DATA_FORMATS", "is_channels_last"]

#: Largest stride, dilation or padding accepted: keeps every index product of the
#: kernels' int64 arithmetic far from overflow.
MAX_PARAM = 2**31 - 1

#: Floating dtypes the kernels are compiled for (half precision is converted to them).
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

#: Every dtype the host functions accept, as messages name them: float16 and bfloat16
#: (``ml_dtypes.bfloat16``) are stored in half precision and computed in float32; complex64
#: and complex128 run as three real convolutions (:mod:`convtranspose.complexops`).
ACCEPTED_DTYPES = "float16, bfloat16, float32, float64, complex64 or complex128"

#: The names of the spatial dimensions of each rank, outermost first.
_SPATIAL = {1: ("W",), 2: ("H", "W"), 3: ("D", "H", "W")}
_EXTENT = {1: "width", 2: "height and width", 3: "depth, height and width"}


@dataclass(frozen=True, init=False)
class ConvParams:
    """Validated hyper-parameters of one (transposed) convolution of any rank.

    Each field but ``groups`` has one entry per spatial dimension, outermost first
    (``(height, width)`` in 2-D, ``(depth, height, width)`` in 3-D); ``pads`` holds
    ``(before, after)`` pairs, so asymmetric padding is represented directly.

    Constructed as ``ConvParams(stride, pads, output_padding, dilation, groups)``, or,
    for rank 2, as ``ConvParams(stride, pad_h, pad_w, output_padding, dilation, groups)``
    (the form the 2-D code uses). Build it with :func:`normalise` rather than by hand:
    the constructor checks only that the lengths agree.

    Examples
    --------
    >>> from convtranspose.params import ConvParams
    >>> p = ConvParams((2, 2, 2), ((1, 1), (0, 1), (0, 0)), (1, 0, 0), (1, 1, 1), 1)
    >>> p.rank, p.padding[1]
    (3, (0, 1))
    >>> q = ConvParams((2, 2), (1, 1), (0, 1), (0, 0), (1, 1), 1)
    >>> q.pads, q.pad_w
    (((1, 1), (0, 1)), (0, 1))
    """

    stride: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    output_padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int

    def __init__(self, stride, pads, output_padding, dilation, groups, *rank2):
        if len(rank2) == 1:     # ConvParams(stride, pad_h, pad_w, output_padding, dilation, groups)
            pads, output_padding, dilation, groups = ((pads, output_padding), dilation,
                                                      groups, rank2[0])
        elif rank2:
            raise TypeError(f"ConvParams takes 5 or 6 arguments, got {5 + len(rank2)}")
        fields = dict(stride=tuple(map(operator.index, stride)),
                      pads=tuple((operator.index(lo), operator.index(hi)) for lo, hi in pads),
                      output_padding=tuple(map(operator.index, output_padding)),
                      dilation=tuple(map(operator.index, dilation)),
                      groups=operator.index(groups))
        lengths = {name: len(v) for name, v in fields.items() if name != "groups"}
        if len(set(lengths.values())) != 1 or lengths["stride"] not in _SPATIAL:
            raise ValueError(f"ConvParams needs 1, 2 or 3 entries in each of stride, pads, "
                             f"output_padding and dilation, got {lengths}")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @property
    def rank(self):
        """The number of spatial dimensions: 1, 2 or 3."""
        return len(self.stride)

    @property
    def plane(self):
        """The 2-D parameters of the last two spatial dimensions (height and width), which
        the 3-D operations hand to the 2-D kernels.

        Examples
        --------
        >>> from convtranspose.params import ConvParams
        >>> p = ConvParams((2, 1, 3), ((1, 1), (0, 2), (0, 0)), (1, 0, 0), (1, 2, 1), 1)
        >>> p.plane.stride, p.plane.pads
        ((1, 3), ((0, 2), (0, 0)))
        """
        return ConvParams(self.stride[-2:], self.pads[-2:], self.output_padding[-2:],
                          self.dilation[-2:], self.groups)

    @property
    def padding(self):
        """Padding as ``(before, after)`` pairs, one per spatial dimension: in 2-D
        ``((top, bottom), (left, right))``."""
        return self.pads

    @property
    def pad_h(self):
        """``(top, bottom)`` of 2-D parameters (``AttributeError`` for other ranks)."""
        return self._rank2_pad(0)

    @property
    def pad_w(self):
        """``(left, right)`` of 2-D parameters (``AttributeError`` for other ranks)."""
        return self._rank2_pad(1)

    def _rank2_pad(self, i):
        if self.rank != 2:
            raise AttributeError(f"pad_h and pad_w exist for 2-D parameters only; these are "
                                 f"{self.rank}-D: use pads, {self.pads}")
        return self.pads[i]


# ----------------------------------------------------------------------------
# scalar and tuple parsing


#: The ``backend`` names every function takes: ``"auto"``, the CPU backends and the GPU's
#: (:data:`convtranspose.dispatch.BACKENDS`, :data:`convtranspose.dispatch.GPU_BACKENDS`).
BACKEND_NAMES = ("auto", "direct", "im2col", "cuda")


def check_backend(backend):
    """Return ``backend`` if it names a backend or ``"auto"``, else raise ``ValueError``."""
    if not isinstance(backend, str) or backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES}, got {backend!r}")
    return backend


def check_method(backend):
    """:func:`check_backend` of ``conv2d`` and the gradients (its message names them)."""
    if not isinstance(backend, str) or backend not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {BACKEND_NAMES} for conv2d and the "
                         f"gradients, got {backend!r}")
    return backend


#: The layouts of each rank: channels-first (the default, PyTorch's), then channels-last.
DATA_FORMATS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}


def is_channels_last(data_format, rank):
    """Whether ``data_format`` is the channels-last layout of ``rank`` (``"NWC"``, ``"NHWC"``
    or ``"NDHWC"``); ``False`` for the channels-first one (``"NCW"``, ``"NCHW"``,
    ``"NCDHW"``); ``ValueError`` naming the two for anything else.

    Examples
    --------
    >>> from convtranspose.params import is_channels_last
    >>> is_channels_last("NHWC", 2), is_channels_last("NCDHW", 3)
    (True, False)
    """
    formats = DATA_FORMATS[rank]
    if not isinstance(data_format, str) or data_format not in formats:
        raise ValueError(f"data_format must be {formats[0]!r} (channels first) or "
                         f"{formats[1]!r} (channels last) for {rank}-D data, got "
                         f"{data_format!r}")
    return data_format == formats[1]


def _caller_shape(shape, rank, last):
    """A channels-first ``(..., C, *spatial)`` shape as the caller laid it out: itself, or
    with ``last`` ``(..., *spatial, C)`` (what messages about shapes show)."""
    shape = tuple(shape)
    if not last or len(shape) < rank + 1:
        return shape
    c = len(shape) - rank - 1
    return shape[:c] + shape[c + 1:] + (shape[c],)


def _first_shape(shape, rank, last):
    """The inverse of :func:`_caller_shape`: a caller's shape in channels-first order."""
    shape = tuple(shape)
    if not last or len(shape) < rank + 1:
        return shape
    c = len(shape) - rank - 1
    return shape[:c] + (shape[-1],) + shape[c:-1]


def _layout_hint(x_shape, c_expected, rank, last):
    """`` (did you mean data_format=...?)`` when ``x`` (channels-first ``x_shape``) would
    have ``c_expected`` channels read in the other layout of ``rank``; else ``""``."""
    caller = _caller_shape(x_shape, rank, last)
    other = caller[-rank - 1] if last else caller[-1]
    if other == c_expected:
        return f" (did you mean data_format={DATA_FORMATS[rank][0 if last else 1]!r}?)"
    return ""


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


def _check_rank(rank):
    if rank not in _SPATIAL:
        raise ValueError(f"rank must be 1, 2 or 3, got {rank!r}")
    return rank


def _ints_phrase(rank):
    """What an int-or-tuple argument of ``rank`` dimensions may be, for messages."""
    if rank == 2:
        return "a pair of ints"
    return f"a tuple of {rank} int{'s' * (rank > 1)} for a {rank}-D convolution"


def _padding_phrase(rank, example=True):
    """What ``padding`` may be (besides ``'valid'``/``'same'``), for messages."""
    if rank == 2:
        pair = "a pair (pH, pW)" if example else "a pair"
        return f"an int, {pair} or ((top, bottom), (left, right))"
    many = "s" * (rank > 1)
    return (f"an int, a tuple of {rank} int{many} or {rank} (before, after) pair{many} "
            f"for a {rank}-D convolution")


def _is_sequence(value):
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim)


def _as_tuple(value, name, rank=2):
    """An int or a sequence as ``rank`` ints: ``2`` -> ``(2, 2)``; ``(2, 3)`` -> ``(2, 3)``;
    a one-element sequence counts for every dimension, as PyTorch expands a one-element
    list; anything else is an error naming ``name`` and the rank.

    Examples
    --------
    >>> from convtranspose.params import _as_tuple
    >>> _as_tuple(2, "stride", 3), _as_tuple([2], "stride", 3), _as_tuple((1, 2), "stride")
    ((2, 2, 2), (2, 2, 2), (1, 2))
    >>> _as_tuple((1, 2), "stride", 3)
    Traceback (most recent call last):
    ...
    ValueError: stride must be an int or a tuple of 3 ints for a 3-D convolution, got (1, 2)
    """
    message = f"{name} must be an int or {_ints_phrase(rank)}, got {value!r}"
    if _is_sequence(value):
        items = list(value.tolist() if isinstance(value, np.ndarray) else value)
        if len(items) == 1:
            items = items * rank
        if len(items) != rank:
            raise ValueError(message)
        try:
            return tuple(_as_int(v, name) for v in items)
        except TypeError:
            raise TypeError(message) from None
    try:
        v = _as_int(value, name)
    except TypeError:
        raise TypeError(message) from None
    return (v,) * rank


def _as_pair(value, name):
    """:func:`_as_tuple` for rank 2: ``2`` -> ``(2, 2)``."""
    return _as_tuple(value, name, 2)


def _as_padding(value, rank=2):
    """int, ``rank`` ints or ``rank`` ``(before, after)`` pairs -> ``rank`` pairs.

    In 2-D: int, ``(pH, pW)`` or ``((top, bottom), (left, right))``. An element of the
    nested form may itself be an int or a one-element sequence (both sides alike).

    Examples
    --------
    >>> from convtranspose.params import _as_padding
    >>> _as_padding(1), _as_padding((1, 2, 3), 3), _as_padding(((0, 1),), 1)
    (((1, 1), (1, 1)), ((1, 1), (2, 2), (3, 3)), ((0, 1),))
    """
    message = f"padding must be {_padding_phrase(rank)}, got {value!r}"
    items = value.tolist() if isinstance(value, np.ndarray) else value
    nested = isinstance(items, (list, tuple)) and any(isinstance(i, (list, tuple)) for i in items)
    try:
        if nested:
            if len(items) != rank:
                raise ValueError(message)
            return tuple(_as_pair(item, "padding") for item in items)
        return tuple((p, p) for p in _as_tuple(items, "padding", rank))
    except ValueError:
        raise ValueError(message) from None
    except TypeError:
        raise TypeError(message) from None


def _plain(value):
    """True for an exact ``int`` or a tuple of such (nested): safe as a cache key."""
    kind = type(value)
    return kind is int or (kind is tuple and all(_plain(v) for v in value))


_PARAMS_CACHE = {}   # (stride, padding, output_padding, dilation, groups, rank) -> ConvParams


def _make_params(stride, padding, output_padding, dilation, groups, rank=2):
    """Parse and range-check the hyper-parameters that do not depend on shapes.

    ``padding`` is numeric here (``'valid'``/``'same'`` are turned into numbers first, by
    :func:`_conv_padding` or :func:`_transpose_padding`). Valid plain-int arguments are
    remembered, so a layer called again skips the parsing; anything else (and every
    invalid value) goes through the checks each time.
    """
    key = (stride, padding, output_padding, dilation, groups, rank)
    cacheable = _plain(key)
    if cacheable and key in _PARAMS_CACHE:
        return _PARAMS_CACHE[key]
    params = _parse_params(stride, padding, output_padding, dilation, groups, rank)
    if cacheable and len(_PARAMS_CACHE) < 1024:
        _PARAMS_CACHE[key] = params
    return params


#: The rules :func:`range_fault` checks, in its order; ``OK`` when none is broken.
(OK, BAD_STRIDE, BAD_DILATION, BAD_PADDING, BAD_OUTPUT_PADDING, BAD_GROUPS, HUGE_STRIDE,
 HUGE_DILATION, HUGE_PADDING, WIDE_OUTPUT_PADDING) = range(10)


def range_fault(stride, pads, output_padding, dilation, groups):
    """The first rule the hyper-parameters break (``BAD_STRIDE`` ... ``WIDE_OUTPUT_PADDING``,
    or ``OK``) and the first dimension that breaks it (``-1`` for none or ``groups``):
    strides and dilations at least 1, paddings, output paddings at least 0,
    groups at least 1, strides, dilations and paddings at most :data:`MAX_PARAM`, and each
    output padding below its dimension's stride or dilation.

    The one statement of these rules: plain loops over integers, so that ``@njit`` code
    compiles the same function (``convtranspose.jit``, with arrays for the tuples); each
    caller words the message. ``pads`` holds ``(before, after)`` per dimension.

    Examples
    --------
    >>> from convtranspose.params import range_fault, OK, WIDE_OUTPUT_PADDING
    >>> range_fault((2, 2), ((1, 1), (0, 0)), (1, 0), (1, 1), 1) == (OK, -1)
    True
    >>> range_fault((2, 1), ((1, 1), (0, 0)), (0, 1), (1, 1), 1) == (WIDE_OUTPUT_PADDING, 1)
    True
    """
    n = len(stride)
    for rule in range(BAD_STRIDE, WIDE_OUTPUT_PADDING + 1):
        if rule == BAD_GROUPS:
            if groups < 1:
                return rule, -1
            continue
        for a in range(n):
            s, d, op = stride[a], dilation[a], output_padding[a]
            lo, hi = pads[a][0], pads[a][1]
            if ((rule == BAD_STRIDE and s < 1) or (rule == BAD_DILATION and d < 1)
                    or (rule == BAD_PADDING and min(lo, hi) < 0)
                    or (rule == BAD_OUTPUT_PADDING and op < 0)
                    or (rule == HUGE_STRIDE and s > MAX_PARAM)
                    or (rule == HUGE_DILATION and d > MAX_PARAM)
                    or (rule == HUGE_PADDING and max(lo, hi) > MAX_PARAM)
                    or (rule == WIDE_OUTPUT_PADDING and op >= max(s, d))):
                return rule, a
    return OK, -1


def _parse_params(stride, padding, output_padding, dilation, groups, rank):
    rank = _check_rank(rank)
    stride = _as_tuple(stride, "stride", rank)
    dilation = _as_tuple(dilation, "dilation", rank)
    pads = _as_padding(padding, rank)
    output_padding = _as_tuple(output_padding, "output_padding", rank)
    groups = _as_int(groups, "groups")
    fault, _ = range_fault(stride, pads, output_padding, dilation, groups)
    if fault != OK:
        flat = sum(pads, ())
        raise ValueError({
            BAD_STRIDE: f"stride must be >= 1 in each dimension, got {stride}",
            BAD_DILATION: f"dilation must be >= 1 in each dimension, got {dilation}",
            BAD_PADDING: f"padding must be >= 0, got {_show_padding(pads)}",
            BAD_OUTPUT_PADDING: f"output_padding must be >= 0, got {output_padding}",
            BAD_GROUPS: f"groups must be >= 1, got {groups}",
            HUGE_STRIDE: f"stride must be at most 2**31 - 1 = {MAX_PARAM} in each "
                         f"dimension, got {stride}",
            HUGE_DILATION: f"dilation must be at most 2**31 - 1 = {MAX_PARAM} in each "
                           f"dimension, got {dilation}",
            HUGE_PADDING: f"padding must be at most 2**31 - 1 = {MAX_PARAM} in each "
                          f"dimension, got {flat}",
            WIDE_OUTPUT_PADDING: f"output_padding {output_padding} must be smaller than "
                                 f"stride or dilation in each dimension, got stride "
                                 f"{stride}, dilation {dilation}"}[fault])
    return ConvParams(stride, pads, output_padding, dilation, groups)


def _show_padding(pads):
    """Padding as the user would write it: one int per dimension when symmetric."""
    if all(lo == hi for lo, hi in pads):
        return tuple(lo for lo, _ in pads)
    return tuple(pads)


# ----------------------------------------------------------------------------
# 'valid' and 'same'


def _padding_word(padding, rank):
    """``"valid"`` or ``"same"`` from a padding string in any case (Keras writes
    ``"same"``, TensorFlow ``"SAME"``); ``ValueError`` saying what to write for anything
    else, ONNX's ``auto_pad`` names included.

    Examples
    --------
    >>> from convtranspose.params import _padding_word
    >>> _padding_word("SAME", 2), _padding_word("Valid", 1)
    ('same', 'valid')
    """
    word = padding.lower()
    if word in ("valid", "same"):
        return word
    if word in ("same_upper", "same_lower"):
        raise ValueError(
            f"padding {padding!r} is ONNX's auto_pad, which is not taken as a padding string: "
            "for SAME_UPPER pass padding='same' (the odd extra row at the end), for "
            "SAME_LOWER the explicit (before, after) pairs with the odd extra at the start")
    raise ValueError(f"padding must be 'valid', 'same', "
                     f"{_padding_phrase(rank, False)}, got {padding!r}")


def _transpose_padding(padding, output_padding, kernel, stride, dilation, x_shape=None,
                       output_size=None, last=False):
    """Turn ``"valid"``/``"same"`` of a transposed convolution into numbers.

    Returns ``(padding, output_padding, output_size)`` for :func:`_make_params`, of the
    rank ``len(kernel)``; anything but a string is returned unchanged. ``"valid"`` is
    padding 0 (``output_padding`` and ``output_size`` still apply). ``"same"`` makes the
    output ``input * stride`` in every dimension: of the full result, ``T = dilation*(kernel
    - 1) + 1 - stride`` rows are cropped, ``T // 2`` at the start and the rest at the end;
    for ``T < 0`` the output grows by ``-T`` at the end, as ``output_padding = -T`` does
    (TensorFlow's and Keras's ``padding="same"``; ONNX's ``auto_pad="SAME_UPPER"`` for
    ``T >= 0``). With ``output_size`` (which needs ``x_shape``, the input's shape) any
    size ``O`` with ``ceil(O / stride) == input`` can be asked for, as
    TensorFlow's ``conv2d_transpose(output_shape=...)`` allows: then ``T = (input - 1)*stride
    + dilation*(kernel - 1) + 1 - O``, split the same way. ``output_padding`` cannot be
    given with ``"same"``.

    Examples
    --------
    >>> from convtranspose.params import _transpose_padding
    >>> _transpose_padding("same", 0, (4, 3), 2, 1)         # T = 2 and T = 1
    (((1, 1), (0, 1)), (0, 0), None)
    >>> _transpose_padding("same", 0, (1,), 3, 1)           # T = -2: grows by 2 at the end
    (((0, 0),), (2,), None)
    >>> _transpose_padding("valid", 1, (3,), 2, 1)
    (0, 1, None)
    """
    if not isinstance(padding, str):
        return padding, output_padding, output_size
    rank = len(kernel)
    if _padding_word(padding, rank) == "valid":
        return 0, output_padding, output_size
    extra = _as_tuple(output_padding, "output_padding", rank)
    if any(extra):
        raise ValueError(f"output_padding {extra} cannot be given with padding='same', which "
                         "chooses the output size itself (input * stride; pass output_size "
                         "for another size)")
    checked = _make_params(stride, 0, 0, dilation, 1, rank)
    crops = [d * (k - 1) + 1 - s for k, s, d in zip(kernel, checked.stride, checked.dilation)]
    if output_size is not None:
        size = _parse_output_size(output_size, len(x_shape), rank, last)
        in_sizes = x_shape[-rank:]
        lo = tuple((n - 1) * s + 1 for n, s in zip(in_sizes, checked.stride))
        hi = tuple(n * s for n, s in zip(in_sizes, checked.stride))
        if not all(a <= o <= b for a, o, b in zip(lo, size, hi)):
            raise ValueError(f"output_size {size} cannot be reached with padding='same': valid "
                             f"sizes range from {lo} to {hi} for input size {tuple(in_sizes)}")
        crops = [t + b - o for t, b, o in zip(crops, hi, size)]
    return (tuple(_same_split(t) for t in crops), tuple(_same_extra(t) for t in crops),
            None)


def _conv_padding(padding, kernel, stride, dilation):
    """Turn ``"valid"``/``"same"`` into numbers, as ``torch.nn.functional.conv{1,2,3}d`` do
    (rank ``len(kernel)``); anything else is returned unchanged.

    Examples
    --------
    >>> from convtranspose.params import _conv_padding
    >>> _conv_padding("same", (4, 3, 1), 1, 2)       # the odd extra goes at the end
    ((3, 3), (2, 2), (0, 0))
    >>> _conv_padding("valid", (3,), 2, 1)
    0
    """
    if not isinstance(padding, str):
        return padding
    rank = len(kernel)
    if _padding_word(padding, rank) == "valid":
        return 0
    if _as_tuple(stride, "stride", rank) != (1,) * rank:
        raise ValueError(f"padding='same' needs stride 1, got stride {stride!r}")
    d = _as_tuple(dilation, "dilation", rank)
    total = [di * (k - 1) for di, k in zip(d, kernel)]
    return tuple(_same_split(t) for t in total)


def _same_split(total):
    """``(before, after)`` of ``total`` rows that ``padding="same"`` crops (a transposed
    convolution) or pads (a convolution) in one dimension: half rounded down at the start,
    the odd one at the end, as PyTorch and Keras put it; none for ``total <= 0``. One rule
    for Python and ``@njit`` code (:mod:`convtranspose.jit` compiles it)."""
    return (total // 2, total - total // 2) if total > 0 else (0, 0)


def _same_extra(total):
    """The ``output_padding`` of a transposed convolution's ``padding="same"`` in one
    dimension: ``-total`` rows added at the end where the full result is too short."""
    return max(-total, 0)


#: The 2-D name of :func:`_conv_padding` (used by the layers).
_conv2d_padding = _conv_padding


# ----------------------------------------------------------------------------
# shapes


def _spatial_out(size, k, s, pad, op, d):
    """One spatial output size of a transposed convolution (``pad`` the pair before and
    after); also compiled for ``@njit`` code (:mod:`convtranspose.jit`)."""
    return (size - 1) * s - pad[0] - pad[1] + d * (k - 1) + op + 1


def _output_sizes(sizes, kernel, p):
    """The transposed convolution's spatial output sizes, one per dimension."""
    return tuple(_spatial_out(n, k, s, pad, op, d) for n, k, s, pad, op, d in
                 zip(sizes, kernel, p.stride, p.pads, p.output_padding, p.dilation))


#: The 2-D name of :func:`_output_sizes` (used by the dispatcher).
_output_hw = _output_sizes


def _rank_of(w_shape, rank, operation):
    """``rank`` checked, or, for ``None``, the rank ``weight.ndim - 2`` (1, 2 or 3)."""
    if rank is not None:
        return _check_rank(rank)
    rank = len(w_shape) - 2
    if rank not in _SPATIAL:
        channels = _CHANNELS[operation]
        raise ValueError(f"weight must be 3-D, 4-D or 5-D ({channels}, *kernel_size) for a "
                         f"1-D, 2-D or 3-D {operation}, got shape {tuple(w_shape)}")
    return rank


_CHANNELS = {"transposed convolution": "C_in, C_out // groups",
             "convolution": "C_out, C_in // groups"}


def _check_w_ndim(w_shape, rank, operation):
    if len(w_shape) != rank + 2:
        kernel = ", ".join("k" + n for n in _SPATIAL[rank])
        raise ValueError(f"weight must be {rank + 2}-D ({_CHANNELS[operation]}, {kernel}), "
                         f"got shape {tuple(w_shape)}")


def _check_x_ndim(x_shape, rank, last=False):
    if len(x_shape) not in (rank + 1, rank + 2):
        spatial = ", ".join(_SPATIAL[rank])
        dims = f"{spatial}, C_in" if last else f"C_in, {spatial}"
        raise ValueError(f"x must be {rank + 1}-D ({dims}) or {rank + 2}-D "
                         f"(N, {dims}), got shape {_caller_shape(x_shape, rank, last)}")


def _check_sizes(x_shape, w_shape, rank=2, last=False):
    """Non-empty signals in ``x`` (``rank + 1`` or ``rank + 2`` dimensions) and a
    non-empty ``weight``."""
    _check_x_ndim(x_shape, rank, last)
    if min(w_shape) < 1:
        raise ValueError(f"weight must have a non-zero size in every dimension, "
                         f"got shape {tuple(w_shape)}")
    if min(x_shape[-rank:]) < 1:
        raise ValueError(f"x must have non-zero {_EXTENT[rank]}, got shape "
                         f"{_caller_shape(x_shape, rank, last)}")


def _check_shapes(x_shape, w_shape, b_shape, groups, rank=2, last=False):
    """Check the array shapes (``x_shape`` channels-first; ``last`` says the caller's
    layout, for messages) against each other; return ``(batched, C_out)``."""
    _check_x_ndim(x_shape, rank, last)
    _check_w_ndim(w_shape, rank, "transposed convolution")
    _check_sizes(x_shape, w_shape, rank, last)
    c_in = x_shape[-rank - 1]
    if c_in != w_shape[0]:
        raise ValueError(f"x has {c_in} input channels (shape "
                         f"{_caller_shape(x_shape, rank, last)}) but weight expects C_in = "
                         f"{w_shape[0]} (shape {tuple(w_shape)})"
                         f"{_layout_hint(x_shape, w_shape[0], rank, last)}")
    if c_in % groups:
        raise ValueError(f"input channels C_in = {c_in} must be divisible by groups = {groups}")
    c_out = w_shape[1] * groups
    if b_shape is not None and tuple(b_shape) != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {tuple(b_shape)}")
    return len(x_shape) == rank + 2, c_out


def output_shape(input_shape: Shape, weight_shape: Shape, stride: IntTuple = 1,
                 padding: AutoPadding = 0, output_padding: IntTuple = 0, groups: int = 1,
                 dilation: IntTuple = 1, *, output_size: Shape | None = None,
                 data_format: str | None = None, rank: Rank | None = None) -> tuple[int, ...]:
    """Shape of a transposed convolution's result (any rank and layout), without computing it.

    Takes the arguments of :func:`convtranspose.conv_transpose2d` (and of the 1-D and 3-D
    functions) in the same order, with shapes for arrays and no bias: for every valid
    call, ``output_shape(x.shape, w.shape, *args, **kwargs)`` equals
    ``conv_transpose2d(x, w, None, *args, **kwargs).shape``.

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, C_in, *spatial)`` or unbatched ``(C_in, *spatial)`` (channels-first), or
        ``(N, *spatial, C_in)`` / ``(*spatial, C_in)`` with a channels-last
        ``data_format``: ``(N, C_in, H, W)`` in 2-D, ``(N, C_in, W)`` in 1-D,
        ``(N, C_in, D, H, W)`` in 3-D.
    weight_shape : tuple of int
        ``(C_in, C_out // groups, *kernel_size)``.
    stride, padding, output_padding, groups, dilation : int, tuple or str
        As for :func:`convtranspose.conv_transpose2d`, with one entry per spatial
        dimension; ``padding`` may also be ``"valid"`` or ``"same"``.
    output_size : sequence of int, optional
        As for :func:`convtranspose.conv_transpose2d`: the spatial sizes, or the result's
        whole shape in the call's layout.
    data_format : str, optional
        The layout of ``input_shape`` and of the result: ``"NCW"``/``"NWC"``,
        ``"NCHW"``/``"NHWC"``, ``"NCDHW"``/``"NDHWC"``; by default the rank's
        channels-first one.
    rank : {1, 2, 3}, optional
        The number of spatial dimensions; by default ``len(weight_shape) - 2``.

    Returns
    -------
    tuple of int
        ``(N, C_out, *spatial_out)``, or ``(C_out, *spatial_out)`` for unbatched input;
        channels last with a channels-last ``data_format``.

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
    ``H_out = (H - 1)*sH - (top + bottom) + dH*(kH - 1) + opH + 1``, and likewise for
    every spatial dimension: the inverse of a convolution's ``H = floor((H_out + top +
    bottom - dH*(kH - 1) - 1) / sH) + 1``, with ``output_padding`` choosing among the
    ``sH`` sizes that the floor maps to the same ``H``. ``padding="same"`` gives
    ``H_out = H * sH``.

    Before 0.1.0 was published the positional order ended ``dilation, groups``; it is now
    ``groups, dilation``, as in :func:`convtranspose.conv_transpose2d` and PyTorch.

    Examples
    --------
    >>> from convtranspose import output_shape
    >>> output_shape((1, 3, 7, 9), (3, 5, 3, 3))
    (1, 5, 9, 11)
    >>> output_shape((16, 4, 4), (16, 8, 4, 4), stride=2, padding=1)
    (8, 8, 8)
    >>> output_shape((1, 4, 5, 5), (4, 2, 3, 3), 2, 0, 0, 2, 1)    # groups=2, dilation=1
    (1, 4, 11, 11)
    >>> output_shape((1, 512, 32), (512, 256, 16), stride=8, padding=4)      # 1-D
    (1, 256, 256)
    >>> output_shape((2, 8, 8, 8, 64), (64, 32, 2, 2, 2), stride=2, data_format="NDHWC")
    (2, 16, 16, 16, 32)
    >>> output_shape((1, 4, 5, 7), (4, 2, 3, 3), stride=(2, 3), padding="same")
    (1, 2, 10, 21)
    >>> output_shape((1, 5, 5, 4), (4, 2, 3, 3), stride=2, output_size=(1, 12, 12, 2),
    ...              data_format="NHWC")
    (1, 12, 12, 2)
    """
    x_shape = _as_shape(input_shape, "input_shape")
    w_shape = _as_shape(weight_shape, "weight_shape")
    rank = _rank_of(w_shape, rank, "transposed convolution")
    last = data_format is not None and is_channels_last(data_format, rank)
    x_first = _first_shape(x_shape, rank, last)
    _, shape = _transposed(x_first, w_shape, None, stride, padding, output_padding,
                                dilation, groups, output_size, rank, last)
    return _caller_shape(shape, rank, last)


def _as_shape(shape, name):
    """``shape`` as a tuple of Python ints; ``TypeError`` naming it otherwise (a float size
    would give float output sizes)."""
    try:
        items = tuple(shape)
        return tuple(_as_int(v, name) for v in items)
    except TypeError:
        raise TypeError(f"{name} must be a tuple of ints, got {shape!r}") from None


def _shape_for(x_shape, w_shape, b_shape, params, last=False):
    rank = params.rank
    batched, c_out = _check_shapes(x_shape, w_shape, b_shape, params.groups, rank, last)
    sizes = _output_sizes(x_shape[-rank:], w_shape[2:], params)
    if min(sizes) < 1:
        raise ValueError(
            f"output size {sizes} must be >= 1: input {tuple(x_shape[-rank:])}, "
            f"kernel {tuple(w_shape[2:])}, stride {params.stride}, padding "
            f"{_show_padding(params.pads)}, dilation {params.dilation}")
    return ((x_shape[0],) if batched else ()) + (c_out,) + sizes


def _parse_output_size(output_size, x_ndim, rank, last=False):
    """``output_size`` as ``rank`` ints: the spatial sizes, or a whole result shape of
    ``x_ndim`` entries in the caller's layout (channels-first, or with ``last``
    channels-last), whose spatial entries count."""
    if isinstance(output_size, np.ndarray):
        output_size = output_size.tolist()
    if not isinstance(output_size, (list, tuple)):
        raise TypeError(f"output_size must be a sequence of ints, got {output_size!r}")
    if len(output_size) not in (rank, x_ndim):
        spatial = ", ".join(_SPATIAL[rank])
        raise ValueError(f"output_size must have {rank} element{'s' * (rank > 1)} ({spatial}) "
                         f"or {x_ndim} (the result's whole shape) for {x_ndim}-D input, got "
                         f"{tuple(output_size)}")
    sizes = tuple(output_size)
    if len(sizes) > rank:
        sizes = sizes[-rank - 1:-1] if last else sizes[-rank:]
    return tuple(_as_int(v, "output_size") for v in sizes)


#: ``output_size`` as the spatial sizes, for callers that undo the layout before validating.
spatial_output_size = _parse_output_size


def _output_padding_for_size(output_size, x_shape, w_shape, params, last=False):
    """Turn ``output_size`` into ``output_padding`` as ``nn.ConvTranspose{1,2,3}d`` do."""
    rank = params.rank
    size = _parse_output_size(output_size, len(x_shape), rank, last)
    zero = ConvParams(params.stride, params.pads, (0,) * rank, params.dilation, params.groups)
    lo = _output_sizes(x_shape[-rank:], w_shape[2:], zero)
    hi = tuple(n + s - 1 for n, s in zip(lo, params.stride))
    if not all(a <= o <= b for a, o, b in zip(lo, size, hi)):
        raise ValueError(f"output_size {size} cannot be reached: valid sizes range from "
                         f"{lo} to {hi} for input size {tuple(x_shape[-rank:])}")
    return tuple(o - a for o, a in zip(size, lo))


# ----------------------------------------------------------------------------
# arrays


def is_half(dtype):
    """Whether ``dtype`` is float16 or ``ml_dtypes.bfloat16`` (either byte order); never
    imports ml_dtypes.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import is_half
    >>> is_half(np.dtype(np.float16)), is_half(np.dtype(">f2")), is_half(np.dtype(np.float32))
    (True, True, False)
    """
    return dtype.itemsize == 2 and (dtype.kind == "f" or dtype.name == "bfloat16")


def check_device_dtype(dtype, name):
    """``TypeError`` for a half-precision operand ``name`` bound for the GPU (the CUDA
    kernels take float32 and float64); else ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import check_device_dtype
    >>> check_device_dtype(np.dtype(np.float16), "x")
    Traceback (most recent call last):
    ...
    TypeError: x is float16: the cuda backend takes float32 or float64 only (half precision
    runs on the CPU)
    """
    if isinstance(dtype, np.dtype) and is_half(dtype):
        raise TypeError(f"{name} is {dtype.name}: the cuda backend takes float32 or float64 "
                        "only (half precision runs on the CPU)")
    return dtype


def check_dtype(dtype, name):
    """``dtype`` as a ``numpy.dtype`` if it is one of :data:`ACCEPTED_DTYPES` (either byte
    order), else ``TypeError`` naming ``name``.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import check_dtype
    >>> check_dtype(np.float16, "dtype")
    dtype('float16')
    >>> check_dtype(np.int8, "dtype")
    Traceback (most recent call last):
    ...
    TypeError: dtype must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int8
    """
    dt = np.dtype(dtype)
    if dt.kind == "c" and dt.itemsize in (8, 16):
        raise TypeError(f"{name} is {dt}: complex arrays are taken by the functions "
                        "(conv_transpose1d/2d/3d, conv1d/2d/3d and their gradients), not here")
    if not ((dt.kind == "f" and dt.itemsize in (2, 4, 8)) or dt.name == "bfloat16"):
        raise TypeError(f"{name} must be {ACCEPTED_DTYPES}, got dtype {dt}")
    return dt


def result_dtype(*dtypes):
    """The dtype of the result: ``np.result_type`` of the operands, as PyTorch promotes.

    Each operand is a dtype or a ``(name, dtype)`` pair; ``TypeError`` naming the operand
    (``"arrays"`` when it has no name) for any dtype but float16, bfloat16
    (``ml_dtypes.bfloat16``), float32 and float64: integer, bool, complex, longdouble or
    object ones. Half precision promotes as in PyTorch: float16 with float16 gives
    float16, bfloat16 with bfloat16 gives bfloat16, float16 with bfloat16 gives float32,
    and either with float32 or float64 gives that.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import result_dtype
    >>> result_dtype(np.dtype(np.float32), ("weight", np.dtype(">f8")))
    dtype('float64')
    >>> result_dtype(np.dtype(np.float16), np.dtype(np.float16))
    dtype('float16')
    >>> result_dtype(("x", np.dtype(np.int64)))
    Traceback (most recent call last):
    ...
    TypeError: x must be float16, bfloat16, float32, float64, complex64 or complex128, got dtype int64
    """
    named = [d if isinstance(d, tuple) else ("arrays", d) for d in dtypes]
    for name, dt in named:
        check_dtype(dt, name)
    return np.result_type(*(dt for _, dt in named)).newbyteorder("=")


def _named(dtypes, names):
    """Pair bare dtypes with the operand names, in order (pairs are kept as given)."""
    return [d if isinstance(d, tuple) else (names[i] if i < len(names) else "arrays", d)
            for i, d in enumerate(dtypes)]


_OPERANDS = ("x", "weight", "bias")
_GRAD_OPERANDS = ("grad_output", "x", "weight")


def normalise(x_shape, w_shape, b_shape, dtypes, *, stride=1, padding=0, output_padding=0,
              dilation=1, groups=1, output_size=None, rank=2, last=False):
    """Validate everything about one transposed convolution; return
    ``(params, out_shape, dtype)``.

    Parameters
    ----------
    x_shape, w_shape, b_shape : tuple of int
        The operand shapes: ``(N, C_in, *spatial)`` or ``(C_in, *spatial)``,
        ``(C_in, C_out // groups, *kernel_size)``, and ``(C_out,)`` or ``None`` without bias.
    dtypes : list of numpy.dtype
        Their dtypes in that order, or ``(name, dtype)`` pairs, so that a bad one is named.
    stride, padding, output_padding, dilation, groups, output_size
        As for :func:`convtranspose.conv_transpose2d`, one entry per spatial dimension;
        ``padding`` may also be ``"valid"`` or ``"same"`` (see :func:`_transpose_padding`).
    rank : {1, 2, 3} or None, default 2
        The number of spatial dimensions the caller expects (a weight of another rank is
        an error naming the expected layout); ``None`` takes it from ``w_shape``.
    last : bool, default False
        Whether the caller's layout is channels-last: ``x_shape`` is still given
        channels-first, but a whole-shape ``output_size`` is read in the caller's
        layout and messages show shapes as the caller passed them.

    Returns
    -------
    params : ConvParams
        With numeric padding and ``output_padding`` (``output_size`` and ``"same"``
        resolved).
    out_shape : tuple of int
        The result's shape (channels-first), batched or unbatched as ``x_shape`` is.
    dtype : numpy.dtype
        The result's dtype.

    Raises
    ------
    ValueError, TypeError
        Naming the bad argument (and the rank, for tuples of the wrong length).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import normalise
    >>> f4 = np.dtype(np.float32)
    >>> params, shape, dtype = normalise((2, 8, 32), (8, 4, 16), None, [f4, f4], stride=8,
    ...                                  padding="same", rank=1)
    >>> params.pads, params.output_padding, shape, dtype
    (((4, 4),), (0,), (2, 4, 256), dtype('float32'))
    >>> normalise((2, 8, 4, 4, 4), (8, 4, 2, 2, 2), None, [f4, f4], stride=(2,),
    ...           rank=None)[1]
    (2, 4, 8, 8, 8)
    """
    dtype = result_dtype(*_named(dtypes, _OPERANDS))
    rank = _rank_of(w_shape, rank, "transposed convolution")
    return (*_transposed(x_shape, w_shape, b_shape, stride, padding, output_padding, dilation,
                         groups, output_size, rank, last), dtype)


def _transposed(x_shape, w_shape, b_shape, stride, padding, output_padding, dilation, groups,
                output_size, rank, last):
    """:func:`normalise` but the dtypes: ``(params, out_shape)``, channels-first."""
    if isinstance(padding, str):    # 'valid' / 'same': numbers from the kernel and the sizes
        checked = _make_params(stride, 0, 0, dilation, groups, rank)
        _check_shapes(x_shape, w_shape, b_shape, checked.groups, rank, last)
        padding, output_padding, output_size = _transpose_padding(
            padding, output_padding, w_shape[2:], checked.stride, checked.dilation,
            x_shape, output_size, last)
    params = _make_params(stride, padding, output_padding, dilation, groups, rank)
    _check_shapes(x_shape, w_shape, b_shape, params.groups, rank, last)
    if output_size is not None:
        op = _output_padding_for_size(output_size, x_shape, w_shape, params, last)
        if params.output_padding not in ((0,) * rank, op):
            raise ValueError(f"output_padding {params.output_padding} conflicts with "
                             f"output_size {tuple(output_size)}, which needs output_padding {op}")
        params = _make_params(params.stride, params.padding, op, params.dilation, params.groups,
                              rank)
    return params, _shape_for(x_shape, w_shape, b_shape, params, last)


# ----------------------------------------------------------------------------
# convolution and the gradients (the functions above are shared)


def _conv_out(sizes, kernel, params):
    return tuple(_conv_size(n, k, s, pad, d) for n, k, s, pad, d in
                 zip(sizes, kernel, params.stride, params.pads, params.dilation))


def _conv_size(size, k, s, pad, d):
    """One spatial output size of a convolution (``pad`` the pair before and after); also
    compiled for ``@njit`` code (:mod:`convtranspose.jit`), as :func:`_spatial_out`."""
    return (size + pad[0] + pad[1] - d * (k - 1) - 1) // s + 1


def normalise_conv(x_shape, w_shape, b_shape, dtypes, *, stride=1, padding=0, dilation=1,
                   groups=1, rank=2, last=False):
    """Validate one convolution (``conv{1,2,3}d``); return ``(params, out_shape, dtype)``.

    As :func:`normalise`, but ``w_shape`` is ``(C_out, C_in // groups, *kernel_size)``,
    ``padding`` may be ``"valid"`` or ``"same"`` with PyTorch's meaning (``"same"`` needs
    stride 1; the odd extra goes at the end), and the returned :class:`ConvParams` has
    ``output_padding`` 0. ``normalise_conv2d`` is the same function.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import normalise_conv
    >>> f8 = np.dtype(np.float64)
    >>> params, shape, _ = normalise_conv((1, 4, 9, 9, 9), (6, 2, 2, 3, 3), None, [f8, f8],
    ...                                   padding="same", groups=2, rank=3)
    >>> params.pads, shape
    (((0, 1), (1, 1), (1, 1)), (1, 6, 9, 9, 9))
    """
    dtype = result_dtype(*_named(dtypes, _OPERANDS))
    rank = _rank_of(w_shape, rank, "convolution")
    _check_w_ndim(w_shape, rank, "convolution")
    padding = _conv_padding(padding, w_shape[2:], stride, dilation)
    params = _make_params(stride, padding, 0, dilation, groups, rank)
    _check_sizes(x_shape, w_shape, rank, last)
    c_in, sizes = x_shape[-rank - 1], tuple(x_shape[-rank:])
    c_out, g = w_shape[0], params.groups
    if c_out % g:
        raise ValueError(f"output channels C_out = {c_out} (weight shape {tuple(w_shape)}) "
                         f"must be divisible by groups = {g}")
    if c_in != w_shape[1] * g:
        raise ValueError(f"x has {c_in} input channels (shape "
                         f"{_caller_shape(x_shape, rank, last)}) but weight {tuple(w_shape)} "
                         f"with groups = {g} expects C_in = {w_shape[1] * g}"
                         f"{_layout_hint(x_shape, w_shape[1] * g, rank, last)}")
    if b_shape is not None and tuple(b_shape) != (c_out,):
        raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {tuple(b_shape)}")
    out = _conv_out(sizes, w_shape[2:], params)
    if min(out) < 1:
        raise ValueError(
            f"output size {out} must be >= 1: input {sizes} padded by "
            f"{_show_padding(params.pads)} is smaller than the dilated kernel "
            f"{tuple(w_shape[2:])} with dilation {params.dilation}")
    shape = ((x_shape[0],) if len(x_shape) == rank + 2 else ()) + (c_out,) + out
    return params, shape, dtype


def _check_grad_output(g_shape, out_shape, rank, last):
    if tuple(g_shape) != tuple(out_shape):
        raise ValueError(f"grad_output must have the forward result's shape "
                         f"{_caller_shape(out_shape, rank, last)}, got "
                         f"{_caller_shape(g_shape, rank, last)}")


def normalise_backward(g_shape, x_shape, w_shape, dtypes, *, stride=1, padding=0,
                       output_padding=0, dilation=1, groups=1, output_size=None, rank=2,
                       last=False):
    """Validate one transposed convolution's backward call; return ``(params, dtype)``.

    ``g_shape`` must be the shape the forward call gives; ``dtypes`` are those of
    ``grad_output``, ``x`` and ``weight``; the rest as for :func:`normalise`.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import normalise_backward
    >>> f8 = np.dtype(np.float64)
    >>> normalise_backward((3, 20), (2, 10), (2, 3, 4), [f8] * 3, stride=2, padding="same",
    ...                    rank=1)[0].pads
    ((1, 1),)
    """
    params, out_shape, dtype = normalise(
        x_shape, w_shape, None, _named(dtypes, _GRAD_OPERANDS), stride=stride,
        padding=padding, output_padding=output_padding, dilation=dilation, groups=groups,
        output_size=output_size, rank=rank, last=last)
    _check_grad_output(g_shape, out_shape, params.rank, last)
    return params, dtype


def normalise_conv_backward(g_shape, x_shape, w_shape, dtypes, *, stride=1, padding=0,
                            dilation=1, groups=1, rank=2, last=False):
    """Validate one convolution's backward call; return ``(params, dtype)``.

    As :func:`normalise_backward`, with the arguments of :func:`normalise_conv`.
    ``normalise_conv2d_backward`` is the same function.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.params import normalise_conv_backward
    >>> f8 = np.dtype(np.float64)
    >>> normalise_conv_backward((1, 3, 4), (1, 2, 9), (3, 2, 3), [f8] * 3, stride=2,
    ...                         rank=1)[0].stride
    (2,)
    """
    params, out_shape, dtype = normalise_conv(
        x_shape, w_shape, None, _named(dtypes, _GRAD_OPERANDS), stride=stride,
        padding=padding, dilation=dilation, groups=groups, rank=rank, last=last)
    _check_grad_output(g_shape, out_shape, params.rank, last)
    return params, dtype


#: The 2-D names (``rank=2`` is the default of the generic functions).
normalise_conv2d = normalise_conv
normalise_conv2d_backward = normalise_conv_backward


def adjoint_params(params, in_hw, k_hw, out_hw):
    """The transposed convolution that maps a convolution's output grid back onto its input.

    ``params`` are the convolution's; ``in_hw`` is its output size (the transposed
    convolution's input), ``out_hw`` its input size, ``k_hw`` the kernel's, one entry per
    spatial dimension. The rows the convolution's floor dropped become ``output_padding``
    or a smaller padding at the end. Used for ``conv2d``'s input gradient on every backend.

    Examples
    --------
    >>> from convtranspose.params import ConvParams, adjoint_params
    >>> conv = ConvParams((2, 2), (1, 1), (1, 1), (0, 0), (1, 1), 1)   # stride 2, padding 1
    >>> t = adjoint_params(conv, (4, 4), (3, 3), (8, 8))   # a 3x3 kernel takes 8x8 to 4x4
    >>> t.pads, t.output_padding
    (((1, 0), (1, 0)), (0, 0))
    >>> conv = ConvParams((2, 2), (0, 0), (0, 0), (0, 0), (1, 1), 1)   # stride 2, no padding
    >>> adjoint_params(conv, (4, 4), (1, 1), (8, 8)).output_padding   # 1x1: 8x8 to 4x4
    (1, 1)
    """
    pads, ops = [], []
    for i in range(params.rank):
        s, d, before = params.stride[i], params.dilation[i], params.padding[i][0]
        after = (in_hw[i] - 1) * s - before + d * (k_hw[i] - 1) + 1 - out_hw[i]
        pads.append((before, max(after, 0)))
        ops.append(max(-after, 0))
    return ConvParams(params.stride, tuple(pads), tuple(ops), params.dilation, params.groups)
