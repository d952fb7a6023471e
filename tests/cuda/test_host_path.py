"""``convtranspose.cuda.conv_transpose2d`` with NumPy operands: validated as the CPU call is,
copied to the GPU, the result copied back (into ``out`` when given), without going through
the public module (the ``cuda`` package imports nothing above it)."""
from __future__ import annotations

import numpy as np
import pytest

from convtranspose import cuda
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close

KW = dict(stride=2, padding=1, output_padding=1)


@pytest.fixture
def problem():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 3, 3, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(2)
    return x, w, b, conv_transpose2d_reference(x, w, b, **KW)


def test_numpy_in_numpy_out(problem):
    x, w, b, expected = problem
    y = cuda.conv_transpose2d(x, w, b, **KW)
    assert type(y) is np.ndarray and y.dtype == np.float64
    assert_close(y, expected, np.float64)
    y1 = cuda.conv_transpose2d(x[1], w, b, **KW)             # unbatched
    assert_close(y1, expected[1], np.float64)
    y32 = cuda.conv_transpose2d(x.astype(np.float32), w.astype(np.float32), **KW)
    assert y32.dtype == np.float32
    assert_close(y32, conv_transpose2d_reference(x, w, None, **KW), np.float32)
    assert cuda.conv_transpose2d(x[:0], w, b, **KW).shape == (0, *expected.shape[1:])


@pytest.mark.parametrize("layout", ["C", "F"])
def test_out_is_filled_and_returned(problem, layout):
    x, w, b, expected = problem
    out = np.full(expected.shape, np.nan, order=layout)
    assert cuda.conv_transpose2d(x, w, b, out=out, **KW) is out
    assert_close(out, expected, np.float64)


@pytest.mark.parametrize("change, error, message", [
    (dict(x=None), TypeError, "x must be an array"),
    (dict(bias=[[1.0], [2, 3]]), TypeError, "bias must be an array"),
    (dict(out=np.zeros((2, 2, 6, 8), np.float32)), ValueError, "out must have dtype"),
    (dict(out=np.zeros(3)), ValueError, "out must have shape"),
    (dict(out=[0.0]), TypeError, "out must be a numpy.ndarray"),
    (dict(stride=0), ValueError, "stride"),
])
def test_errors_name_the_argument(problem, change, error, message):
    x, w, b, _ = problem
    args = dict(x=x, weight=w, bias=b, **KW)
    args.update(change)
    with pytest.raises(error, match=message):
        cuda.conv_transpose2d(**args)
