"""The transposed convolution, the correlation and the weight gradient on the packed GEMM
engine (cpu/deconv.py):
against the float64 reference, bitwise independence of threads, batch and tiling, and
Inf/NaN weights."""
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.cpu import deconv, direct, engine, simd
from convtranspose.params import normalise, normalise_conv2d
from convtranspose.reference import (conv2d_reference, conv_transpose2d_backward_reference,
                                     conv_transpose2d_scatter)
from convtranspose.suite import SUITE
from convtranspose.testing import assert_close, random_problem

DTYPES = [np.float32, np.float64]


def _call(x, w, b, kwargs, fn=direct.run_engine, **options):
    """Run ``fn`` on batched, contiguous arrays; return the output."""
    dtypes = [x.dtype, w.dtype] + ([] if b is None else [b.dtype])
    params, shape, dtype = normalise(x.shape, w.shape, None if b is None else b.shape, dtypes,
                                     **kwargs)
    out = np.full(shape, np.nan, dtype)
    result = fn(np.ascontiguousarray(x), np.ascontiguousarray(w), b, params, out, **options)
    return out if fn is direct.run_engine else (result, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_random_problems(dtype):
    rng = np.random.default_rng(11)
    for i in range(60):
        p = random_problem(rng)
        x, w, b = p.arrays(dtype, i)
        x = x if x.ndim == 4 else x[None]
        assert_close(_call(x, w, b, p.kwargs), conv_transpose2d_scatter(x, w, b, **p.kwargs),
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
    ((2, 3, 40, 9), (3, 13, 3, 3), dict(stride=1, padding=1)),    # several tasks, MR edge
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_edge_problems(dtype, x_shape, w_shape, kwargs):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype)
    for bias in (b, None):
        assert_close(_call(x, w, bias, kwargs), conv_transpose2d_scatter(x, w, bias, **kwargs),
                     dtype)


@pytest.mark.parametrize("shape", SUITE, ids=[s.name for s in SUITE])
def test_suite_shapes_at_reduced_batch(shape):
    dtype = np.float32
    x, w, b = shape.arrays(dtype, batch=min(shape.n, 2))
    kwargs = shape.kwargs()
    assert_close(_call(x, w, b, kwargs), conv_transpose2d_scatter(x, w, b, **kwargs), dtype)


def _bitwise_problem(dtype):
    # K = C_in_g * taps over two KC blocks, C_out_g over an MR edge, pixels over many panels
    rng = np.random.default_rng(5)
    kc = engine.blocking(dtype)[0]
    c_in = kc // 2 + 3                      # 4 taps per phase: K = 2*kc + 12
    x = rng.standard_normal((3, c_in, 9, 7)).astype(dtype)
    w = rng.standard_normal((c_in, simd.MR + 2, 4, 4)).astype(dtype)
    b = rng.standard_normal(simd.MR + 2).astype(dtype)
    return x, w, b, dict(stride=2, padding=1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_independent_of_threads_batch_and_tiling(dtype):
    x, w, b, kwargs = _bitwise_problem(dtype)
    _, packed = _call(x, w, b, kwargs, deconv.compute)     # the packing engine's own order
    assert_close(packed, conv_transpose2d_scatter(x, w, b, **kwargs), dtype)
    nr = simd.tile(dtype)[1]
    for cols in (1, nr - 1, 2 * nr + 3, 20, 63):              # tasks of other sizes and shapes
        _, out = _call(x, w, b, kwargs, deconv.compute, cols=cols)
        np.testing.assert_array_equal(out, packed)
    ref = _call(x, w, b, kwargs)                                # direct's engine (nd_engine)
    assert_close(ref, conv_transpose2d_scatter(x, w, b, **kwargs), dtype)
    for i in range(x.shape[0]):                                 # each image in a batch of one
        np.testing.assert_array_equal(_call(x[i:i + 1], w, b, kwargs), ref[i:i + 1])
        _, out = _call(x[i:i + 1], w, b, kwargs, deconv.compute)
        np.testing.assert_array_equal(out, packed[i:i + 1])
    if numba.config.NUMBA_NUM_THREADS > 1:
        old = numba.get_num_threads()
        try:
            for threads in (1, 2):
                numba.set_num_threads(threads)
                np.testing.assert_array_equal(_call(x, w, b, kwargs), ref)
                np.testing.assert_array_equal(_call(x, w, b, kwargs, deconv.compute)[1],
                                              packed)
        finally:
            numba.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_nonfinite_weight_falls_back(dtype, bad):
    # a tap reading outside the input meets a packed zero: 0 * inf must not give NaN
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4, 5)).astype(dtype)
    w = rng.standard_normal((3, 2, 3, 3)).astype(dtype)
    w[1, 0, 2, 0] = bad                      # kernel row 2 reads input row -1 for output row 0
    kwargs = dict(stride=2)
    flag, _ = _call(x, w, None, kwargs, deconv.compute)
    assert flag is False
    got = _call(x, w, None, kwargs)
    with np.errstate(invalid="ignore"):
        ref = conv_transpose2d_scatter(x, w, None, **kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    finite = np.isfinite(ref)
    assert finite.any() and not finite.all()
    assert_close(got[finite], ref[finite], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_input_propagates_as_defined(dtype):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((1, 2, 5, 5)).astype(dtype)
    w = rng.standard_normal((2, 3, 3, 3)).astype(dtype)
    x[0, 1, 2, 3] = np.inf
    x[0, 0, 0, 0] = np.nan
    w[1, 2, 1, 1] = 0.0                      # inf * 0 = nan where the definition has it
    kwargs = dict(stride=2, padding=1)
    flag, got = _call(x, w, None, kwargs, deconv.compute)
    assert flag is True
    with np.errstate(invalid="ignore"):
        ref = conv_transpose2d_scatter(x, w, None, **kwargs)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(ref))
    finite = np.isfinite(ref)
    assert_close(got[finite], ref[finite], dtype)


def test_nonfinite_tap_that_reaches_no_output_still_falls_back():
    # the engine packs every tap of a phase's residue class, also one whose inputs all lie
    # outside (so that a pixel's sum does not depend on the image's size): a NaN there
    # makes it hand over to the gather kernel, which gives the definition's result
    x = np.ones((1, 1, 1, 3))
    w = np.ones((1, 1, 3, 3))
    w[0, 0, 2, :] = np.nan
    kwargs = dict(padding=((0, 2), (0, 0)))     # crops away the rows kernel rows 1, 2 reach
    flag, _ = _call(x, w, None, kwargs, deconv.compute)
    assert flag is False
    got = _call(x, w, None, kwargs)
    np.testing.assert_array_equal(got, conv_transpose2d_scatter(x, w, None, **kwargs))


def test_plan_is_small():
    # a large output: the plan's tables grow with the kernel and the tasks, not the pixels
    params, shape, _ = normalise((1, 4, 2000, 2000), (4, 4, 3, 3), None,
                                 [np.dtype(np.float32)] * 2, stride=2)
    plan = deconv.plan_deconv((1, 4, 2000, 2000), (4, 4, 3, 3), params, shape[2:],
                              np.dtype(np.float32), 2**28, 2)
    assert len(plan.k_rows) <= 2 * 3 and len(plan.k_cols) <= 2 * 3     # stride * kernel
    nb = plan.tasks[:, 3] * plan.tasks[:, 5] * plan.tasks[:, 7]
    assert nb.max() <= engine.blocking(np.float32)[2]
    assert len(plan.tasks) * nb.min() <= 2 * shape[2] * shape[3]     # no tiny tasks
    assert plan.slot <= 2 * 2**20


# ----------------------------------------------------------------------------
# the correlation on the engine (conv2d's forward, the transposed convolution's input
# gradient): the same kernel with one phase and the input read at the stride


def _correlate(x, w, b, kwargs, **options):
    """The engine's correlation of batched ``x`` with ``w`` (C_out, C_in_g, kH, kW)."""
    params, shape, dtype = normalise_conv2d(x.shape, w.shape, None if b is None else b.shape,
                                            [x.dtype, w.dtype], **kwargs)
    out = np.full(shape, np.nan, dtype)
    return deconv.correlate(x, w, b, out, params.stride, params.dilation,
                            (params.pad_h[0], params.pad_w[0]), params.groups, **options)


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
def test_correlation_random_problems(dtype):
    rng = np.random.default_rng(21)
    for _ in range(40):
        x, w, b, kwargs = _random_correlation(rng, dtype)
        assert_close(_correlate(x, w, b, kwargs), conv2d_reference(x, w, b, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlation_bitwise_independent_of_batch_and_tiling(dtype):
    # depth over two KC blocks, C_out over an MR edge, a stride that breaks contiguity
    rng = np.random.default_rng(22)
    kc = engine.blocking(dtype)[0]
    c_in = kc // 4 + 3                                       # 9 taps: K > 2 * kc
    x = rng.standard_normal((3, c_in, 11, 13)).astype(dtype)
    w = rng.standard_normal((simd.MR + 3, c_in, 3, 3)).astype(dtype)
    b = rng.standard_normal(simd.MR + 3).astype(dtype)
    kwargs = dict(stride=(2, 3), padding=1)
    ref = _correlate(x, w, b, kwargs)
    assert_close(ref, conv2d_reference(x, w, b, **kwargs), dtype)
    nr = simd.tile(dtype)[1]
    for cols in (1, nr - 1, 2 * nr + 3, 7):
        np.testing.assert_array_equal(_correlate(x, w, b, kwargs, cols=cols), ref)
    for i in range(x.shape[0]):
        np.testing.assert_array_equal(_correlate(x[i:i + 1], w, b, kwargs), ref[i:i + 1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_correlation_multiplies_padding_as_pytorch_does(dtype):
    # an Inf weight meets the padding's zeros: NaN there, as in torch's conv2d; inside, Inf
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(23)
    x = rng.standard_normal((1, 4, 6, 6)).astype(dtype)
    w = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
    w[2, 1, 0, 0] = np.inf
    got = _correlate(x, w, None, dict(padding=1))
    want = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    finite = np.isfinite(want)
    assert np.isnan(got).any() and finite.any()
    assert_close(got[finite], want[finite], dtype)


def test_direct_conv2d_runs_the_nd_engine_on_channel_heavy_layers(monkeypatch):
    import convtranspose as ct
    from convtranspose.cpu import nd_engine
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


# ----------------------------------------------------------------------------
# the weight gradient on the engine: per group one GEMM over the pixels


def _weight_grad(x, g, w_shape, kwargs):
    """The engine's weight gradient of a transposed convolution (``a = x``, ``b = g``)."""
    params, _, _ = normalise(x.shape, w_shape, None, [x.dtype], **kwargs)
    gw = np.full(w_shape, np.nan, x.dtype)
    return deconv.weight_grad(x, g, gw, params.stride, params.dilation,
                              (params.pad_h[0], params.pad_w[0]), params.groups)


def _grad_output(rng, x, w_shape, kwargs):
    _, shape, _ = normalise(x.shape, w_shape, None, [x.dtype], **kwargs)
    return rng.standard_normal(shape).astype(x.dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_random_problems(dtype):
    rng = np.random.default_rng(31)
    for i in range(50):
        p = random_problem(rng)
        x, w, _ = p.arrays(dtype, i)
        x = x if x.ndim == 4 else x[None]
        g = _grad_output(rng, x, w.shape, p.kwargs)
        _, want, _ = conv_transpose2d_backward_reference(g, x, w, **p.kwargs)
        assert_close(_weight_grad(x, g, w.shape, p.kwargs), want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("x_shape, w_shape, kwargs", [
    ((8, 16, 32, 32), (16, 3, 4, 4), dict(stride=2, padding=1)),        # pixel parts
    ((4, 12, 20, 20), (12, 5, 3, 3), dict(padding=1, groups=3)),        # groups, parts
    ((2, 64, 9, 9), (64, 40, 3, 3), dict(stride=2, padding=2, dilation=2)),   # column blocks
    ((1, 8, 1, 1), (8, 9, 4, 4), dict(stride=3)),                       # one pixel
])
def test_weight_grad_tasks_and_threads(dtype, x_shape, w_shape, kwargs):
    rng = np.random.default_rng(32)
    x = rng.standard_normal(x_shape).astype(dtype)
    g = _grad_output(rng, x, w_shape, kwargs)
    ref = _weight_grad(x, g, w_shape, kwargs)
    _, want, _ = conv_transpose2d_backward_reference(g, x, np.zeros(w_shape), **kwargs)
    assert_close(ref, want, dtype)
    if numba.config.NUMBA_NUM_THREADS > 1:
        old = numba.get_num_threads()
        try:
            numba.set_num_threads(1)
            np.testing.assert_array_equal(_weight_grad(x, g, w_shape, kwargs), ref)
        finally:
            numba.set_num_threads(old)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weight_grad_nonfinite_as_the_other_backends(dtype):
    # an Inf in x meets a zero read outside grad_output: NaN there, as the im2col backend
    # (zero-filled patches) and PyTorch's float64 path give it (PyTorch's float32 oneDNN
    # path skips those zeros; the package follows one rule, convtranspose.nonfinite's)
    import convtranspose as ct
    rng = np.random.default_rng(33)
    x = rng.standard_normal((2, 8, 5, 5)).astype(dtype)
    x[1, 3, 0, 0] = np.inf
    w = rng.standard_normal((8, 4, 3, 3)).astype(dtype)
    kwargs = dict(stride=2, padding=1)
    g = _grad_output(rng, x, w.shape, kwargs)
    got = _weight_grad(x, g, w.shape, kwargs)
    wants = [ct.conv_transpose2d_backward(g, x, w, **kwargs, backend="im2col")[1]]
    if dtype == np.float64:
        torch = pytest.importorskip("torch")
        wants.append(torch.ops.aten.convolution_backward(
            torch.from_numpy(g), torch.from_numpy(x), torch.from_numpy(w), None, [2, 2],
            [1, 1], [1, 1], True, [0, 0], 1, [False, True, False])[1].numpy())
    assert np.isnan(got).any()
    for want in wants:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        finite = np.isfinite(want)
        assert_close(got[finite], want[finite], dtype)


def test_direct_gradients_run_the_engine_on_channel_heavy_layers(monkeypatch):
    import convtranspose as ct
    from convtranspose.cpu import nd_engine
    calls = []
    for module, name in ((nd_engine, "correlate"), (deconv, "weight_grad")):
        real = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k))
    rng = np.random.default_rng(34)
    x = rng.standard_normal((2, 16, 6, 6))
    w = rng.standard_normal((16, 8, 4, 4))
    y = ct.conv_transpose2d(x, w, stride=2, padding=1)
    g = rng.standard_normal(y.shape)
    got = ct.conv_transpose2d_backward(g, x, w, stride=2, padding=1, backend="direct")
    assert calls == ["correlate", "weight_grad"]
    want = conv_transpose2d_backward_reference(g, x, w, stride=2, padding=1)
    for a, b in zip(got, want):
        assert_close(a, b, np.float64)


def test_weight_grad_bits_depend_on_neither_the_limit_nor_the_threads(tmp_path):
    # the pixel ranges (the summation order) come from the shapes alone; a small workspace
    # limit narrows the column blocks and adds the partials one after the other
    rng = np.random.default_rng(35)
    x = rng.standard_normal((16, 32, 16, 16)).astype(np.float32)
    w_shape, kwargs = (32, 64, 4, 4), dict(stride=2, padding=1)
    g = _grad_output(rng, x, w_shape, kwargs)
    want = _weight_grad(x, g, w_shape, kwargs)
    big = deconv.plan_weight_grad(x.shape, w_shape, 1, np.dtype(np.float32), 2**28, 2)
    small = deconv.plan_weight_grad(x.shape, w_shape, 1, np.dtype(np.float32), 2**19, 2)
    assert big.parts == small.parts > 1
    assert 2 * small.slot * 4 <= 2**19 < 2 * big.slot * 4
    old = ct.get_workspace_limit()
    try:
        ct.set_workspace_limit(2**19)           # no room for the partials at once
        np.testing.assert_array_equal(_weight_grad(x, g, w_shape, kwargs), want)
    finally:
        ct.set_workspace_limit(old)
    _, ref, _ = conv_transpose2d_backward_reference(g, x, np.zeros(w_shape), **kwargs)
    assert_close(want, ref, np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "g.npy", g)
    script = textwrap.dedent(f"""
        import numpy as np
        from convtranspose.cpu import deconv
        x, g = np.load({str(tmp_path / "x.npy")!r}), np.load({str(tmp_path / "g.npy")!r})
        gw = np.empty({w_shape}, np.float32)
        deconv.weight_grad(x, g, gw, (2, 2), (1, 1), (1, 1), 1)
        np.save({str(tmp_path / "gw.npy")!r}, gw)
    """)
    for threads in ("1", "3"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        np.testing.assert_array_equal(np.load(tmp_path / "gw.npy"), want)
