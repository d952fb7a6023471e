"""The 1-D operations and layers (thin wrappers over the 2-D path on unit-height views)
against PyTorch (float64 to 1e-10, float32 to 1e-5) and the rank-1 float64 references,
on every CPU backend; their errors name the 1-D arguments; ``out=`` is written in place;
Dask input gives the NumPy answer."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import (conv_backward_reference, conv_reference,
                                     conv_transpose_backward_reference, conv_transpose_scatter)

BACKENDS = ["direct", "im2col", "auto"]
DTYPES = [np.float64, np.float32]
TOL = {np.float64: dict(rtol=1e-10, atol=1e-10), np.float32: dict(rtol=1e-5, atol=1e-5)}
SEEDS = range(6)


def _torch():
    return pytest.importorskip("torch")


def _problem(rng, transposed, dtype):
    """Random valid 1-D arguments: ``(x, w, b, kwargs)``; kwargs as PyTorch takes them
    (symmetric int padding); a batch of 0 and unbatched input among them."""
    while True:
        groups = int(rng.integers(1, 3))
        c_in, c_out = groups * int(rng.integers(1, 4)), groups * int(rng.integers(1, 4))
        k, s, d = (int(v) for v in rng.integers(1, [5, 4, 3]))
        p = int(rng.integers(0, d * (k - 1) // 2 + 1))
        length = int(rng.integers(1, 8))
        if transposed:
            op = int(rng.integers(0, max(s, d)))
            size = (length - 1) * s - 2 * p + d * (k - 1) + op + 1
            kwargs = dict(stride=s, padding=p, output_padding=op, groups=groups, dilation=d)
            w_shape = (c_in, c_out // groups, k)
        else:
            size = (length + 2 * p - d * (k - 1) - 1) // s + 1
            kwargs = dict(stride=s, padding=p, dilation=d, groups=groups)
            w_shape = (c_out, c_in // groups, k)
        if size >= 1:
            break
    n = int(rng.choice([0, 1, 2, 3]))
    x_shape = (c_in, length) if rng.random() < 0.25 else (n, c_in, length)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if rng.random() < 0.7 else None
    return x, w, b, kwargs


def _t(a):
    torch = _torch()
    return None if a is None else torch.from_numpy(np.ascontiguousarray(a))


# ----------------------------------------------------------------------------
# forward against PyTorch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose1d_matches_torch(seed, backend, dtype):
    torch = _torch()
    x, w, b, kw = _problem(np.random.default_rng(seed), True, dtype)
    want = torch.nn.functional.conv_transpose1d(_t(x), _t(w), _t(b), **kw).numpy()
    got = ct.conv_transpose1d(x, w, b, backend=backend, **kw)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv1d_matches_torch(seed, backend, dtype):
    torch = _torch()
    x, w, b, kw = _problem(np.random.default_rng(100 + seed), False, dtype)
    want = torch.nn.functional.conv1d(_t(x), _t(w), _t(b), **kw).numpy()
    got = ct.conv1d(x, w, b, backend=backend, **kw)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, **TOL[dtype])


# ----------------------------------------------------------------------------
# gradients against PyTorch


def _torch_grads(g, x, w, kw, transposed, has_bias):
    torch = _torch()
    unbatched = x.ndim == 2
    gt, xt = _t(g[None] if unbatched else g), _t(x[None] if unbatched else x)
    op = (kw["output_padding"],) if transposed else (0,)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        gt, xt, _t(w), [w.shape[1] * kw["groups"] if transposed else w.shape[0]],
        [kw["stride"]], [kw["padding"]], [kw["dilation"]], transposed, list(op), kw["groups"],
        [True, True, has_bias])
    gx = gx.numpy()
    return gx[0] if unbatched else gx, gw.numpy(), None if gb is None else gb.numpy()


def _check_grads(got, want, dtype):
    for a, e in zip(got, want):
        if e is None:
            assert a is None
            continue
        assert a.shape == e.shape and a.dtype == dtype
        np.testing.assert_allclose(a, e, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv_transpose1d_backward_matches_torch(seed, backend, dtype):
    rng = np.random.default_rng(200 + seed)
    x, w, b, kw = _problem(rng, True, dtype)
    g = rng.standard_normal(ct.conv_transpose1d(x, w, **kw).shape).astype(dtype)
    want = _torch_grads(g, x, w, kw, True, b is not None)
    got = ct.conv_transpose1d_backward(g, x, w, needs_bias_grad=b is not None,
                                       backend=backend, **kw)
    _check_grads(got, want, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", SEEDS)
def test_conv1d_backward_matches_torch(seed, backend, dtype):
    rng = np.random.default_rng(300 + seed)
    x, w, b, kw = _problem(rng, False, dtype)
    g = rng.standard_normal(ct.conv1d(x, w, **kw).shape).astype(dtype)
    want = _torch_grads(g, x, w, kw, False, b is not None)
    got = ct.conv1d_backward(g, x, w, needs_bias_grad=b is not None, backend=backend, **kw)
    _check_grads(got, want, dtype)


# ----------------------------------------------------------------------------
# asymmetric padding, 'same' and output_size against the rank-1 references

PADDINGS = [((0, 2),), ((2, 1),), ((3, 0),), (1,), "same", "valid"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_conv_transpose1d_padding_matches_reference(padding, backend, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 4, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, 4)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    kw = dict(stride=3, padding=padding, groups=2, dilation=2)
    want = conv_transpose_scatter(x, w, b, rank=1, **kw)
    got = ct.conv_transpose1d(x, w, b, backend=backend, **kw)
    if padding == "same":
        assert got.shape[-1] == 9 * 3
    np.testing.assert_allclose(got, want, **TOL[dtype])
    g = rng.standard_normal(got.shape).astype(dtype)
    _check_grads(ct.conv_transpose1d_backward(g, x, w, backend=backend, **kw),
                 conv_transpose_backward_reference(g, x, w, rank=1, **kw), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("padding", PADDINGS, ids=str)
def test_conv1d_padding_matches_reference(padding, backend, dtype):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 10)).astype(dtype)        # unbatched
    w = rng.standard_normal((6, 2, 4)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    kw = dict(stride=1 if padding == "same" else 2, padding=padding, groups=2, dilation=1)
    want = conv_reference(x, w, b, rank=1, **kw)
    got = ct.conv1d(x, w, b, backend=backend, **kw)
    if padding == "same":
        assert got.shape == (6, 10)
    np.testing.assert_allclose(got, want, **TOL[dtype])
    g = rng.standard_normal(got.shape).astype(dtype)
    _check_grads(ct.conv1d_backward(g, x, w, backend=backend, **kw),
                 conv_backward_reference(g, x, w, rank=1, **kw), dtype)


@pytest.mark.parametrize("output_size", [(13,), (14,), (1, 3, 15)])
def test_conv_transpose1d_output_size(output_size):
    torch = _torch()
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((1, 2, 5)), rng.standard_normal((2, 3, 3))
    got = ct.conv_transpose1d(x, w, stride=3, padding=1, output_size=output_size)
    layer = torch.nn.ConvTranspose1d(2, 3, 3, stride=3, padding=1, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(_t(w))
        want = layer(_t(x), output_size=list(output_size)).numpy()
    assert got.shape[-1] == output_size[-1]
    np.testing.assert_allclose(got, want, **TOL[np.float64])


# ----------------------------------------------------------------------------
# views, out= and other array kinds


def test_out_is_written_in_place_and_returned():
    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((2, 3, 6)), rng.standard_normal((3, 4, 3))
    out = np.full((2, 4, 13), np.nan)
    got = ct.conv_transpose1d(x, w, stride=2, out=out)
    assert got is out and np.shares_memory(got, out)
    np.testing.assert_allclose(out, conv_transpose_scatter(x, w, stride=2), **TOL[np.float64])


def test_result_is_a_view_of_the_2d_result_not_a_copy():
    """The 1-D result is the 2-D call's array viewed back: no copy of it is made."""
    rng = np.random.default_rng(11)
    y = ct.conv_transpose1d(rng.standard_normal((2, 3, 6)), rng.standard_normal((3, 4, 3)))
    assert y.base is not None and y.base.shape == (2, 4, 1, 8)
    z = ct.conv1d(rng.standard_normal((3, 6)), rng.standard_normal((4, 3, 3)))
    assert z.base is not None and z.base.shape == (4, 1, 4)


