"""Public-API behaviour: memory layouts, out=, dtypes, output_size, inputs left alone."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close

KW = dict(stride=2, padding=((1, 0), (2, 1)), dilation=(1, 2), output_padding=(1, 0), groups=2)


@pytest.fixture
def problem():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 4, 5, 6))
    w = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(6)
    return x, w, b, conv_transpose2d_reference(x, w, b, **KW)


@pytest.mark.parametrize("layout", ["fortran", "sliced", "transposed", "big_endian", "read_only",
                                    "broadcast"])
def test_any_input_layout(backend, dtype, problem, layout):
    x, w, b, _ = problem
    x, w, b = x.astype(dtype), w.astype(dtype), b.astype(dtype)
    expected = conv_transpose2d_reference(x, w, b, **KW)
    if layout == "fortran":
        x, w = np.asfortranarray(x), np.asfortranarray(w)
    elif layout == "sliced":
        x_big = np.zeros(x.shape[:3] + (2 * x.shape[3],), dtype)
        x_big[..., ::2] = x
        w_big = np.zeros((8,) + w.shape[1:], dtype)
        w_big[1::2] = w
        x, w = x_big[..., ::2], w_big[1::2]
    elif layout == "transposed":
        x = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    elif layout == "big_endian":
        x, w, b = (a.astype(a.dtype.newbyteorder(">")) for a in (x, w, b))
    elif layout == "read_only":
        for a in (x, w, b):
            a.flags.writeable = False
    elif layout == "broadcast":
        x = np.broadcast_to(x[:1], x.shape)
        expected = conv_transpose2d_reference(x, w, b, **KW)
    got = ct.conv_transpose2d(x, w, b, backend=backend, **KW)
    assert got.dtype == dtype and got.dtype.isnative and got.flags.c_contiguous
    assert_close(got, expected, dtype)


def test_inputs_unmodified(backend, problem):
    x, w, b, _ = problem
    copies = [a.copy() for a in (x, w, b)]
    ct.conv_transpose2d(x, w, b, backend=backend, **KW)
    for a, c in zip((x, w, b), copies):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("kind", ["contiguous", "strided", "big_endian", "aliases_input"])
def test_out_is_fully_overwritten(backend, problem, kind):
    x, w, b, expected = problem
    if kind == "contiguous":
        out = np.full(expected.shape, np.nan)
    elif kind == "strided":
        out = np.full(expected.shape[:3] + (2 * expected.shape[3],), np.nan)[..., ::2]
    elif kind == "big_endian":
        out = np.full(expected.shape, np.nan, ">f8")
    else:   # out is a view of x's memory: x must be read before out is written
        buf = np.full(max(x.size, expected.size), np.nan)
        buf[:x.size] = x.ravel()
        x = buf[:x.size].reshape(x.shape)
        out = buf[:expected.size].reshape(expected.shape)
    got = ct.conv_transpose2d(x, w, b, out=out, backend=backend, **KW)
    assert got is out
    assert_close(out, expected, np.float64)


def test_dtype_promotion(backend, problem):
    x, w, b, expected = problem
    assert ct.conv_transpose2d(x.astype(np.float32), w.astype(np.float32),
                               backend=backend).dtype == np.float32
    got = ct.conv_transpose2d(x.astype(np.float32), w, b.astype(np.float32), backend=backend,
                              **KW)
    assert got.dtype == np.float64
    assert_close(got, conv_transpose2d_reference(x.astype(np.float32), w,
                                                 b.astype(np.float32), **KW), np.float64)


def test_array_likes(backend):
    got = ct.conv_transpose2d([[[[1.0, 2.0], [3.0, 4.0]]]], [[[[1.0, 1.0], [1.0, 1.0]]]],
                              backend=backend)
    np.testing.assert_array_equal(got[0, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])


@pytest.mark.parametrize("size", [(11, 11), (12, 12), (11, 12), (2, 3, 12, 11)])
def test_output_size(backend, size):
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 5))
    w = np.random.default_rng(1).standard_normal((3, 2, 3, 3))
    got = ct.conv_transpose2d(x, w, stride=2, output_size=size, backend=backend)
    assert got.shape[-2:] == tuple(size[-2:])
    op = (size[-2] - 11, size[-1] - 11)
    assert_close(got, conv_transpose2d_reference(x, w, stride=2, output_padding=op),
                 np.float64)


def test_output_size_unbatched():
    x = np.zeros((3, 5, 5))
    w = np.zeros((3, 2, 3, 3))
    assert ct.conv_transpose2d(x, w, stride=2, output_size=(2, 12, 12)).shape == (2, 12, 12)
    with pytest.raises(ValueError, match=r"2 elements \(H, W\) or 3 \(the result.s whole shape\) for 3-D input"):
        ct.conv_transpose2d(x, w, stride=2, output_size=(1, 2, 12, 12))


def test_numpy_integer_parameters():
    x = np.zeros((1, 2, 3, 3))
    w = np.zeros((2, 2, 2, 2))
    got = ct.conv_transpose2d(x, w, stride=np.int64(2), padding=np.array([1, 0]),
                              groups=np.int32(2))
    assert got.shape == ct.output_shape(x.shape, w.shape, stride=2, padding=(1, 0), groups=2)


def test_output_shape_matches_result(backend):
    rng = np.random.default_rng(5)
    from convtranspose.testing import random_problem
    for i in range(20):
        p = random_problem(rng)
        x, w, b = p.arrays(np.float32, i)
        assert ct.conv_transpose2d(x, w, b, backend=backend, **p.kwargs).shape == \
            ct.output_shape(p.x_shape, p.w_shape, **p.kwargs)


def test_explain_reports_a_backend():
    x = np.empty((64, 512, 4, 4), np.float32)
    w = np.empty((512, 256, 4, 4), np.float32)
    choice = ct.explain(x, w, stride=2, padding=1)
    assert choice.backend in ("direct", "im2col")
    assert "direct" in choice.estimates and any(k.startswith("im2col") for k in choice.estimates)
    assert all(t > 0 for t in choice.estimates.values())
    assert choice.flops == 2 * 64 * 512 * 256 * 16 * 16
    assert choice.backend in str(choice) and "estimate" in str(choice)


@pytest.mark.parametrize("bad, error, message", [
    (0, ValueError, "nbytes must be a positive number of bytes, .*, got 0$"),
    (-1, ValueError, "nbytes must be a positive number of bytes, .*, got -1$"),
    (1.5, TypeError, "nbytes must be an int or a string such as '256MiB', got 1.5 of type float"),
    (1e8, TypeError, "nbytes must be an int or a string .*, got 100000000.0 of type float"),
    (True, TypeError, "nbytes must be an int or a string .*, got True of type bool"),
    (None, TypeError, "nbytes must be an int or a string .*, got None"),
    ("1e8", ValueError, "nbytes must be a positive number of bytes, .*, got '1e8'"),
    ("0MiB", ValueError, "nbytes must be a positive number of bytes, .*, got '0MiB'"),
    ("", ValueError, "nbytes must be a positive number of bytes, .*, got ''"),
])
def test_workspace_limit_validation(bad, error, message):
    old = ct.get_workspace_limit()
    with pytest.raises(error, match=message):
        ct.set_workspace_limit(bad)
    assert ct.get_workspace_limit() == old


def test_repeated_calls_revalidate_what_could_be_invalid():
    """A call validated once is remembered by its exact argument types: the same shapes
    with a float, bool or list hyper-parameter, or a bad ``out``, still raise."""
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 1, 3, 3), np.float32)
    good = ct.conv_transpose2d(x, w, stride=2)
    assert_close(ct.conv_transpose2d(x, w, stride=2),
                 conv_transpose2d_reference(x, w, stride=2), np.float32)
    for bad in (2.0, True, np.float64(2.0)):
        with pytest.raises(TypeError, match="stride"):
            ct.conv_transpose2d(x, w, stride=bad)
    assert_close(ct.conv_transpose2d(x, w, stride=[2, 2]), good, np.float32)
    ro = np.empty_like(good)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        ct.conv_transpose2d(x, w, stride=2, out=ro)
    with pytest.raises(ValueError, match="shape"):
        ct.conv_transpose2d(x, w, stride=2, out=np.empty((1, 1, 2, 2), np.float32))
    # the same shapes in another dtype or byte order are validated (and computed) anew
    assert ct.conv_transpose2d(x.astype(">f8"), w, stride=2).dtype == np.float64
