"""Helpers shared by the tests, ``python -m convtranspose check`` and the benchmarks.

One tolerance table, one generator of random valid problems and one list of extreme
problems, so every place that checks a backend checks it the same way.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .params import normalise

__all__ = ["TOLERANCE", "BFLOAT16_TOLERANCE", "Problem", "random_problem", "relative_error",
           "assert_close", "assert_same_specials", "extreme_problems", "call_in_layout",
           "public_function", "operand_shapes"]

#: Largest allowed ``max|actual - expected| / max|expected|`` per result dtype, against the
#: float64 reference (or PyTorch). float16 (and bfloat16, ``BFLOAT16_TOLERANCE``: its
#: dtype needs ml_dtypes, which this module does not import) are summed in float32 and
#: rounded once: twice their unit roundoff (2**-11, 2**-8) covers it on the small problems
#: this table serves (``tests/test_half.py`` checks the elementwise bound).
TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12,
             np.dtype(np.float16): 2.0**-10, np.dtype(np.complex64): 1e-5,
             np.dtype(np.complex128): 1e-12}
BFLOAT16_TOLERANCE = 2.0**-7


def relative_error(actual, expected):
    """``max|actual - expected| / max|expected|`` (absolute when ``expected`` is all zero;
    moduli for complex arrays)."""
    wide = np.complex128 if np.iscomplexobj(actual) or np.iscomplexobj(expected) else np.float64
    actual = np.asarray(actual, wide)
    expected = np.asarray(expected, wide)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
    if expected.size == 0:
        return 0.0
    scale = np.max(np.abs(expected))
    err = np.max(np.abs(actual - expected))
    return float(err / scale) if scale > 0 else float(err)


def assert_close(actual, expected, dtype, factor=1.0):
    """Assert ``relative_error(actual, expected) <= factor * TOLERANCE[dtype]``."""
    dtype = np.dtype(dtype)
    tol = factor * (BFLOAT16_TOLERANCE if dtype.name == "bfloat16" else TOLERANCE[dtype])
    err = relative_error(actual, expected)
    if not err <= tol:   # also catches NaN
        raise AssertionError(f"relative error {err:.3g} exceeds {tol:.3g} ({np.dtype(dtype)})")


def assert_same_specials(actual, expected, dtype, factor=1.0):
    """Assert NaN at the same places, Inf at the same places with the same signs, and the
    finite values close (:func:`assert_close` on them, relative to the largest).

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.testing import assert_same_specials
    >>> assert_same_specials(np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]),
    ...                      np.float64)
    """
    actual = np.asarray(actual, np.float64)
    expected = np.asarray(expected, np.float64)
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {actual.shape} != expected {expected.shape}")
    for test in (np.isnan, np.isposinf, np.isneginf):
        if not np.array_equal(test(actual), test(expected)):
            raise AssertionError(f"{test.__name__} differs at "
                                 f"{np.argwhere(test(actual) != test(expected))[:5].tolist()}")
    finite = np.isfinite(expected)
    assert_close(actual[finite], expected[finite], dtype, factor)


@dataclass(frozen=True)
class Problem:
    """A valid random problem: shapes plus keyword arguments for ``conv_transpose2d`` (or
    the function of its rank)."""

    x_shape: tuple
    w_shape: tuple
    bias: bool
    kwargs: dict

    def arrays(self, dtype=np.float64, seed=0):
        """Random ``(x, weight, bias)`` (bias ``None`` when the problem has none)."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.x_shape).astype(dtype)
        w = rng.standard_normal(self.w_shape).astype(dtype)
        c_out = self.w_shape[1] * self.kwargs.get("groups", 1)
        b = rng.standard_normal(c_out).astype(dtype) if self.bias else None
        return x, w, b

    def __str__(self):
        args = ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"x{self.x_shape} w{self.w_shape} bias={self.bias} {args}"