@pytest.mark.parametrize("shape, dtype, error", [((2, 4, 12), np.float64, ValueError),
                                                 ((2, 4, 13), np.float32, ValueError)])
def test_out_of_wrong_shape_or_dtype_names_the_1d_shape(shape, dtype, error):
    x, w = np.zeros((2, 3, 6)), np.zeros((3, 4, 3))
    with pytest.raises(error, match=r"out must have (shape \(2, 4, 13\)|dtype float64)"):
        ct.conv_transpose1d(x, w, stride=2, out=np.zeros(shape, dtype))


def test_nested_lists_and_torch_tensors():
    want = conv_transpose_scatter(np.array([[[1.0, 2.0]]]), np.ones((1, 1, 3)), stride=2)
    np.testing.assert_array_equal(
        ct.conv_transpose1d([[[1.0, 2.0]]], [[[1.0, 1.0, 1.0]]], stride=2), want)
    torch = _torch()
    got = ct.conv1d(torch.ones(1, 1, 4, dtype=torch.float64), torch.ones(1, 1, 2,
                                                                        dtype=torch.float64))
    np.testing.assert_array_equal(got, [[[2.0, 2.0, 2.0]]])


def test_an_object_without_reshape_is_a_clear_type_error():
    class Device:
        __cuda_array_interface__ = {"shape": (1, 1, 4), "typestr": "<f4", "version": 3,
                                    "data": (0, False)}
        shape = (1, 1, 4)

    with pytest.raises(TypeError, match="x is a Device without a reshape method"):
        ct.conv1d(Device(), np.ones((1, 1, 2), np.float32))


