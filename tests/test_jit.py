"""The forward functions called from the user's own ``@njit`` code (:mod:`convtranspose.jit`).

Each jitted function below is compiled once per argument types (rank, layout, dtype), and
then called over random valid hyper-parameters of those types: the result must be bitwise
equal to the Python call with ``backend="direct"``, of the same dtype and layout. The
shapes are drawn so that both the channels-last engine and the gather kernels run, and a
few weights hold Inf or NaN.
"""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from numba.core.errors import TypingError

import convtranspose as ct
from convtranspose.params import DATA_FORMATS

TRANSPOSED = {1: ct.conv_transpose1d, 2: ct.conv_transpose2d, 3: ct.conv_transpose3d}
CONV = {1: ct.conv1d, 2: ct.conv2d, 3: ct.conv3d}
_JITTED = {}


def _calling(name, args, fmt):
    """An ``@njit`` function of ``args`` returning ``ct.<name>(args, data_format=fmt)``,
    compiled once per name, layout and types."""
    key = name, fmt
    if key not in _JITTED:
        scope = {"ct": ct}
        exec(f"def f({args}):\n    return ct.{name}({args}, data_format={fmt!r})\n", scope)
        _JITTED[key] = numba.njit(scope["f"])
    return _JITTED[key]


def jitted(rank, transposed, last):
    """``f(x, w, b, stride, padding, output_padding, groups, dilation)`` (no
    ``output_padding`` for a convolution) calling the library from ``@njit`` code, with
    the layout a string constant."""
    name = ("conv_transpose" if transposed else "conv") + f"{rank}d"
    args = "x, w, b, s, p, op, g, d" if transposed else "x, w, b, s, p, d, g"
    return _calling(name, args, DATA_FORMATS[rank][last])


def _draw(rng, rank, transposed):
    """Random valid hyper-parameters and channels: half the draws run the engine."""
    groups = int(rng.choice([1, 1, 2]))
    engine = rng.random() < 0.5
    c_in_g, c_out_g = (int(rng.integers(8, 20)), int(rng.integers(8, 20))) if engine else \
        (int(rng.integers(1, 4)), int(rng.integers(1, 6)))
    k = tuple(int(v) for v in rng.integers(1, 5, rank))
    s = tuple(int(v) for v in rng.integers(1, 4, rank))
    d = tuple(int(v) for v in rng.integers(1, 3, rank))
    p = tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (rank, 2)))
    op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
    size = tuple(int(v) for v in rng.integers(3, 8, rank))
    if transposed:      # keep every output size >= 1
        p = tuple(pads if (n - 1) * si - sum(pads) + di * (ki - 1) + oi + 1 >= 1 else (0, 0)
                  for pads, n, si, di, ki, oi in zip(p, size, s, d, k, op))
    else:
        p = tuple((min(a, dk * (kk - 1)), min(b, dk * (kk - 1)))
                  for (a, b), kk, dk in zip(p, k, d))
        size = tuple(max(n, dk * (kk - 1) + 1) for n, kk, dk in zip(size, k, d))
    return groups, c_in_g * groups, c_out_g * groups, k, s, d, p, op, size


