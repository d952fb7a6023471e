"""The channels-last N-d engine (cpu/nd_engine.py) against the float64 reference, for every
rank and both layouts, and its summation order independent of batch and threads."""
import os
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from convtranspose import reference
from convtranspose.cpu import nd_engine, simd
from convtranspose.params import normalise

TOL = {np.float32: 2e-5, np.float64: 1e-12}


def _problem(rng, rank, dtype, groups=1, c_out_g=None):
    k = tuple(int(v) for v in rng.integers(1, 5, rank))
    stride = tuple(int(v) for v in rng.integers(1, 4, rank))
    dilation = tuple(int(v) for v in rng.integers(1, 3, rank))
    pads = tuple((int(rng.integers(0, d * (kk - 1) + 1)), int(rng.integers(0, d * (kk - 1) + 1)))
                 for kk, d in zip(k, dilation))
    c_in = groups * int(rng.integers(1, 6))
    c_out_g = c_out_g or int(rng.integers(1, 40))
    x = rng.standard_normal((int(rng.integers(1, 3)), c_in)
                            + tuple(int(v) for v in rng.integers(1, 7, rank))).astype(dtype)
    w = rng.standard_normal((c_in, c_out_g) + k).astype(dtype)
    b = rng.standard_normal(c_out_g * groups).astype(dtype)
    return x, w, b, dict(stride=stride, padding=pads, dilation=dilation, groups=groups)


def _run(x, w, b, kw, last):
    """The engine's result, channels-first, on the 5-D form of any rank."""
    rank = x.ndim - 2
    lift = (slice(None), slice(None)) + (None,) * (3 - rank)
    params, shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype, w.dtype], rank=rank,
                                 **kw)
    fill = (1,) * (3 - rank)
    stride, dilation = fill + params.stride, fill + params.dilation
    pads = ((0, 0),) * (3 - rank) + params.pads
    x5, w5 = x[lift], w[lift]
    out_shape = (shape[0], shape[1], *fill, *shape[2:])
    if last:
        out = np.full((out_shape[0], *out_shape[2:], out_shape[1]), np.nan, x.dtype)
        nd_engine.conv_transpose(np.ascontiguousarray(np.moveaxis(x5, 1, -1)), w5, b, stride,
                                 pads, dilation, kw["groups"], out, True)
        out = np.moveaxis(out, -1, 1)
    else:
        out = np.full(out_shape, np.nan, x.dtype)
        nd_engine.conv_transpose(x5, w5, b, stride, pads, dilation, kw["groups"], out, False)
    return out.reshape(shape), params


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_the_reference(rank, last, dtype):
    rng = np.random.default_rng(100 * rank + 10 * last + (dtype == np.float64))
    checked = 0
    for trial in range(8):
        x, w, b, kw = _problem(rng, rank, dtype, groups=1 + trial % 2)
        try:
            got, _ = _run(x, w, b, kw, last)
        except ValueError:          # an output size below 1
            continue
        ref = reference.conv_transpose_scatter(x, w, b, rank=rank, **kw)
        scale = reference.conv_transpose_scatter(np.abs(x), np.abs(w), np.abs(b), rank=rank,
                                                 **kw)
        assert not np.isnan(got).any()
        assert np.all(np.abs(got - ref) <= TOL[dtype] * (scale + 1)), (trial, kw)
        checked += 1
    assert checked >= 4