def test_dask_input_equals_numpy():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(12)
    x, w = rng.standard_normal((4, 3, 20)), rng.standard_normal((3, 2, 4))
    b = rng.standard_normal(2)
    xd = da.from_array(x, chunks=(2, 3, 7))
    y = ct.conv_transpose1d(xd, w, b, stride=2, padding=((1, 2),))
    assert isinstance(y, da.Array)
    want = ct.conv_transpose1d(x, w, b, stride=2, padding=((1, 2),))
    np.testing.assert_allclose(y.compute(), want, **TOL[np.float64])
    wc = rng.standard_normal((5, 3, 3))
    z = ct.conv1d(xd, wc, stride=2, padding=1)
    assert isinstance(z, da.Array)
    np.testing.assert_allclose(z.compute(), ct.conv1d(x, wc, stride=2, padding=1),
                               **TOL[np.float64])
    g = rng.standard_normal(want.shape)
    lazy = ct.conv_transpose1d_backward(da.from_array(g, chunks=(2, 2, 9)), xd, w, stride=2,
                                        padding=((1, 2),))
    eager = ct.conv_transpose1d_backward(g, x, w, stride=2, padding=((1, 2),))
    for a, e in zip(lazy, eager):
        np.testing.assert_allclose(np.asarray(a), e, **TOL[np.float64])


# ----------------------------------------------------------------------------
# errors name the 1-D arguments


@pytest.mark.parametrize("call, kwargs, error, message", [
    ("conv_transpose1d", dict(stride=(1, 2)), ValueError,
     r"stride must be an int or a tuple of 1 int for a 1-D convolution, got \(1, 2\)"),
    ("conv_transpose1d", dict(dilation=(1, 1)), ValueError,
     "dilation must be an int or a tuple of 1 int for a 1-D convolution"),
    ("conv_transpose1d", dict(output_padding=(0, 0)), ValueError,
     "output_padding must be an int or a tuple of 1 int for a 1-D convolution"),
    ("conv_transpose1d", dict(padding=((0, 1), (1, 0))), ValueError,
     "padding must be an int, a tuple of 1 int or 1 .before, after. pair for a 1-D"),
    ("conv1d", dict(padding=(1, 0)), ValueError,
     r"padding must be an int, a tuple of 1 int or 1 .before, after. pair .*got \(1, 0\)"),
    ("conv_transpose1d", dict(stride=2.0), TypeError, "stride must be an int"),
    ("conv_transpose1d", dict(output_padding=2, stride=2), ValueError,
     "output_padding .2,. must be smaller than stride or dilation"),
    ("conv_transpose1d", dict(output_size=(30,)), ValueError,
     r"output_size \(30,\) cannot be reached"),
    ("conv1d", dict(stride=(2, 2)), ValueError,
     "stride must be an int or a tuple of 1 int for a 1-D convolution"),
    ("conv1d", dict(padding="same", stride=2), ValueError, "padding='same' needs stride 1"),
    ("conv1d", dict(padding="full"), ValueError, "padding must be 'valid', 'same'"),
])
def test_errors_name_the_1d_argument(call, kwargs, error, message):
    x = np.zeros((1, 2, 5))
    w = np.zeros((2, 2, 3))
    with pytest.raises(error, match=message):
        getattr(ct, call)(x, w, **kwargs)