def _operands(rng, rank, transposed, last, dtype, batch, bad_weight):
    groups, c_in, c_out, k, s, d, p, op, size = _draw(rng, rank, transposed)
    w_shape = (c_in, c_out // groups, *k) if transposed else (c_out, c_in // groups, *k)
    x_shape = (*size, c_in) if last else (c_in, *size)
    if batch:
        x_shape = (batch, *x_shape)
    x, w, b = (_normal(rng, shape, dtype) for shape in (x_shape, w_shape, c_out))
    if bad_weight:
        w.flat[rng.integers(w.size)] = rng.choice([np.inf, -np.inf, np.nan])
    return x, w, b, s, p, op, groups, d


def _normal(rng, shape, dtype):
    """Standard normal values of ``dtype``, complex ones with both parts drawn."""
    a = rng.standard_normal(shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


#: Every layout and dtype in 2-D, two combinations in 1-D, both operations and layouts in
#: 3-D, and complex operands in each rank: each compiles a function (a second or two with
#: the library's compiled entries in Numba's cache).
COMBINATIONS = [(2, t, last, dt) for t in (True, False) for last in (False, True)
                for dt in (np.float32, np.float64)] + [(1, True, False, np.float32),
                                                      (1, False, True, np.float64)] + \
    [(3, True, False, np.float32), (3, True, True, np.float64),
     (3, False, False, np.float64), (3, False, True, np.float32)] + \
    [(2, True, True, np.complex64), (2, False, False, np.complex128),
     (1, True, False, np.complex128), (3, False, True, np.complex64)]


@pytest.mark.parametrize("rank, transposed, last, dtype", COMBINATIONS)
def test_bitwise_equal_to_the_python_call(rank, transposed, last, dtype):
    rng = np.random.default_rng([rank, transposed, last, np.dtype(dtype).itemsize])
    f = jitted(rank, transposed, last)
    fmt = DATA_FORMATS[rank][last]
    for case in range(8):
        x, w, b, s, p, op, g, d = _operands(rng, rank, transposed, last, dtype,
                                            batch=(0, 1, 2, 3)[case % 4] or None,
                                            bad_weight=case % 3 == 2)
        if transposed:
            got = f(x, w, b, s, p, op, g, d)
            want = TRANSPOSED[rank](x, w, b, s, p, op, g, d, backend="direct",
                                    data_format=fmt)
        else:
            got = f(x, w, b, s, p, d, g)
            want = CONV[rank](x, w, b, s, p, d, g, backend="direct", data_format=fmt)
        assert got.dtype == want.dtype and got.shape == want.shape
        assert got.strides == want.strides, (got.strides, want.strides)
        np.testing.assert_array_equal(got, want, err_msg=f"case {case}: {s, p, op, g, d}")


BACKWARD = {(r, True): getattr(ct, f"conv_transpose{r}d_backward") for r in (1, 2, 3)}
BACKWARD.update({(r, False): getattr(ct, f"conv{r}d_backward") for r in (1, 2, 3)})


def jitted_backward(rank, transposed, last):
    """``f(g, x, w, stride, padding, output_padding, groups, dilation)`` (the
    convolution's order without ``output_padding``) calling the gradients from ``@njit``
    code."""
    args = "gy, x, w, s, p, op, g, d" if transposed else "gy, x, w, s, p, d, g"
    return _calling(BACKWARD[rank, transposed].__name__, args, DATA_FORMATS[rank][last])


def _poison(rng, a):
    """``a`` with an Inf or NaN at a random place (borders included)."""
    a.flat[rng.integers(a.size)] = rng.choice([np.inf, -np.inf, np.nan])


#: The gradients' combinations: every layout and dtype in 2-D, one of each operation in
#: 1-D and 3-D (each compiles a function; the entries compile once per operation and dtype).
GRAD_COMBINATIONS = [(2, t, last, dt) for t in (True, False) for last in (False, True)
                     for dt in (np.float32, np.float64)] + \
    [(1, True, True, np.float32), (1, False, False, np.float64),
     (3, True, True, np.float64), (3, False, False, np.float32)] + \
    [(2, True, False, np.complex64), (2, False, True, np.complex128),
     (3, True, False, np.complex128)]


@pytest.mark.parametrize("rank, transposed, last, dtype", GRAD_COMBINATIONS)
def test_gradients_bitwise_equal_to_the_python_call(rank, transposed, last, dtype):
    """All three gradients, on the engine and the gather kernels, with Inf or NaN in the
    weight, the input or ``grad_output`` (PyTorch's NaN rules), batches of 0-3 images or
    unbatched: bitwise the Python call's with ``backend="direct"``."""
    rng = np.random.default_rng([rank, transposed, last, np.dtype(dtype).itemsize, 7])
    f = jitted_backward(rank, transposed, last)
    fmt = DATA_FORMATS[rank][last]
    forward = TRANSPOSED[rank] if transposed else CONV[rank]
    for case in range(8):
        x, w, _, s, p, op, g, d = _operands(rng, rank, transposed, last, dtype,
                                            batch=(0, 1, 2, 3)[case % 4] or None,
                                            bad_weight=case % 4 == 1)
        hyper = (s, p, op, g, d) if transposed else (s, p, d, g)
        gy = _normal(rng, forward(x, w, None, *hyper, data_format=fmt).shape, dtype)
        if case % 4 == 2 and x.size:
            _poison(rng, x)
        if case % 4 == 3 and gy.size:
            _poison(rng, gy)
        got = f(gy, x, w, *hyper)
        want = BACKWARD[rank, transposed](gy, x, w, *hyper, backend="direct", data_format=fmt)
        for name, a, b in zip(("grad_input", "grad_weight", "grad_bias"), got, want):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            np.testing.assert_array_equal(a, b, err_msg=f"{name}, case {case}: {hyper}")


def test_gradients_needs_flags_defaults_and_bad_grad_output():
    """Only the gradients asked for (the others ``None``), keyword hyper-parameters,
    ``"same"`` padding, mixed dtypes; a ``grad_output`` of the wrong shape is a
    ``ValueError`` naming it, a flag that is not a constant a typing error."""
    @numba.njit
    def weight_only(gy, x, w):
        return ct.conv2d_backward(gy, x, w, padding="same", dilation=2,
                                  needs_input_grad=False, needs_bias_grad=False,
                                  data_format="NHWC")

    @numba.njit
    def input_only(gy, x, w):
        return ct.conv_transpose3d_backward(gy, x, w, stride=2, output_padding=1,
                                            needs_weight_grad=False, needs_bias_grad=False)

    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 7, 6, 9)).astype(np.float32)
    w = rng.standard_normal((5, 9, 3, 3))                      # float64: float64 gradients
    gy = rng.standard_normal((2, 7, 6, 5)).astype(np.float32)
    gx, gw, gb = weight_only(gy, x, w)
    want = ct.conv2d_backward(gy, x, w, padding="same", dilation=2, backend="direct",
                              data_format="NHWC")
    assert gx is None and gb is None and gw.dtype == np.float64
    np.testing.assert_array_equal(gw, want[1])
    x3 = rng.standard_normal((3, 2, 3, 4)).astype(np.float32)
    w3 = rng.standard_normal((3, 2, 2, 3, 2)).astype(np.float32)
    gy3 = rng.standard_normal((2, 5, 8, 9)).astype(np.float32)
    gx, gw, gb = input_only(gy3, x3, w3)
    assert gw is None and gb is None
    np.testing.assert_array_equal(gx, ct.conv_transpose3d_backward(
        gy3, x3, w3, stride=2, output_padding=1, backend="direct")[0])
    with pytest.raises(ValueError, match="grad_output must have the forward result's shape "
                                         r"\(2, 5, 8, 9\), got \(2, 5, 8, 10\)"):
        input_only(rng.standard_normal((2, 5, 8, 10)).astype(np.float32), x3, w3)

    def flag(gy, x, w, b):
        return ct.conv2d_backward(gy, x, w, needs_input_grad=b)
    with pytest.raises(TypingError, match="needs_input_grad must be a constant"):
        numba.njit(flag)(gy, x, w, True)