def random_problem(rng, max_channels=8, max_size=9, max_kernel=5, max_stride=4,
                   max_dilation=3, asymmetric=True, rank=2):
    """Draw a valid problem covering every parameter: strides, asymmetric padding,
    output_padding, dilation, groups, non-square kernels and images, unbatched and N=0,
    with ``rank`` spatial dimensions (the keywords of ``conv_transpose{rank}d``).

    ``asymmetric=False`` keeps to what PyTorch can express (symmetric padding).
    """
    while True:
        groups = int(rng.choice([1, 1, 2, 3]))
        c_in = groups * int(rng.integers(1, max_channels // groups + 1))
        c_out_g = int(rng.integers(1, max(2, max_channels // groups) + 1))
        k = tuple(int(v) for v in rng.integers(1, max_kernel + 1, rank))
        hw = tuple(int(v) for v in rng.integers(1, max_size + 1, rank))
        stride = tuple(int(v) for v in rng.integers(1, max_stride + 1, rank))
        dilation = tuple(int(v) for v in rng.integers(1, max_dilation + 1, rank))
        op = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
        if asymmetric and rng.random() < 0.3:
            padding = tuple(tuple(int(v) for v in rng.integers(0, 4, 2)) for _ in range(rank))
        else:
            padding = tuple(int(v) for v in rng.integers(0, 3, rank))
        n = int(rng.choice([0, 1, 2, 3])) if rng.random() < 0.8 else None
        x_shape = (c_in, *hw) if n is None else (n, c_in, *hw)
        w_shape = (c_in, c_out_g, *k)
        kwargs = dict(stride=stride, padding=padding, output_padding=op, groups=groups,
                      dilation=dilation)
        try:
            normalise(x_shape, w_shape, None, [np.dtype(np.float64)], rank=rank, **kwargs)
        except ValueError:      # e.g. padding crops the whole output: draw again
            continue
        return Problem(x_shape, w_shape, bool(rng.random() < 0.7), kwargs)


def extreme_problems(stride=64, dilation=50, kernel=31, channels=4096, huge_stride=2**31 - 1):
    """Extreme but valid problems ``(name, x shape, weight shape, kwargs)``, one limit each.

    The defaults are the CPU's reliability cases (``tests/reliability/test_sizes.py``); the
    CUDA simulator runs the same list scaled down (``tests/cuda/test_edges.py``). Names
    carry the scaled values: ``extreme_problems(stride=16)`` has ``"stride16"``.
    ``stride`` must be at least 4.
    """
    s, d, k, c = stride, dilation, kernel, channels
    return [
        (f"stride{s}", (2, 3, 3, 3), (3, 2, 2, 3), dict(stride=s)),
        (f"stride{s}x1", (1, 2, 3, 4), (2, 2, 3, 3), dict(stride=(s, 1), padding=(s // 2 - 2, 1))),
        (f"dilation{d}", (1, 2, 4, 4), (2, 3, 3, 3), dict(dilation=d, stride=3)),
        (f"dilation{d}_op", (1, 2, 4, 4), (2, 3, 3, 2),
         dict(dilation=(d, 1), output_padding=(d - 1, 0))),
        (f"kernel{k}", (1, 2, 5, 5), (2, 2, k, k), dict(stride=2, padding=k // 4)),
        (f"kernel{k}_1x1", (2, 3, 1, 1), (3, 2, k, k), {}),
        ("image1x1", (4, 3, 1, 1), (3, 5, 4, 4), dict(stride=2, padding=1)),
        ("image1x1_stride_huge", (2, 3, 1, 1), (3, 2, 2, 2), dict(stride=huge_stride)),
        ("c1_groups1", (1, 1, 7, 9), (1, 1, 3, 3), dict(stride=2)),
        ("c1_unbatched", (1, 5, 5), (1, 1, 1, 1), {}),
        (f"c{c}_tiny", (1, c, 1, 1), (c, 2, 2, 2), {}),
        (f"c{c}_2x2", (2, c, 2, 2), (c, 1, 3, 3), dict(stride=2)),
        (f"c{c}_depthwise", (1, c, 2, 2), (c, 1, 2, 2), dict(groups=c, stride=2)),
        ("pad_crops_to_1", (1, 2, 3, 3), (2, 2, 3, 3), dict(padding=((2, 2), (0, 4)))),
    ]


def call_in_layout(fn, x, weight, bias, data_format, rank, contiguous=True, **kwargs):
    """``fn(x, weight, bias, data_format=data_format, **kwargs)`` with the channels-first
    ``x`` laid out as ``data_format`` says (channels-last: a C-contiguous copy, the memory
    the engine reads in place, or with ``contiguous=False`` a view keeping ``x``'s
    strides), any warning raised as an error.

    Examples
    --------
    >>> import numpy as np
    >>> import convtranspose as ct
    >>> from convtranspose.testing import call_in_layout
    >>> call_in_layout(ct.conv1d, np.ones((1, 2, 3)), np.ones((1, 2, 1)), None, "NWC", 1)
    array([[[2.],
            [2.],
            [2.]]])
    """
    from .params import is_channels_last
    if is_channels_last(data_format, rank):
        x = np.moveaxis(x, -rank - 1, -1)
        if contiguous:
            x = np.ascontiguousarray(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(x, weight, bias, data_format=data_format, **kwargs)


def public_function(op, rank, backward=False):
    """The public function of ``op`` (``"transposed"`` or ``"correlation"``) at ``rank``,
    or its gradients with ``backward``.

    Examples
    --------
    >>> from convtranspose.testing import public_function
    >>> public_function("correlation", 3, backward=True).__name__
    'conv3d_backward'
    """
    import convtranspose
    name = f"conv_transpose{rank}d" if op == "transposed" else f"conv{rank}d"
    return getattr(convtranspose, name + ("_backward" if backward else ""))


def operand_shapes(n, c_in, c_out, size, k, groups, rank, transposed):
    """``(x_shape, weight_shape)`` of a test case: ``n`` images (``None``: unbatched) of
    ``size`` per spatial dimension, a ``k``-wide kernel, the weight laid out for a
    transposed convolution or (``transposed=False``) a convolution.

    Examples
    --------
    >>> from convtranspose.testing import operand_shapes
    >>> operand_shapes(None, 4, 6, 5, 3, 2, 2, True)
    ((4, 5, 5), (4, 3, 3, 3))
    """
    x_shape = ((n,) if n is not None else ()) + (c_in,) + (size,) * rank
    w_shape = ((c_in, c_out // groups) if transposed else (c_out, c_in // groups)) + (k,) * rank
    return x_shape, w_shape