@pytest.mark.parametrize("rank", [1, 2, 3])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_correlation_against_the_reference(rank, last, dtype):
    rng = np.random.default_rng(200 + 100 * rank + 10 * last + (dtype == np.float64))
    checked = 0
    for trial in range(8):
        groups = 1 + trial % 2
        k = tuple(int(v) for v in rng.integers(1, 4, rank))
        stride = tuple(int(v) for v in rng.integers(1, 4, rank))
        dilation = tuple(int(v) for v in rng.integers(1, 3, rank))
        pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(rank))
        c_in, c_out = groups * int(rng.integers(1, 5)), groups * int(rng.integers(1, 20))
        x = rng.standard_normal((int(rng.integers(1, 3)), c_in)
                                + tuple(int(v) for v in rng.integers(3, 9, rank))).astype(dtype)
        w = rng.standard_normal((c_out, c_in // groups) + k).astype(dtype)
        b = rng.standard_normal(c_out).astype(dtype)
        kw = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
        try:
            ref = reference.conv_reference(x, w, b, rank=rank, **kw)
        except ValueError:          # an output size below 1
            continue
        got = _correlate(x, w, b, kw, ref.shape, last)
        scale = reference.conv_reference(np.abs(x), np.abs(w), np.abs(b), rank=rank, **kw)
        assert np.all(np.abs(got - ref) <= TOL[dtype] * (scale + 1)), (trial, kw)
        checked += 1
    assert checked >= 4


def _correlate(x, w, b, kw, shape, last):
    rank = x.ndim - 2
    lift = (slice(None), slice(None)) + (None,) * (3 - rank)
    fill = (1,) * (3 - rank)
    pads = ((0, 0),) * (3 - rank) + tuple(kw["padding"])
    args = (fill + kw["stride"], pads, fill + kw["dilation"], kw["groups"])
    out_shape = (shape[0], shape[1], *fill, *shape[2:])
    if last:
        out = np.full((out_shape[0], *out_shape[2:], out_shape[1]), np.nan, x.dtype)
        nd_engine.correlate(np.ascontiguousarray(np.moveaxis(x[lift], 1, -1)), w[lift], b,
                            *args, out, True)
        return np.moveaxis(out, -1, 1).reshape(shape)
    out = np.full(out_shape, np.nan, x.dtype)
    return nd_engine.correlate(x[lift], w[lift], b, *args, out, False).reshape(shape)


def test_correlation_multiplies_the_padding_as_pytorch():
    """An Inf weight meets the padding's zeros: NaN there, as PyTorch's convolutions give."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 3, 6, 7))
    w = rng.standard_normal((4, 3, 3, 3))
    w[1, 2, 0, 0] = np.inf
    kw = dict(stride=(2, 1), padding=((1, 1), (1, 1)), dilation=(1, 2), groups=1)
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                          stride=(2, 1), padding=(1, 1), dilation=(1, 2)).numpy()
    got = _correlate(x, w, np.zeros(4), kw, expected.shape, True)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_phases_no_tap_reaches_get_the_bias():
    """Kernel 1, stride 3: two of three outputs per axis receive no tap."""
    x = np.arange(8, dtype=np.float64).reshape(1, 2, 2, 2)
    w = np.ones((2, 3, 1, 1))
    b = np.array([1.0, 2.0, 3.0])
    kw = dict(stride=3, padding=0, dilation=1, groups=1)
    got, _ = _run(x, w, b, kw, True)
    ref = reference.conv_transpose_scatter(x, w, b, rank=2, **kw)
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("last", [False, True])
def test_bits_do_not_depend_on_the_batch(last):
    rng = np.random.default_rng(7)
    x, w, b, kw = _problem(rng, 2, np.float32, c_out_g=37)
    x = np.concatenate([x, x[::-1]])
    whole, _ = _run(x, w, b, kw, last)
    one, _ = _run(x[1:2], w, b, kw, last)
    assert whole[1:2].tobytes() == one.tobytes()


def test_batch_chunks_under_a_limit_give_the_same_bits():
    """A limit below the batch's copy runs it in chunks (one image at least), same bits."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6, 2, 7, 9)).astype(np.float32)
    w = rng.standard_normal((6, 20, 2, 3, 3)).astype(np.float32)
    args = ((2, 2, 1), ((0, 1), (1, 1), (1, 1)), (1, 1, 2), 1)
    out_shape = (5, 20, 5, 15, 13)
    whole = nd_engine.conv_transpose(x, w, None, *args, np.empty(out_shape, np.float32), False)
    one = nd_engine.image_bytes(x.shape, w.shape, *args[:3], out_shape, 4)
    for limit in (1, one, 2 * one + 1):
        got = nd_engine.conv_transpose(x, w, None, *args, np.empty(out_shape, np.float32),
                                       False, limit=limit)
        assert got.tobytes() == whole.tobytes(), limit


def test_supported_refuses_non_finite_weights():
    w = np.ones((2, 2, 3, 3))
    assert nd_engine.supported(w)
    w[0, 0, 1, 1] = np.inf
    assert not nd_engine.supported(w)


_X86 = "+sse,+sse2,+sse3,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16,+movbe,+lzcnt,+bmi,+bmi2,+f16c"
#: Numba's target per build (tests/test_engine.py's AVX2 list; "generic" is SSE2 only)
BUILDS = {"avx2": ("haswell", _X86 + ",+avx,+avx2,+fma,-avx512f"), "generic": ("generic", None)}


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 builds")
@pytest.mark.parametrize("build", sorted(BUILDS))
def test_narrower_builds_in_a_subprocess(build, tmp_path):
    """The AVX2 and portable builds (other vector widths, so other channel blocks) give
    the reference's result too, on any x86 machine that runs them."""
    if build == "avx2" and not (simd.FMA and simd.ISA in ("avx2", "avx512")):
        pytest.skip("needs a CPU that runs AVX2 code")
    script = """
        import itertools
        import numpy as np
        from convtranspose.cpu import nd_engine, simd
        from convtranspose.reference import conv_reference, conv_transpose_scatter
        print(simd.ISA)
        rng = np.random.default_rng(0)
        for (dtype, tol), c_out in itertools.product(
                ((np.float32, 2e-5), (np.float64, 1e-12)), (11, 3)):   # wide and narrow tiles
            x = rng.standard_normal((2, 5, 3, 4, 7)).astype(dtype)
            w = rng.standard_normal((5, c_out, 2, 3, 4)).astype(dtype)
            b = rng.standard_normal(c_out).astype(dtype)
            kw = dict(stride=(2, 1, 3), padding=((1, 0), (1, 1), (0, 2)), dilation=(1, 2, 1))
            ref = conv_transpose_scatter(x, w, b, rank=3, **kw)
            out = np.empty((ref.shape[0], *ref.shape[2:], ref.shape[1]), dtype)
            nd_engine.conv_transpose(np.ascontiguousarray(np.moveaxis(x, 1, -1)), w, b,
                                     kw["stride"], kw["padding"], kw["dilation"], 1, out, True)
            err = np.abs(np.moveaxis(out, -1, 1) - ref).max() / np.abs(ref).max()
            assert err <= tol, (dtype, err)
            wc = rng.standard_normal((c_out, 5, 2, 3, 4)).astype(dtype)
            ref = conv_reference(x, wc, b, rank=3, **kw)
            out = np.empty(ref.shape, dtype)
            nd_engine.correlate(x, wc, b, kw["stride"], kw["padding"], kw["dilation"], 1,
                                out, False)
            assert np.abs(out - ref).max() <= tol * np.abs(ref).max(), dtype
        print("ok")
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    name, features = BUILDS[build]
    env.update(NUMBA_CPU_NAME=name, NUMBA_CACHE_DIR=str(tmp_path))
    if features:
        env["NUMBA_CPU_FEATURES"] = features
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    isa, ok = out.stdout.split()
    assert ok == "ok" and isa == ("avx2" if build == "avx2" else "portable"), out.stdout