def test_complex_promotion_bias_and_out():
    """Real and complex operands together promote as from Python (complex64 with float64
    gives complex128); a complex bias, ``out=`` of the complex result."""
    @numba.njit
    def f(x, w, b, out):
        ct.conv_transpose1d(x, w, b, 2, out=out, data_format="NWC")
        return ct.conv1d(x, w.transpose(1, 0, 2).copy(), None, 1, 1, data_format="NWC")

    rng = np.random.default_rng(13)
    x = _normal(rng, (2, 7, 3), np.complex64)
    w = rng.standard_normal((3, 4, 3))                          # float64
    b = _normal(rng, 4, np.complex64)
    out = np.empty((2, 15, 4), np.complex128)
    c = f(x, w, b, out)
    np.testing.assert_array_equal(out, ct.conv_transpose1d(x, w, b, 2, backend="direct",
                                                           data_format="NWC"))
    want = ct.conv1d(x, w.transpose(1, 0, 2), None, 1, 1, backend="direct", data_format="NWC")
    assert c.dtype == want.dtype == np.complex128
    np.testing.assert_array_equal(c, want)


def test_defaults_ints_no_bias_mixed_dtypes_and_out():
    @numba.njit
    def f(x, w, out):
        a = ct.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1)
        c = ct.conv2d(x, w.astype(np.float32).transpose(1, 0, 2, 3).copy(), None, 1, 1)
        ct.conv_transpose2d(x, w, None, 2, 1, 1, out=out, backend="auto")
        return a, c

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, 5, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3))                       # float64: a float64 result
    out = np.empty((2, 3, 10, 10))
    a, c = f(x, w, out)
    want = ct.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, backend="direct")
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, want)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(c, ct.conv2d(x, w.astype(np.float32).transpose(1, 0, 2, 3),
                                               None, 1, 1, backend="direct"))


