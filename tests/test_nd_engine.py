"""The channels-last N-d engine (cpu/nd_engine.py) against the float64 reference, for every
rank and both layouts, and its summation order independent of batch, threads, the
workspace limit and the layout; and ``direct``'s 2-D entries to it (``direct.run_engine``,
``direct.run_correlation``), with the gather kernel for an Inf or NaN weight."""
import os
import platform
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose import reference
from convtranspose.cpu import direct, nd_engine, simd
from convtranspose.params import normalise, normalise_conv2d
from convtranspose.reference import conv2d_reference, conv_transpose2d_scatter
from convtranspose.suite import SUITE
from convtranspose.testing import assert_close, random_problem

TOL = {np.float32: 2e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]


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


# ----------------------------------------------------------------------------
# direct's entries to the engine (direct.run_engine, direct.run_correlation): 2-D problems
# as unit depth, batch chunks within the workspace limit of the call, the gather kernel
# for an Inf or NaN weight


def _channels_last(a):
    """``a`` ``(N, C, H, W)`` as the same view of channels-last memory."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(a, 1, -1)), -1, 1)


def _engine(x, w, b, kwargs, last=False):
    """``direct.run_engine`` on batched ``x``; the result indexed ``(N, C, H, W)``, in
    channels-last memory (as ``x``) with ``last``."""
    dtypes = [x.dtype, w.dtype] + ([] if b is None else [b.dtype])
    params, shape, dtype = normalise(x.shape, w.shape, None if b is None else b.shape, dtypes,
                                     **kwargs)
    out = np.full(shape, np.nan, dtype)
    x = np.ascontiguousarray(x)
    if last:
        x, out = _channels_last(x), _channels_last(out)
    return direct.run_engine(x, np.ascontiguousarray(w), b, params, out)


def _correlation(x, w, b, kwargs, last=False):
    """``direct.run_correlation`` of batched ``x`` with ``w`` ``(C_out, C_in_g, kH, kW)``,
    as :func:`_engine`."""
    params, shape, dtype = normalise_conv2d(x.shape, w.shape, None if b is None else b.shape,
                                            [x.dtype, w.dtype], **kwargs)
    out = np.full(shape, np.nan, dtype)
    if last:
        x, out = _channels_last(x), _channels_last(out)
    return direct.run_correlation(x, w, b, out, params.stride, params.dilation,
                                  (params.pad_h[0], params.pad_w[0]), params.groups)


def _per_image(x, w, out, stride, pads, dilation, correlation=False):
    """Bytes the engine holds per image of a channels-first 2-D call: the zero-bordered
    copy and the channels-last result it transposes from."""
    def lift(shape):
        return (shape[0], shape[1], 1, *shape[2:])
    return nd_engine.image_bytes(lift(x.shape), lift(w.shape), (1, *stride), ((0, 0), *pads),
                                 (1, *dilation), lift(out.shape), out.itemsize,
                                 correlation) + out[0].nbytes


def _assert_bits_fixed(run, x, w, b, kwargs, per_image):
    """``run`` (:func:`_engine` or :func:`_correlation`) gives the same bits for each image
    alone, in channels-last memory, under workspace limits that cut the batch into chunks
    of one image and of two then the rest (``per_image(result)``: the engine's bytes per
    image), and with ``numba.set_num_threads`` 1 and 2; return the result."""
    ref = run(x, w, b, kwargs)
    for i in range(x.shape[0]):
        assert run(x[i:i + 1], w, b, kwargs).tobytes() == ref[i:i + 1].tobytes(), i
    assert run(x, w, b, kwargs, last=True).tobytes() == ref.tobytes()
    for limit in (1, 2 * per_image(ref)):
        old = ct.set_workspace_limit(limit)
        try:
            assert run(x, w, b, kwargs).tobytes() == ref.tobytes(), limit
        finally:
            ct.set_workspace_limit(old)
    old = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            assert run(x, w, b, kwargs).tobytes() == ref.tobytes(), threads
    finally:
        numba.set_num_threads(old)
    return ref


@pytest.mark.parametrize("dtype", DTYPES)
def test_run_engine_random_problems(dtype):
    rng = np.random.default_rng(11)
    for i in range(60):
        p = random_problem(rng)
        x, w, b = p.arrays(dtype, i)
        x = x if x.ndim == 4 else x[None]
        assert_close(_engine(x, w, b, p.kwargs), conv_transpose2d_scatter(x, w, b, **p.kwargs),
                     dtype)


@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((3, 2, 1, 1), (2, 4, 4, 4), dict(stride=2)),                 # 1x1 image
    ((2, 3, 1, 1), (3, 2, 3, 3), dict(stride=2**31 - 1)),         # 1x1 image, huge stride
    ((1, 2, 3, 3), (2, 3, 7, 7), dict(stride=2, padding=1)),      # kernel larger than the image
    ((2, 4, 5, 6), (4, 3, 3, 2), dict(stride=(3, 2), padding=((2, 0), (1, 3)),
                                      output_padding=(1, 1), dilation=(1, 2), groups=2)),
    ((1, 8, 4, 4), (8, 1, 4, 4), dict(stride=2, padding=1, groups=8)),   # depthwise
    ((1, 1, 3, 3), (1, 1, 5, 5), dict(padding=3)),                # padding crops to 1x1
    ((1, 2, 2, 3), (2, 2, 3, 3), dict(stride=5)),                 # phases that get no tap
    ((0, 3, 4, 5), (3, 2, 3, 3), dict(stride=2)),                 # N = 0
    ((2, 3, 40, 9), (3, 13, 3, 3), dict(stride=1, padding=1)),    # many tiles, MR edge
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_run_engine_edge_problems(dtype, x_shape, w_shape, kwargs):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    for bias in (b, None):
        assert_close(_engine(x, w, bias, kwargs), conv_transpose2d_scatter(x, w, bias, **kwargs),
                     dtype)


@pytest.mark.parametrize("shape", SUITE, ids=[s.name for s in SUITE])
def test_run_engine_suite_shapes_at_reduced_batch(shape):
    dtype = np.float32
    x, w, b = shape.arrays(dtype, batch=min(shape.n, 2))
    kwargs = shape.kwargs()
    assert_close(_engine(x, w, b, kwargs), conv_transpose2d_scatter(x, w, b, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_run_engine_bits_depend_on_neither_threads_batch_limit_nor_layout(dtype):
    # many input channels (long sums), output channels over a two-vector block and its
    # edge, pixels over many tiles of every phase
    rng = np.random.default_rng(5)
    nr = simd.tile(dtype)[1]
    x = rng.standard_normal((3, 45, 9, 7)).astype(dtype)
    w = rng.standard_normal((45, nr + 3, 4, 4)).astype(dtype)
    b = rng.standard_normal(nr + 3).astype(dtype)
    kwargs = dict(stride=2, padding=1)
    params = normalise(x.shape, w.shape, b.shape, [x.dtype] * 3, **kwargs)[0]
    ref = _assert_bits_fixed(_engine, x, w, b, kwargs, lambda out: _per_image(
        x, w, out, params.stride, params.pads, params.dilation))
    assert_close(ref, conv_transpose2d_scatter(x, w, b, **kwargs), dtype)


def test_plan_does_not_grow_with_the_image():
    # the tables grow with the kernel and the stride's phases, not with the pixels
    args = ((1, 2, 2), ((0, 0), (1, 1), (1, 1)), (1, 1, 1))
    small = nd_engine.plan((1, 4, 1, 20, 20), (4, 4, 1, 3, 3), *args, (1, 4, 1, 39, 39))
    large = nd_engine.plan((1, 4, 1, 2000, 2000), (4, 4, 1, 3, 3), *args,
                           (1, 4, 1, 3999, 3999))
    for name in ("phase", "tap_k", "tap_o", "steps", "front", "back"):
        assert large[name].shape == small[name].shape, name
    assert len(large["tap_k"]) == 1 + 3 + 3 + 1         # each axis's taps, and a spare


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_run_engine_nonfinite_weight_runs_the_gather_kernel(dtype, bad):
    # a tap reading outside the input would meet the engine's zero border: 0 * inf must
    # not give NaN, so such a weight runs on the gather kernel
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    w[1, 0, 2, 0] = bad                      # kernel row 2 reads input row -1 for output row 0
    kwargs = dict(stride=2)
    assert not nd_engine.supported(w)
    got = _engine(x, w, None, kwargs)
    with np.errstate(invalid="ignore"):
        ref = conv_transpose2d_scatter(x, w, None, **kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    finite = np.isfinite(ref)
    assert finite.any() and not finite.all()
    assert_close(got[finite], ref[finite], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_run_engine_nonfinite_input_propagates_as_defined(dtype):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    x[0, 1, 2, 3] = np.inf
    x[0, 0, 0, 0] = np.nan
    w[1, 2, 1, 1] = 0.0                      # inf * 0 = nan where the definition has it
    kwargs = dict(stride=2, padding=1)
    assert nd_engine.supported(w)            # the engine itself runs it
    got = _engine(x, w, None, kwargs)
    with np.errstate(invalid="ignore"):
        ref = conv_transpose2d_scatter(x, w, None, **kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    assert_close(got[finite], ref[finite], dtype)


def test_run_engine_nonfinite_tap_that_reaches_no_output():
    # a NaN weight whose taps reach no output: the engine would still read its border for
    # it, so run_engine hands the layer to the gather kernel, which gives the definition's
    x = np.ones((1, 1, 1, 3))
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 2, :] = np.nan
    kwargs = dict(padding=((0, 2), (0, 0)))     # crops away the rows kernel rows 1, 2 reach
    assert not nd_engine.supported(w)
    got = _engine(x, w, None, kwargs)
    np.testing.assert_array_equal(got, conv_transpose2d_scatter(x, w, None, **kwargs))


def _random_correlation(rng, dtype):
    groups = int(rng.choice([1, 1, 2, 3]))
    c_in_g, c_out_g = (int(v) for v in rng.integers(1, 9, 2))
    k = [int(v) for v in rng.integers(1, 5, 2)]
    s = [int(v) for v in rng.integers(1, 4, 2)]
    d = [int(v) for v in rng.integers(1, 3, 2)]
    pad = tuple(tuple(int(v) for v in rng.integers(0, 3, 2)) for _ in range(2))
    hw = [int(rng.integers(max(1, di * (ki - 1) + 1 - sum(p)), 14)) for di, ki, p in zip(d, k, pad)]
    x = rng.standard_normal((int(rng.integers(1, 4)), c_in_g * groups, *hw)).astype(dtype)
    w = rng.standard_normal((c_out_g * groups, c_in_g, *k)).astype(dtype)
    b = rng.standard_normal(c_out_g * groups).astype(dtype) if rng.random() < 0.5 else None
    return x, w, b, dict(stride=s, padding=pad, dilation=d, groups=groups)


@pytest.mark.parametrize("dtype", DTYPES)
def test_run_correlation_random_problems(dtype):
    rng = np.random.default_rng(21)
    for _ in range(40):
        x, w, b, kwargs = _random_correlation(rng, dtype)
        assert_close(_correlation(x, w, b, kwargs), conv2d_reference(x, w, b, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_run_correlation_bits_depend_on_neither_threads_batch_limit_nor_layout(dtype):
    # a stride that sets a tile's pixels apart, output channels over a block's edge
    rng = np.random.default_rng(22)
    nr = simd.tile(dtype)[1]
    x = rng.standard_normal((3, 35, 11, 13)).astype(dtype)
    w = rng.standard_normal((nr + 3, 35, 3, 3)).astype(dtype)
    b = rng.standard_normal(nr + 3).astype(dtype)
    kwargs = dict(stride=(2, 3), padding=1)
    ref = _assert_bits_fixed(_correlation, x, w, b, kwargs, lambda out: _per_image(
        x, w, out, (2, 3), ((1, 0), (1, 0)), (1, 1), correlation=True))
    assert_close(ref, conv2d_reference(x, w, b, **kwargs), dtype)


def test_direct_conv2d_runs_the_engine_on_channel_heavy_layers(monkeypatch):
    calls = []
    real = nd_engine.correlate
    monkeypatch.setattr(nd_engine, "correlate", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(24)
    x = rng.standard_normal((2, 16, 9, 9))
    w = rng.standard_normal((8, 16, 3, 3))
    got = ct.conv2d(x, w, stride=2, padding=1, backend="direct")
    assert calls
    assert_close(got, conv2d_reference(x, w, stride=2, padding=1), np.float64)
    ct.conv2d(x, w[:4], stride=2, padding=1, backend="direct")   # 4 output channels: gather
    assert len(calls) == 1


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


def test_relayout_reads_zero_and_overlapping_strides_as_they_index():
    # a broadcast axis can give a memory span of exactly x.size: still not a dense array
    from numpy.lib.stride_tricks import as_strided
    from convtranspose.cpu import nd_engine
    base = np.arange(8.0)
    for shape, strides in [((1, 2, 1, 2, 2), (0, 0, 0, 8, 48)),
                           ((2, 2, 1, 2, 2), (8, 8, 0, 16, 32))]:
        x = as_strided(base, shape, strides)
        got = nd_engine.relayout(x, (0, 0, 0), (0, 0, 0), False)
        np.testing.assert_array_equal(got, x.transpose(0, 2, 3, 4, 1))
