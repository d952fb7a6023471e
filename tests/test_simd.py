"""The SIMD layer: width picked from the effective target, intrinsics checked against NumPy."""
import numba
import numpy as np
import pytest

from convtranspose.cpu import simd

DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("features, expected", [
    ({"avx512f", "avx2", "avx", "fma"}, ("avx512", 512, 32, True)),
    ({"avx2", "avx", "fma"}, ("avx2", 256, 16, True)),
    ({"avx"}, ("avx", 256, 16, False)),
    ({"sse2"}, ("portable", 128, 16, False)),
    (set(), ("portable", 128, 16, False)),
])
def test_isa_from_features(features, expected):
    assert simd._pick_isa(features) == expected


def test_width_follows_the_effective_target(monkeypatch):
    # NUMBA_CPU_FEATURES, when set, wins over the host (DESIGN.md section 4)
    monkeypatch.setattr(numba.core.config, "CPU_FEATURES", "+avx,+avx2,+fma,-avx512f")
    assert simd.target_features() >= {"avx", "avx2", "fma"}
    assert "avx512f" not in simd.target_features()
    monkeypatch.setattr(numba.core.config, "CPU_FEATURES", "")
    assert simd.target_features() == set()


def test_module_constants_agree():
    assert simd._pick_isa(simd.target_features()) == (simd.ISA, simd.VECTOR_BITS, simd.REGISTERS,
                                                     simd.FMA)
    for dtype in DTYPES:
        mr, nr = simd.tile(dtype)
        assert simd.lanes(dtype) * np.dtype(dtype).itemsize * 8 == simd.VECTOR_BITS
        assert nr == simd.NR_VECTORS * simd.lanes(dtype)
        # accumulators + B vectors + one broadcast fit the register file
        assert mr * simd.NR_VECTORS + simd.NR_VECTORS + 1 <= simd.REGISTERS


@numba.njit
def _exercise(x, y, s, out):
    """out[0:w] = y[1:w+1] + s * x[0:w];  out[w:2w] = x[2] * x[0:w] + y[0:w];  out[2w:3w] = 0."""
    w = simd.width(x)
    simd.store(out, 0, simd.fmadd(simd.load(y, 1), s, simd.load(x, 0)))
    simd.store(out, w, simd.add(simd.fmadd(simd.zero(x), simd.broadcast(x, 2), simd.load(x, 0)),
                                simd.load(y, 0)))
    simd.store(out, 2 * w, simd.zero(x))


@pytest.mark.parametrize("dtype", DTYPES)
def test_intrinsics_against_numpy(dtype):
    w = simd.lanes(dtype)
    rng = np.random.default_rng(1)
    x = rng.integers(-8, 8, w + 3).astype(dtype)        # small integers: every result exact
    y = rng.integers(-8, 8, w + 3).astype(dtype)
    s = dtype(3)
    out = np.full(3 * w + 1, 99, dtype)
    _exercise(x, y, s, out)
    np.testing.assert_array_equal(out[:w], y[1:w + 1] + s * x[:w])
    np.testing.assert_array_equal(out[w:2 * w], x[2] * x[:w] + y[:w])
    np.testing.assert_array_equal(out[2 * w:3 * w], 0)
    assert out[3 * w] == 99                              # nothing written past the vectors


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_propagate(dtype):
    w = simd.lanes(dtype)
    x = np.zeros(w + 3, dtype)
    x[:4] = [np.inf, 0.0, 1.0, np.nan][:4]
    y = np.zeros(w + 3, dtype)
    s = dtype(0)
    out = np.empty(3 * w, dtype)
    _exercise(x, y, s, out)
    with np.errstate(invalid="ignore"):
        np.testing.assert_array_equal(out[:w], y[1:w + 1] + s * x[:w])   # 0 * inf = nan
        np.testing.assert_array_equal(out[w:2 * w], x[2] * x[:w] + y[:w])


@numba.njit
def _fma_one(c, a, b, out):
    simd.store(out, 0, simd.fmadd(simd.load(c, 0), simd.load(a, 0), simd.load(b, 0)))


@pytest.mark.skipif(not simd.FMA, reason="the target has no fused multiply-add")
@pytest.mark.parametrize("dtype", DTYPES)
def test_fmadd_is_fused(dtype):
    # (1 + e)(1 - e) - 1 = -e^2 with one rounding; a multiply then an add gives 0
    e = dtype(2.0 ** -(np.finfo(dtype).nmant // 2 + 1))
    w = simd.lanes(dtype)
    out = np.empty(w, dtype)
    _fma_one(np.full(w, -1, dtype), np.full(w, 1 + e, dtype), np.full(w, 1 - e, dtype), out)
    np.testing.assert_array_equal(out, -(e * e))


def test_rejects_what_it_cannot_vectorise():
    @numba.njit
    def bad(x):
        return simd.load(x, 0)
    with pytest.raises(numba.core.errors.TypingError):
        bad(np.zeros(8, np.int64))