@numba.njit
def _transposed_call(x, w, s, g):
    return ct.conv_transpose2d(x, w, None, s, 0, 0, g)


@pytest.mark.parametrize("args, message", [
    ((np.ones((1, 2, 3, 3)), np.ones((2, 1, 2, 2)), 0, 1), "stride must be >= 1"),
    ((np.ones((1, 3, 3, 3)), np.ones((2, 1, 2, 2)), 1, 1), "input channels"),
    ((np.ones((1, 3, 3, 3)), np.ones((3, 1, 2, 2)), 1, 2), "groups"),
    ((np.ones((1, 2, 3, 3)), np.ones((2, 1, 2, 2)), 1, 0), "groups must be >= 1"),
])
def test_bad_values_raise_value_error(args, message):
    with pytest.raises(ValueError, match=message):
        _transposed_call(*args)


def test_bad_bias_and_out_shape():
    @numba.njit
    def f(x, w, b, out):
        return ct.conv_transpose2d(x, w, b, out=out)

    x, w = np.ones((1, 2, 3, 3)), np.ones((2, 1, 2, 2))
    with pytest.raises(ValueError, match="bias must have shape"):
        f(x, w, np.ones(2), np.empty((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="out must have the shape"):
        f(x, w, np.ones(1), np.empty((1, 1, 4, 5)))


@pytest.mark.parametrize("body, message", [
    ("ct.conv_transpose2d(x, w, backend='cuda')", "backend must be 'direct' or 'auto'"),
    ("ct.conv_transpose2d(x, w, backend='im2col')", "backend must be 'direct' or 'auto'"),
    ("ct.conv2d(x, w, data_format='NWC')", "data_format must be 'NCHW'"),
    ("ct.conv2d(x.astype(np.int64), w)", "x must be float32, float64, complex64 or"),
    ("ct.conv_transpose2d(x, w.view(np.uint16))", "weight must be float32, float64, complex"),
    ("ct.conv_transpose2d(x[0, 0], w)", "x must have 3 or 4 dimensions"),
    ("ct.conv_transpose2d(x, w, stride=(1, 2, 3))", "stride must be an int or a tuple of 2"),
    ("ct.conv2d(x, w, padding='SAME_UPPER')", "ONNX's auto_pad"),
    ("ct.conv_transpose2d(x, w, output_size=(6,))", "output_size must be a tuple of 2"),
])
def test_bad_types_and_constants_are_typing_errors(body, message):
    scope = {"ct": ct, "np": np}
    exec(f"def f(x, w):\n    return {body}\n", scope)
    with pytest.raises(TypingError, match=message):
        numba.njit(scope["f"])(np.ones((1, 2, 3, 3)), np.ones((2, 2, 2, 2)))


@numba.njit
def _same_transposed_nwc(x, w, s, d):
    return ct.conv_transpose1d(x, w, stride=s, dilation=d, padding="same", data_format="NWC")


@numba.njit
def _same_conv(x, w, d):
    return ct.conv2d(x, w, dilation=d, padding="SAME")


@numba.njit
def _valid_transposed(x, w, s, op):
    return ct.conv_transpose2d(x, w, stride=s, output_padding=op, padding="valid")


@numba.njit
def _sized_nhwc(x, w, s, p, size):
    return ct.conv_transpose2d(x, w, stride=s, padding=p, output_size=size,
                               data_format="NHWC")


@numba.njit
def _same_sized_nhwc(x, w, s, size):
    return ct.conv_transpose2d(x, w, stride=s, padding="same", output_size=size,
                               data_format="NHWC")


def test_same_valid_and_output_size_equal_pythons():
    """``padding="same"``/``"valid"`` (any case) and ``output_size`` (spatial sizes or the
    result's whole shape in the call's layout): bitwise the Python call's result, and the
    same refusals."""
    rng, cut = np.random.default_rng(11), np.random.default_rng(12)
    for _ in range(6):
        c, k, s, d = (int(v) for v in rng.integers(1, 4, 4))
        n = int(rng.integers(1, 12))
        x = rng.standard_normal((2, n, c)).astype(np.float32)
        w = rng.standard_normal((c, 2, k)).astype(np.float32)
        np.testing.assert_array_equal(
            _same_transposed_nwc(x, w, s, d),
            ct.conv_transpose1d(x, w, stride=s, dilation=d, padding="same",
                                data_format="NWC", backend="direct"))
        x2 = rng.standard_normal((1, c, n, n + 1))
        w2 = rng.standard_normal((3, c, k, k + 1))
        np.testing.assert_array_equal(
            _same_conv(x2, w2, d), ct.conv2d(x2, w2, dilation=d, padding="SAME",
                                             backend="direct"))
        w3 = rng.standard_normal((c, 3, k, k))
        op = int(rng.integers(0, s))
        np.testing.assert_array_equal(
            _valid_transposed(x2, w3, s, op),
            ct.conv_transpose2d(x2, w3, stride=s, output_padding=op, padding="valid",
                                backend="direct"))
        xl = np.ascontiguousarray(x2.transpose(0, 2, 3, 1))
        full = ct.conv_transpose2d(xl, w3, stride=s, padding=1, data_format="NHWC").shape
        size = (full[1] + int(rng.integers(0, s)), full[2])
        for given in (size, (full[0], *size, full[3])):
            np.testing.assert_array_equal(
                _sized_nhwc(xl, w3, s, 1, given),
                ct.conv_transpose2d(xl, w3, stride=s, padding=1, output_size=given,
                                    data_format="NHWC", backend="direct"))
        hw = xl.shape[1:3]
        short = tuple(v * s - int(cut.integers(0, s)) for v in hw)   # "same" with a size
        for given in (short, (1, *short, 3)):
            np.testing.assert_array_equal(
                _same_sized_nhwc(xl, w3, s, given),
                ct.conv_transpose2d(xl, w3, stride=s, padding="same", output_size=given,
                                    data_format="NHWC", backend="direct"))
    with pytest.raises(ValueError, match="output_size 99 cannot be reached"):
        _sized_nhwc(xl, w3, 2, 1, (99, 5))
    with pytest.raises(ValueError, match="output_size 99 cannot be reached with padding='same'"):
        _same_sized_nhwc(xl, w3, 2, (99, 5))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        numba.njit(lambda x, w: ct.conv2d(x, w, stride=2, padding="same"))(x2, w2)
    with pytest.raises(ValueError, match="output_padding cannot be given with padding='same'"):
        numba.njit(lambda x, w: ct.conv_transpose1d(x, w, stride=2, output_padding=1,
                                                    padding="same"))(x[0].T.copy(), w)


@numba.njit
def _jitted_output_shape(xs, ws, s, p, op, g, d):
    return ct.output_shape(xs, ws, s, p, op, g, d)


@numba.njit
def _jitted_output_shape_last(xs, ws, s, p, op, g, d):
    return ct.output_shape(xs, ws, stride=s, padding=p, output_padding=op, groups=g,
                           dilation=d, data_format="NDHWC")


def _jitted_sized_shape(xs, p, size):
    if p == "same":     # a constant in each branch: padding is a string constant
        return _sized_shape_same(xs, size)
    return _sized_shape(xs, p, size)


@numba.njit
def _sized_shape_same(xs, size):
    return ct.output_shape(xs, (3, 2, 3, 3), 2, "same", output_size=size, data_format="NHWC")


@numba.njit
def _sized_shape(xs, p, size):
    return ct.output_shape(xs, (3, 2, 3, 3), 2, p, output_size=size, data_format="NHWC")


def test_output_shape_equals_pythons():
    """Every rank, batched or not, ints and tuples, both layouts; and the same
    ``ValueError``."""
    rng = np.random.default_rng(7)
    for _ in range(60):
        rank = int(rng.integers(1, 4))
        g = int(rng.integers(1, 3))
        xs = (int(rng.integers(0, 3)), 2 * g) + tuple(int(v) for v in rng.integers(1, 6, rank))
        if rng.random() < 0.3:
            xs = xs[1:]
        ws = (2 * g, int(rng.integers(1, 3))) + tuple(int(v) for v in rng.integers(1, 4, rank))
        s, d = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        p = tuple(int(v) for v in rng.integers(0, 2, rank))
        op = int(rng.integers(0, max(s, d)))
        try:
            want = ct.output_shape(xs, ws, s, p, op, g, d)
        except ValueError as exc:
            with pytest.raises(ValueError, match=str(exc).split(" (")[0]):
                _jitted_output_shape(xs, ws, s, p, op, g, d)
            continue
        assert _jitted_output_shape(xs, ws, s, p, op, g, d) == want
    for size in ((7, 8), (1, 8, 7, 2), (9, 9)):      # "same" and numbers, with a size
        for p in ("same", 1):
            try:
                want = ct.output_shape((1, 4, 4, 3), (3, 2, 3, 3), 2, p, output_size=size,
                                       data_format="NHWC")
            except ValueError as exc:
                with pytest.raises(ValueError, match=str(exc).split(" (")[0].split(":")[0]):
                    _jitted_sized_shape((1, 4, 4, 3), p, size)
                continue
            assert _jitted_sized_shape((1, 4, 4, 3), p, size) == want
    xs, ws = (2, 4, 5, 6, 4), (4, 3, 2, 3, 3)
    assert _jitted_output_shape_last(xs, ws, (1, 2, 3), ((1, 0), (0, 1), (2, 2)), 0, 2, 1) == \
        ct.output_shape(xs, ws, (1, 2, 3), ((1, 0), (0, 1), (2, 2)), 0, 2, 1,
                        data_format="NDHWC")


@pytest.mark.parametrize("body, message", [
    ("ct.output_shape(xs, ws, output_size=(4,))", "output_size must be a tuple of 2"),
    ("ct.output_shape(xs, ws, rank=3)", "rank 3 does not match"),
    ("ct.output_shape(xs, ws, data_format='NDHWC')", "data_format must be 'NCHW'"),
    ("ct.output_shape(xs[:2], ws)", "input_shape must have 4 entries"),
])
def test_output_shape_typing_errors(body, message):
    scope = {"ct": ct}
    exec(f"def f(xs, ws):\n    return {body}\n", scope)
    with pytest.raises(TypingError, match=message):
        numba.njit(scope["f"])((1, 2, 3, 3), (2, 2, 2, 2))


PRANGE = """
import numba, numpy as np
import convtranspose as ct

@numba.njit(parallel=True)
def per_image(x, w):
    out = np.empty((x.shape[0], w.shape[1], 2 * x.shape[2], 2 * x.shape[3]), x.dtype)
    for i in numba.prange(x.shape[0]):
        out[i] = ct.conv_transpose2d(x[i], w, stride=2, padding=1)
    return out

rng = np.random.default_rng(0)
for c in (2, 16):                          # the gather kernel, then the engine
    x = rng.standard_normal((4, c, 6, 6)).astype(np.float32)
    w = rng.standard_normal((c, c, 4, 4)).astype(np.float32)
    want = ct.conv_transpose2d(x, w, stride=2, padding=1, backend="direct")
    np.testing.assert_array_equal(per_image(x, w), want)
print("ok", numba.threading_layer())
"""


def test_a_call_inside_prange_does_not_deadlock():
    """A nested parallel region (the library's kernels inside the user's ``prange``): in a
    fresh process, with a time limit, so a deadlock fails instead of hanging."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(PRANGE)], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok")