def test_shape_errors_speak_of_1d_layouts():
    with pytest.raises(ValueError, match=r"weight must be 3-D \(C_in, C_out // groups, kW\)"):
        ct.conv_transpose1d(np.zeros((1, 2, 5)), np.zeros((2, 2, 1, 3)))
    with pytest.raises(ValueError, match=r"x must be 2-D \(C_in, W\) or 3-D \(N, C_in, W\)"):
        ct.conv1d(np.zeros((1, 2, 1, 5)), np.zeros((2, 2, 3)))
    with pytest.raises(TypeError, match="x must be float16, bfloat16, float32, float64, complex64 or complex128"):
        ct.conv1d(np.zeros((1, 2, 5), np.int64), np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"grad_output must have the forward result's shape"):
        ct.conv_transpose1d_backward(np.zeros((1, 2, 6)), np.zeros((1, 2, 5)),
                                     np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"grad_output must have the forward result's shape"):
        ct.conv1d_backward(np.zeros((1, 2, 4)), np.zeros((1, 2, 5)), np.zeros((2, 2, 3)))


# ----------------------------------------------------------------------------
# the layers


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_conv_transpose1d_layer_matches_torch(bias, dtype):
    torch = _torch()
    ours = ct.ConvTranspose1d(4, 6, kernel_size=3, stride=2, padding=1, output_padding=1,
                              groups=2, bias=bias, dilation=2, dtype=dtype, seed=0)
    assert ours.weight.shape == (4, 3, 3) and ours.weight.dtype == dtype
    theirs = torch.nn.ConvTranspose1d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                      groups=2, bias=bias, dilation=2).to(_t(ours.weight).dtype)
    with torch.no_grad():
        theirs.weight.copy_(_t(ours.weight))
        if bias:
            theirs.bias.copy_(_t(ours.bias))
    x = np.random.default_rng(13).standard_normal((2, 4, 7)).astype(dtype)
    xt = _t(x).requires_grad_(True)
    yt = theirs(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    g = np.random.default_rng(14).standard_normal(y.shape).astype(dtype)
    yt.backward(_t(g))
    np.testing.assert_allclose(ours.backward(g), xt.grad.numpy(), **TOL[dtype])
    assert ours.weight_grad.shape == (4, 3, 3)
    np.testing.assert_allclose(ours.weight_grad, theirs.weight.grad.numpy(), **TOL[dtype])
    if bias:
        np.testing.assert_allclose(ours.bias_grad, theirs.bias.grad.numpy(), **TOL[dtype])
    else:
        assert ours.bias is None and ours.gradients() == [ours.weight_grad]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding", [1, "same", ((2, 0),)], ids=str)
def test_conv1d_layer_matches_torch(padding, dtype):
    torch = _torch()
    ours = ct.Conv1d(4, 6, kernel_size=4, padding=padding, groups=2, dtype=dtype, seed=1)
    assert ours.weight.shape == (6, 2, 4)
    torch_padding = padding if not isinstance(padding, tuple) else 0
    theirs = torch.nn.Conv1d(4, 6, 4, padding=torch_padding, groups=2).to(
        _t(ours.weight).dtype)
    with torch.no_grad():
        theirs.weight.copy_(_t(ours.weight))
        theirs.bias.copy_(_t(ours.bias))
    x = np.random.default_rng(15).standard_normal((3, 4, 9)).astype(dtype)
    # torch cannot pad asymmetrically: pad its input by hand
    xt = _t(np.pad(x, [(0, 0), (0, 0), (2, 0)]) if isinstance(padding, tuple) else x)
    xt.requires_grad_(True)
    yt = theirs(xt)
    y = ours(x)
    np.testing.assert_allclose(y, yt.detach().numpy(), **TOL[dtype])
    g = np.random.default_rng(16).standard_normal(y.shape).astype(dtype)
    yt.backward(_t(g))
    gx = xt.grad.numpy()[..., 2:] if isinstance(padding, tuple) else xt.grad.numpy()
    np.testing.assert_allclose(ours.backward(g), gx, **TOL[dtype])
    np.testing.assert_allclose(ours.weight_grad, theirs.weight.grad.numpy(), **TOL[dtype])
    np.testing.assert_allclose(ours.bias_grad, theirs.bias.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("cls, shape, fan_in", [
    (ct.ConvTranspose1d, (8, 3, 5), 3 * 5),     # (C_in, C_out // g, k): fan-in C_out/g * k
    (ct.Conv1d, (6, 4, 5), 4 * 5),              # (C_out, C_in // g, k): fan-in C_in/g * k
])
def test_layer_initialisation_is_pytorchs(cls, shape, fan_in):
    layer = cls(8, 6, kernel_size=5, groups=2, seed=3) if cls is ct.ConvTranspose1d else \
        cls(8, 6, kernel_size=(5,), groups=2, seed=3)
    assert layer.weight.shape == shape and layer.bias.shape == (6,)
    bound = 1 / np.sqrt(fan_in)
    for a in (layer.weight, layer.bias):
        assert np.abs(a).max() <= bound
    assert np.abs(layer.weight).max() > 0.8 * bound     # uniform over the whole range
    assert layer.kernel_size == (5,) and layer.stride == (1,) and layer.dilation == (1,)


def test_layer_weight_updates_in_place_change_the_next_call():
    layer = ct.ConvTranspose1d(2, 2, kernel_size=3, stride=2, dtype=np.float64, seed=0)
    x = np.random.default_rng(17).standard_normal((1, 2, 4))
    layer.weight[...] = 0.0
    layer.weight[0, 1, 2] = 1.0
    y = layer(x)
    want = conv_transpose_scatter(x, layer.weight, layer.bias, stride=2)
    np.testing.assert_allclose(y, want, **TOL[np.float64])
    layer.weight *= 2
    np.testing.assert_allclose(layer(x) - layer.bias[:, None],
                               2 * (want - layer.bias[:, None]), **TOL[np.float64])
    conv = ct.Conv1d(2, 1, kernel_size=2, bias=False, dtype=np.float64)
    conv.weight[...] = 1.0
    np.testing.assert_allclose(conv(np.ones((2, 5))), np.full((1, 4), 4.0))


def test_layer_errors_name_the_1d_arguments():
    with pytest.raises(ValueError, match="kernel_size must be an int or a tuple of 1 int"):
        ct.ConvTranspose1d(2, 2, kernel_size=(3, 3))
    with pytest.raises(ValueError, match="stride must be an int or a tuple of 1 int"):
        ct.Conv1d(2, 2, kernel_size=3, stride=(1, 1))
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        ct.Conv1d(2, 2, kernel_size=3, stride=2, padding="same")
    with pytest.raises(ValueError, match="out_channels must be a positive multiple of groups"):
        ct.ConvTranspose1d(2, 3, kernel_size=3, groups=2)
    with pytest.raises(RuntimeError, match="backward.. needs a forward"):
        ct.Conv1d(1, 1, 2).backward(np.zeros((1, 1, 3)))
    assert repr(ct.Conv1d(1, 2, 3)).startswith("Conv1d(1, 2, kernel_size=(3,)")
    assert repr(ct.ConvTranspose1d(1, 2, 3)).startswith("ConvTranspose1d(1, 2, kernel_size=(3,)")


@pytest.mark.parametrize("stride", [1, 2])
def test_long_rows_in_bands_match_the_reference_and_one_band(stride):
    """The gather correlation cuts a row longer than 1024 columns into bands that run in
    parallel: the same values as the reference, and the same bits as the same columns in
    another band (the signal shifted) and as each image alone."""
    from convtranspose.cpu import backward
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 4 * 700 + 9))
    w = rng.standard_normal((2, 3, 7))
    b = rng.standard_normal(2)
    got = ct.conv1d(x, w, b, stride=stride, padding=3, backend="direct")
    assert got.shape[-1] > backward._BAND
    want = conv_reference(x, w, b, stride=stride, padding=3, rank=1)
    np.testing.assert_allclose(got, want, **TOL[np.float64])
    # each output column's terms are added in the same order whatever the band
    # (columns 1100..1900 lie in the second band; shifted by 1000 they lie in the first)
    shifted = ct.conv1d(x[..., 1000 * stride:], w, b, stride=stride, padding=3,
                        backend="direct")
    np.testing.assert_array_equal(got[..., 1100:1900], shifted[..., 100:900])
    single = np.stack([ct.conv1d(x[i:i + 1, :, :], w, b, stride=stride, padding=3,
                                 backend="direct")[0] for i in range(2)])
    np.testing.assert_array_equal(got, single)
