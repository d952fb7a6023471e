"""Every rank's functions and layers, parametrised over rank x backend x dtype x layout,
against PyTorch (float64 to 1e-10, float32 to 1e-5) and against the float64 references of
any rank: forward, gradients, asymmetric and 'same' padding, ``output_size``, unbatched
and empty batches, Inf and NaN placement; channels-last results are channels-last in
memory and the engine reads and writes them in place."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import (conv_backward_reference, conv_reference,
                                     conv_transpose_backward_reference, conv_transpose_scatter)

RANKS = [1, 2, 3]
BACKENDS = ["direct", "im2col", "auto"]
DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}
SEEDS = range(4)

TRANSPOSED = {1: ct.conv_transpose1d, 2: ct.conv_transpose2d, 3: ct.conv_transpose3d}
TRANSPOSED_BACKWARD = {1: ct.conv_transpose1d_backward, 2: ct.conv_transpose2d_backward,
                       3: ct.conv_transpose3d_backward}
CONV = {1: ct.conv1d, 2: ct.conv2d, 3: ct.conv3d}
CONV_BACKWARD = {1: ct.conv1d_backward, 2: ct.conv2d_backward, 3: ct.conv3d_backward}
FORMATS = {1: ("NCW", "NWC"), 2: ("NCHW", "NHWC"), 3: ("NCDHW", "NDHWC")}
LAYOUTS = ["first", "last"]
LAYERS = {1: (ct.ConvTranspose1d, ct.Conv1d), 2: (ct.ConvTranspose2d, ct.Conv2d),
          3: (ct.ConvTranspose3d, ct.Conv3d)}


def _torch():
    return pytest.importorskip("torch")


def _t(a):
    torch = _torch()
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


def _problem(rng, rank, transposed, dtype):
    """Random valid arguments of one rank: ``(x, w, b, kwargs)``, kwargs as PyTorch takes
    them (a tuple per hyper-parameter); batches of 0 to 2 and unbatched input among them."""
    most = {1: 7, 2: 5, 3: 4}[rank]
    while True:
        groups = int(rng.integers(1, 3))
        c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        k = tuple(int(v) for v in rng.integers(1, 4, rank))
        s = tuple(int(v) for v in rng.integers(1, 4, rank))
        d = tuple(int(v) for v in rng.integers(1, 3, rank))
        p = tuple(int(rng.integers(0, di * (ki - 1) // 2 + 1)) for ki, di in zip(k, d))
        sizes = tuple(int(v) for v in rng.integers(1, most, rank))
        if transposed:
            op = tuple(int(rng.integers(0, max(si, di))) for si, di in zip(s, d))
            out = [(n - 1) * si - 2 * pi + di * (ki - 1) + oi + 1
                   for n, si, pi, di, ki, oi in zip(sizes, s, p, d, k, op)]
            kwargs = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
            w_shape = (c_in, c_out // groups, *k)
        else:
            out = [(n + 2 * pi - di * (ki - 1) - 1) // si + 1
                   for n, si, pi, di, ki in zip(sizes, s, p, d, k)]
            kwargs = dict(stride=s, padding=p, dilation=d, groups=groups)
            w_shape = (c_out, c_in // groups, *k)
        if min(out) >= 1:
            break
    n = int(rng.choice([0, 1, 2]))
    x_shape = (c_in, *sizes) if rng.random() < 0.25 else (n, c_in, *sizes)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if rng.random() < 0.7 else None
    return x, w, b, kwargs


def _fmt(rank, layout):
    return FORMATS[rank][layout == "last"]


def _to(a, rank, layout):
    """A channels-first array in ``layout``, C-contiguous there."""
    return np.ascontiguousarray(np.moveaxis(a, -rank - 1, -1)) if layout == "last" else a


def _back(a, rank, layout):
    """A result in ``layout`` seen channels-first; checks channels-last memory."""
    if layout == "first" or a is None:
        return a
    assert a.flags.c_contiguous, "a channels-last result is C-contiguous as (N, ..., C)"
    return np.moveaxis(a, -1, -rank - 1)


def _torch_op(name, rank):
    return getattr(_torch().nn.functional, f"{name}{rank}d")


# ----------------------------------------------------------------------------
# forward


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_transposed_matches_torch(seed, rank, backend, dtype, layout):
    x, w, b, kw = _problem(np.random.default_rng(seed * 10 + rank), rank, True, dtype)
    want = _torch_op("conv_transpose", rank)(_t(x), _t(w), _t(b), **kw).numpy()
    got = _back(TRANSPOSED[rank](_to(x, rank, layout), w, b, backend=backend,
                                 data_format=_fmt(rank, layout), **kw), rank, layout)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_matches_torch(seed, rank, backend, dtype, layout):
    x, w, b, kw = _problem(np.random.default_rng(500 + seed * 10 + rank), rank, False, dtype)
    want = _torch_op("conv", rank)(_t(x), _t(w), _t(b), **kw).numpy()
    got = _back(CONV[rank](_to(x, rank, layout), w, b, backend=backend,
                           data_format=_fmt(rank, layout), **kw), rank, layout)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])


def _asymmetric(rank):
    return tuple([(1, 0), (0, 2), (2, 1)][:rank])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("padding", ["same", "valid", "asymmetric"])
def test_transposed_padding_matches_reference(padding, rank, backend):
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((2, 4, *[3, 4, 5][:rank]))
    w = rng.standard_normal((4, 3, *[3, 2, 4][:rank]))
    b = rng.standard_normal(3)
    kw = dict(stride=tuple([2, 1, 3][:rank]), dilation=tuple([1, 2, 1][:rank]))
    pad = _asymmetric(rank) if padding == "asymmetric" else padding
    got = TRANSPOSED[rank](x, w, b, padding=pad, backend=backend, **kw)
    want = conv_transpose_scatter(x, w, b, padding=pad, **kw)
    np.testing.assert_allclose(got, want, **TOL[np.float64])
    if padding == "same":
        assert got.shape[2:] == tuple(n * s for n, s in zip(x.shape[2:], kw["stride"]))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("padding", ["same", "valid", "asymmetric"])
def test_conv_padding_matches_reference(padding, rank, backend):
    rng = np.random.default_rng(10 + rank)
    x = rng.standard_normal((2, 4, *[6, 5, 7][:rank]))
    w = rng.standard_normal((4, 2, *[3, 2, 4][:rank]))
    b = rng.standard_normal(4)
    pad = _asymmetric(rank) if padding == "asymmetric" else padding
    got = CONV[rank](x, w, b, padding=pad, groups=2, backend=backend)
    want = conv_reference(x, w, b, padding=pad, groups=2)
    np.testing.assert_allclose(got, want, **TOL[np.float64])


@pytest.mark.parametrize("rank", RANKS)
def test_output_size_as_torch(rank):
    torch = _torch()
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((1, 2, *[3] * rank))
    w = rng.standard_normal((2, 2, *[3] * rank))
    size = tuple([10, 11, 9][:rank])
    layer = getattr(torch.nn, f"ConvTranspose{rank}d")(2, 2, 3, stride=3, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(_t(w))
        want = layer(_t(x), output_size=size).numpy()
    got = TRANSPOSED[rank](x, w, stride=3, output_size=size)
    np.testing.assert_allclose(got, want, **TOL[np.float64])


# ----------------------------------------------------------------------------
# gradients


def _torch_grads(g, x, w, kw, transposed, has_bias, rank):
    torch = _torch()
    tx, tw = _t(x).requires_grad_(), _t(w).requires_grad_()
    tb = torch.zeros(g.shape[-rank - 1], dtype=tx.dtype, requires_grad=True) if has_bias \
        else None
    op = _torch_op("conv_transpose" if transposed else "conv", rank)
    op(tx, tw, tb, **kw).backward(_t(g))
    return tx.grad.numpy(), tw.grad.numpy(), None if tb is None else tb.grad.numpy()


def _check_grads(got, want, dtype):
    for a, e in zip(got, want):
        if e is None:
            assert a is None
        else:
            assert a.shape == e.shape and a.dtype == dtype
            np.testing.assert_allclose(a, e, **TOL[dtype])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_transposed_backward_matches_torch(seed, rank, backend, dtype, layout):
    rng = np.random.default_rng(1000 + seed * 10 + rank)
    x, w, _, kw = _problem(rng, rank, True, dtype)
    y = TRANSPOSED[rank](x, w, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = TRANSPOSED_BACKWARD[rank](_to(g, rank, layout), _to(x, rank, layout), w,
                                           backend=backend, data_format=_fmt(rank, layout),
                                           **kw)
    got = _back(gx, rank, layout), gw, gb
    _check_grads(got, _torch_grads(g, x, w, kw, True, True, rank), dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_backward_matches_torch(seed, rank, backend, dtype, layout):
    rng = np.random.default_rng(2000 + seed * 10 + rank)
    x, w, _, kw = _problem(rng, rank, False, dtype)
    y = CONV[rank](x, w, **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = CONV_BACKWARD[rank](_to(g, rank, layout), _to(x, rank, layout), w,
                                     backend=backend, data_format=_fmt(rank, layout), **kw)
    got = _back(gx, rank, layout), gw, gb
    _check_grads(got, _torch_grads(g, x, w, kw, False, True, rank), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
def test_backward_with_asymmetric_padding_matches_reference(rank, backend):
    rng = np.random.default_rng(3000 + rank)
    pad = _asymmetric(rank)
    kw = dict(stride=tuple([2, 1, 2][:rank]), padding=pad, dilation=tuple([1, 2, 1][:rank]))
    x = rng.standard_normal((2, 2, *[3, 4, 3][:rank]))
    w = rng.standard_normal((2, 3, *[3, 2, 3][:rank]))
    y = TRANSPOSED[rank](x, w, **kw)
    g = rng.standard_normal(y.shape)
    got = TRANSPOSED_BACKWARD[rank](g, x, w, backend=backend, **kw)
    want = conv_transpose_backward_reference(g, x, w, **kw)
    _check_grads(got[:2], want[:2], np.float64)
    cw = rng.standard_normal((3, 2, *[3, 2, 3][:rank]))
    xc = rng.standard_normal((2, 2, *[7, 6, 5][:rank]))
    yc = CONV[rank](xc, cw, **kw)
    gc = rng.standard_normal(yc.shape)
    got = CONV_BACKWARD[rank](gc, xc, cw, backend=backend, **kw)
    want = conv_backward_reference(gc, xc, cw, **kw)
    _check_grads(got[:2], want[:2], np.float64)


# ----------------------------------------------------------------------------
# Inf and NaN where PyTorch puts them


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("rank", RANKS)
def test_nonfinite_placement_matches_torch(rank, backend):
    rng = np.random.default_rng(4000 + rank)
    kw = dict(stride=tuple([2] * rank), padding=tuple([1] * rank))
    x = rng.standard_normal((1, 2, *[4] * rank))
    w = rng.standard_normal((2, 2, *[3] * rank))
    x.flat[5] = np.inf
    w.flat[7] = -np.inf
    want = _torch_op("conv_transpose", rank)(_t(x), _t(w), **kw).numpy()
    got = TRANSPOSED[rank](x, w, backend=backend, **kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    ok = np.isfinite(want)
    np.testing.assert_allclose(got[ok], want[ok], **TOL[np.float64])
    want = _torch_op("conv", rank)(_t(x), _t(w), **kw).numpy()
    got = CONV[rank](x, w, backend=backend, **kw)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    g = rng.standard_normal(TRANSPOSED[rank](x, w, **kw).shape)
    got = TRANSPOSED_BACKWARD[rank](g, x, w, backend=backend, **kw)
    for a, e in zip(got, _torch_grads(g, x, w, kw, True, False, rank)):
        if e is not None:
            np.testing.assert_array_equal(np.isnan(a), np.isnan(e))


# ----------------------------------------------------------------------------
# layers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("transposed", [True, False])
def test_layer_matches_torch(transposed, rank, dtype):
    torch = _torch()
    ours = LAYERS[rank][0 if transposed else 1]
    theirs = getattr(torch.nn, f"{'ConvTranspose' if transposed else 'Conv'}{rank}d")
    kw = dict(kernel_size=3, stride=2, padding=1, groups=2)
    layer = ours(4, 6, dtype=dtype, seed=rank, **kw)
    ref = theirs(4, 6, **kw).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        ref.weight.copy_(_t(layer.weight))
        ref.bias.copy_(_t(layer.bias))
    x = np.random.default_rng(rank).standard_normal((2, 4, *[5] * rank)).astype(dtype)
    tx = _t(x).requires_grad_()
    want = ref(tx)
    got = layer(x)
    np.testing.assert_allclose(got, want.detach().numpy(), **TOL[dtype])
    g = np.ones_like(got)
    want.backward(_t(g))
    np.testing.assert_allclose(layer.backward(g), tx.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.weight_grad, ref.weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(layer.bias_grad, ref.bias.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("rank", RANKS)
@pytest.mark.parametrize("transposed", [True, False])
def test_channels_last_layer_equals_channels_first(transposed, rank):
    cls = LAYERS[rank][0 if transposed else 1]
    first = cls(4, 6, kernel_size=3, stride=2, padding=1, seed=1, dtype=np.float64)
    last = cls(4, 6, kernel_size=3, stride=2, padding=1, seed=1, dtype=np.float64,
               data_format=FORMATS[rank][1])
    assert f"data_format='{FORMATS[rank][1]}'" in repr(last)
    x = np.random.default_rng(rank).standard_normal((2, 4, *[5] * rank))
    y = first(x)
    np.testing.assert_allclose(_back(last(_to(x, rank, "last")), rank, "last"), y,
                               **TOL[np.float64])
    g = np.random.default_rng(9).standard_normal(y.shape)
    gx = first.backward(g)
    np.testing.assert_allclose(_back(last.backward(_to(g, rank, "last")), rank, "last"), gx,
                               **TOL[np.float64])
    np.testing.assert_allclose(last.weight_grad, first.weight_grad, **TOL[np.float64])
    with pytest.raises(ValueError, match="data_format must be"):
        cls(4, 6, kernel_size=3, data_format="NHWC" if rank != 2 else "NCW")


@pytest.mark.parametrize("rank", RANKS)
def test_layer_initialisation_bounds_are_pytorchs(rank):
    for cls, fan_in in ((LAYERS[rank][0], 3 * 2 ** rank), (LAYERS[rank][1], 4 * 2 ** rank)):
        layer = cls(4, 3, kernel_size=2, seed=0, dtype=np.float64)
        bound = 1 / np.sqrt(fan_in)
        assert np.abs(layer.weight).max() <= bound and np.abs(layer.bias).max() <= bound
        assert np.abs(layer.weight).max() > 0.8 * bound


# ----------------------------------------------------------------------------
# channels-last on the engine, in place


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rank", RANKS)
def test_engine_layers_in_channels_last_match_torch(rank, dtype):
    """Layers wide enough for the engine (which reads the channels-last input and writes
    the channels-last output through their strides, no copy), forward and input gradient."""
    rng = np.random.default_rng(rank)
    kw = dict(stride=2, padding=1)
    x = rng.standard_normal((2, 64, *[5, 4, 3][:rank])).astype(dtype)
    w = (rng.standard_normal((64, 32, *[4] * rank)) / 16).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    want = _torch_op("conv_transpose", rank)(_t(x), _t(w), _t(b), **kw).numpy()
    xl = _to(x, rank, "last")
    got = TRANSPOSED[rank](xl, w, b, backend="direct", data_format=FORMATS[rank][1], **kw)
    np.testing.assert_allclose(_back(got, rank, "last"), want, **TOL[dtype])
    cw = w                                   # (64, 32, ...): a conv from 32 to 64 channels
    want = _torch_op("conv", rank)(_t(want), _t(cw), None, **kw).numpy()
    got = CONV[rank](got, cw, backend="direct", data_format=FORMATS[rank][1], **kw)
    np.testing.assert_allclose(_back(got, rank, "last"), want, rtol=1e-4 if dtype ==
                               np.float32 else 1e-10, atol=1e-4 if dtype == np.float32 else 1e-10)


def test_engine_reads_and_writes_channels_last_in_place(monkeypatch):
    from convtranspose.cpu import nd_engine
    seen = []
    compute = nd_engine.conv_transpose

    def spy(x, weight, bias, stride, pads, dilation, groups, out, last, **kw):
        seen.append((x.flags.c_contiguous, out.flags.c_contiguous,
                     np.moveaxis(out, 1, -1).flags.c_contiguous))
        return compute(x, weight, bias, stride, pads, dilation, groups, out, last, **kw)

    monkeypatch.setattr(nd_engine, "conv_transpose", spy)
    x = np.zeros((1, 6, 6, 64), np.float32)
    out = np.full((1, 12, 12, 32), np.nan, np.float32)
    ct.conv_transpose2d(x, np.ones((64, 32, 4, 4), np.float32), stride=2, padding=1,
                        backend="direct", data_format="NHWC", out=out)
    assert seen == [(False, False, True)]           # the NHWC memory itself, not copies
    np.testing.assert_array_equal(out, 0)


@pytest.mark.parametrize("call", [ct.conv_transpose1d, ct.conv1d])
def test_data_format_is_checked_per_rank(call):
    with pytest.raises(ValueError, match="data_format must be 'NCW' .* or 'NWC'"):
        call(np.zeros((1, 2, 3)), np.zeros((2, 2, 1)), data_format="NHWC")


def test_channels_last_out_and_unbatched_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4, 3))                      # (H, W, C)
    w = rng.standard_normal((3, 2, 3, 3))
    want = np.moveaxis(conv_transpose_scatter(np.moveaxis(x, -1, 0), w, stride=2), 0, -1)
    out = np.empty(want.shape)
    assert ct.conv_transpose2d(x, w, stride=2, data_format="NHWC", out=out) is out
    np.testing.assert_allclose(out, want, **TOL[np.float64])
    with pytest.raises(ValueError, match=r"out must have shape"):
        ct.conv_transpose2d(x, w, stride=2, data_format="NHWC", out=np.empty((2, 11, 9)))


def test_channels_last_dask_equals_numpy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 5, 3))
    w = rng.standard_normal((3, 2, 4, 4))
    want = ct.conv_transpose2d(x, w, stride=2, padding=1, data_format="NHWC")
    lazy = ct.conv_transpose2d(da.from_array(x, chunks=(2, 3, 5, 3)), w, stride=2, padding=1,
                               data_format="NHWC")
    np.testing.assert_allclose(lazy.compute(), want, **TOL[np.float64])


# ----------------------------------------------------------------------------
# 3-D arguments and errors


def test_conv_transpose3d_out_is_written_and_returned():
    x, w = np.ones((1, 2, 2, 2, 2)), np.ones((2, 3, 2, 2, 2))
    out = np.full((1, 3, 4, 4, 4), np.nan)
    assert ct.conv_transpose3d(x, w, stride=2, out=out) is out
    np.testing.assert_array_equal(out, conv_transpose_scatter(x, w, stride=2))
    view = np.full((1, 3, 4, 4, 8), np.nan)[..., ::2]               # not contiguous
    ct.conv_transpose3d(x, w, stride=2, out=view)
    np.testing.assert_array_equal(view, out)


def test_3d_operands_of_any_layout_and_byte_order():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 3, 4, 2)).transpose(1, 0, 2, 3, 4)  # (3, 2, ...) view
    w = rng.standard_normal((2, 2, 2, 3, 2)).astype(">f8")
    want = conv_transpose_scatter(np.array(x), np.array(w, np.float64), stride=2)
    np.testing.assert_allclose(ct.conv_transpose3d(x, w, stride=2), want, **TOL[np.float64])
    x.setflags(write=False)
    np.testing.assert_allclose(ct.conv3d(x, w.transpose(1, 0, 2, 3, 4)),
                               conv_reference(np.array(x), np.array(w, np.float64)
                                              .transpose(1, 0, 2, 3, 4)), **TOL[np.float64])


@pytest.mark.parametrize("call, args, kwargs, error, message", [
    (ct.conv_transpose3d, ((1, 2, 3, 3, 3), (2, 2, 2, 2, 2)), dict(stride=(1, 2)),
     ValueError, "stride"),
    (ct.conv_transpose3d, ((1, 2, 3, 3), (2, 2, 2, 2, 2)), {}, ValueError, "x"),
    (ct.conv_transpose3d, ((1, 3, 3, 3, 3), (2, 2, 2, 2, 2)), {}, ValueError, "channels"),
    (ct.conv3d, ((1, 2, 3, 3, 3), (2, 2, 2, 2, 2)), dict(padding=-1), ValueError, "padding"),
])
def test_3d_errors_name_the_argument(call, args, kwargs, error, message):
    x, w = (np.zeros(s) for s in args)
    with pytest.raises(error, match=message):
        call(x, w, **kwargs)


def test_3d_backend_cuda_without_a_gpu_is_a_clear_error():
    if ct.cuda.is_available():
        pytest.skip("a GPU (or the simulator) is usable here")
    with pytest.raises(RuntimeError):
        ct.conv_transpose3d(np.zeros((1, 2, 3, 3, 3)), np.zeros((2, 2, 2, 2, 2)), backend="cuda")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_3d_dask_equals_numpy(layout):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(5)
    fmt = _fmt(3, layout)
    kw = dict(stride=2, padding=1, data_format=fmt)
    x = _to(rng.standard_normal((5, 4, 3, 4, 3)), 3, layout)
    w = rng.standard_normal((4, 3, 3, 3, 3))
    b = rng.standard_normal(3)
    lazy_x = da.from_array(x, chunks=(2, 2, 3, 2, 3))
    want = ct.conv_transpose3d(x, w, b, **kw)
    got = ct.conv_transpose3d(lazy_x, w, b, **kw)
    assert isinstance(got, da.Array)
    np.testing.assert_allclose(got.compute(), want, **TOL[np.float64])
    np.testing.assert_allclose(ct.conv3d(lazy_x, w.swapaxes(0, 1), b, **kw).compute(),
                               ct.conv3d(x, w.swapaxes(0, 1), b, **kw), **TOL[np.float64])
    g = rng.standard_normal(want.shape)
    lazy = ct.conv_transpose3d_backward(da.from_array(g, chunks=(3, 2, 3, 3, 2)), lazy_x, w,
                                        **kw)
    for a, e in zip(lazy, ct.conv_transpose3d_backward(g, x, w, **kw)):
        np.testing.assert_allclose(a.compute(), e, **TOL[np.float64])
    cw = w.swapaxes(0, 1)
    y = ct.conv3d(x, cw, **kw)
    gc = rng.standard_normal(y.shape)
    lazy = ct.conv3d_backward(da.from_array(gc, chunks=2), lazy_x, cw, **kw)
    for a, e in zip(lazy, ct.conv3d_backward(gc, x, cw, **kw)):
        np.testing.assert_allclose(a.compute(), e, **TOL[np.float64])
    with pytest.raises(TypeError, match="out= is not supported with Dask"):   # as in 2-D
        ct.conv_transpose3d(lazy_x, w, out=np.empty(want.shape), **kw)


def test_3d_unbatched_dask_and_layer():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 3, 3))
    layer = ct.ConvTranspose3d(2, 4, kernel_size=2, stride=2, seed=0, dtype=np.float64)
    want = layer(x)
    got = layer(da.from_array(x))
    np.testing.assert_allclose(got.compute(), want, **TOL[np.float64])
    gx = layer.backward(da.ones(want.shape))
    want_gx, want_gw, want_gb = ct.conv_transpose3d_backward(np.ones(want.shape), x,
                                                            layer.weight, stride=2)
    np.testing.assert_allclose(gx.compute(), want_gx, **TOL[np.float64])
    assert isinstance(layer.weight_grad, np.ndarray)        # reduced at backward
    np.testing.assert_allclose(layer.weight_grad, want_gw, **TOL[np.float64])
    np.testing.assert_allclose(layer.bias_grad, want_gb, **TOL[np.float64])
