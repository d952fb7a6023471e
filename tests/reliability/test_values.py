"""NaN, Inf, denormals, near-overflow values and float32 accumulation error."""
from __future__ import annotations

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference as reference
from convtranspose.testing import assert_same_specials

BACKENDS = ("direct", "im2col")
KW = dict(stride=2, padding=1, dilation=1)


def _arrays(dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 3, 5, 4)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    b = rng.standard_normal(2).astype(dtype)
    return x, w, b


def _poison(x, w, b, where, value):
    x, w, b = x.copy(), w.copy(), b.copy()
    if where == "x":
        x[1, 2, 3, 1] = value
    elif where == "weight":
        w[1, 0, 2, 0] = value
    elif where == "bias":
        b[1] = value
    else:   # +Inf and -Inf meeting in one output pixel: NaN
        x[0, 0, 2, 2] = value
        x[0, 1, 2, 2] = -value
    return x, w, b


CASES = [(where, value) for where in ("x", "weight", "bias") for value in (np.nan, np.inf, -np.inf)]
CASES.append(("inf-inf", np.inf))


def _same_specials(y, e):
    assert_same_specials(y, e, y.dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where,value", CASES)
def test_nan_inf_propagate_as_reference(backend, where, value):
    x, w, b = _poison(*_arrays(np.float64), where, value)
    with np.errstate(invalid="ignore"):
        e = reference(x, w, b, **KW)
    y = ct.conv_transpose2d(x, w, b, backend=backend, **KW)
    assert (~np.isfinite(e)).any()
    _same_specials(y, e)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where,value", CASES)
def test_nan_inf_propagate_as_torch(backend, where, value):
    torch = pytest.importorskip("torch")
    x, w, b = _poison(*_arrays(np.float32), where, value)
    e = torch.nn.functional.conv_transpose2d(
        torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **KW).numpy()
    y = ct.conv_transpose2d(x, w, b, backend=backend, **KW)
    _same_specials(y, e)


@pytest.mark.parametrize("backend", BACKENDS)
def test_denormals(backend):
    tiny = np.finfo(np.float32).smallest_subnormal
    x, w, _ = _arrays(np.float32)
    x = (np.sign(x) * tiny * 64).astype(np.float32)      # subnormal inputs
    w = np.sign(w).astype(np.float32)
    y = ct.conv_transpose2d(x, w, backend=backend, **KW)
    e = reference(x, w, **KW)
    assert np.isfinite(y).all()
    # subnormal sums of at most 12 terms of +-64 ulp are exact in float32 (or flushed to 0)
    assert np.array_equal(y, e.astype(np.float32)) or np.abs(y).max() == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_float32_overflow(backend):
    big = np.float32(np.finfo(np.float32).max / 4)
    x = np.zeros((1, 2, 3, 3), np.float32)
    w = np.ones((2, 1, 2, 2), np.float32)
    x[0, 0, 1, 1] = big          # alone: finite
    y = ct.conv_transpose2d(x, w, backend=backend)
    assert np.isfinite(y).all() and y.max() == big
    x[0, 1, 1, 1] = big          # twice in one pixel: 2*big, still finite
    x[0, 0, 1, 2] = big          # three or four times: overflows to +Inf
    x[0, 1, 1, 2] = big
    x[0, 0, 2, 1] = big
    y = ct.conv_transpose2d(x, w, backend=backend)
    e = reference(x, w)
    assert np.array_equal(np.isinf(y), e > np.finfo(np.float32).max)
    fin = np.isfinite(y)
    np.testing.assert_allclose(y[fin], e[fin], rtol=1e-6)


# float32 accumulation: the bound stated in README.md, "Guarantees"
#   |y - y64| <= K * 2**-24 * (|x| (*) |w|)  elementwise (K = C_in/groups * kH * kW taps),
#   and in practice max|y - y64| / max|y64| <= 1e-5 (TOLERANCE[float32]).
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("c_in,k", [(256, 4), (1024, 3)])
def test_float32_long_reduction_bound(backend, c_in, k):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((1, c_in, 6, 6)).astype(np.float32)
    w = rng.standard_normal((c_in, 4, k, k)).astype(np.float32)
    taps = c_in * k * k
    assert taps >= 4096
    y = ct.conv_transpose2d(x, w, stride=1, backend=backend)
    e = reference(x, w, stride=1)                       # float64 on the same float32 values
    mag = reference(np.abs(x), np.abs(w), stride=1)
    err = np.abs(y - e)
    assert (err <= taps * 2.0**-24 * mag).all()
    rel = err.max() / np.abs(e).max()
    assert rel <= 1e-5, rel
