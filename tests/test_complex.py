"""complex64 and complex128 (issue 26), Gauss's three-product form: every function of every rank and layout against the
float64 reference applied to the parts, PyTorch where installed, the adjoint identities of
the gradients, Inf and NaN, promotion, ``out=``, odd arrays, layers, Dask, ``explain`` and
the refusals."""

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.complexops import gauss_weight
from convtranspose.cpu.pairs import ADJOINT, gradient_parts, join, split
from convtranspose.params import DATA_FORMATS
from convtranspose.testing import call_in_layout, operand_shapes, public_function
from convtranspose.reference import (conv_backward_reference, conv_reference,
                                     conv_transpose_backward_reference, conv_transpose_reference)

C64, C128 = np.dtype(np.complex64), np.dtype(np.complex128)
UNIT = {C64: 2.0 ** -24, C128: 2.0 ** -53}

FORWARD = {rank: public_function("transposed", rank) for rank in (1, 2, 3)}
CONV = {rank: public_function("correlation", rank) for rank in (1, 2, 3)}
BACKWARD = {(op, rank): public_function(op, rank, backward=True)
            for op in ("transposed", "correlation") for rank in (1, 2, 3)}

#: (name, batch (None: unbatched), C_in, C_out, size, kernel, bias, keywords, layout of x:
#: "c" C-contiguous, "strided" a strided view, ">" big-endian, "readonly")
CASES = [
    ("plain", 2, 3, 4, 5, 3, True, {}, "c"),
    ("stride-padding", 2, 4, 2, 4, 4, False, dict(stride=2, padding=1), "c"),
    ("output-padding-dilation-groups", 1, 4, 6, 4, 3, True,
     dict(stride=2, output_padding=1, dilation=2, padding=2, groups=2), "c"),
    ("batch0", 0, 3, 2, 4, 3, True, dict(stride=2), "c"),
    ("1x1-unbatched", None, 5, 3, 4, 1, True, {}, "c"),
    ("strided-view", 2, 3, 2, 5, 2, False, dict(stride=2), "strided"),
    ("big-endian", 1, 3, 3, 4, 3, True, dict(stride=2, padding=1), ">"),
    ("read-only", 1, 2, 3, 4, 2, True, dict(stride=2), "readonly"),
]


def _complex(rng, shape, dtype):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def _arrays(case, rank, transposed, dtype, seed=0):
    """``(x channels-first, weight, bias)`` of ``case`` (x laid out as the case says)."""
    _, n, c_in, c_out, size, k, with_bias, kw, layout = case
    rng = np.random.default_rng(seed)
    x_shape, w_shape = operand_shapes(n, c_in, c_out, size, k, kw.get("groups", 1), rank,
                                      transposed)
    x = _complex(rng, x_shape, dtype)
    w = (_complex(rng, w_shape, dtype) / np.sqrt(np.prod(w_shape[1:]))).astype(dtype)
    b = _complex(rng, (c_out,), dtype) if with_bias else None
    if layout == "strided":
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == ">":
        x = x.astype(x.dtype.newbyteorder(">"))
    elif layout == "readonly":
        x.flags.writeable = False
    return x, w, b


def _keywords(case, transposed):
    kw = dict(case[7])
    if not transposed:
        kw.pop("output_padding", None)
    return kw


def _to_layout(a, rank, last):
    return np.moveaxis(a, -rank - 1, -1) if last else a


def _from_layout(a, rank, last):
    return np.moveaxis(a, -1, -rank - 1) if last else a


def _expected(x, w, b, kw, transposed):
    """The exact product from the float64 reference of the parts, and the sums the
    rounding error of Gauss's form is bounded by: ``(|xr| + |xi|) * (|wr| + |wi|)`` (for
    both parts, plus the bias's part)."""
    ref = conv_transpose_reference if transposed else conv_reference
    xr, xi, wr, wi = (np.asarray(a, np.float64) for a in (x.real, x.imag, w.real, w.imag))
    re = ref(xr, wr, **kw) - ref(xi, wi, **kw)
    im = ref(xr, wi, **kw) + ref(xi, wr, **kw)
    magnitude = ref(np.abs(xr) + np.abs(xi), np.abs(wr) + np.abs(wi), **kw)
    abs_re, abs_im = magnitude, magnitude
    if b is not None:
        shape = (-1,) + (1,) * (re.ndim - (2 if re.ndim == w.ndim else 1))
        re, im = re + b.real.reshape(shape), im + b.imag.reshape(shape)
        abs_re, abs_im = abs_re + abs(b.real).reshape(shape), abs_im + abs(b.imag).reshape(shape)
    return re + 1j * im, abs_re, abs_im


def _terms(w_shape, transposed, groups):
    """Real terms summed into one output part, and the two of ``c - a - b`` and the bias."""
    per_out = w_shape[0] // groups if transposed else w_shape[1]
    return per_out * int(np.prod(w_shape[2:])) + 3


def _check(y, ref, abs_re, abs_im, dtype, terms, what):
    u = UNIT[dtype]
    bound_re = terms * u * abs_re + np.finfo(np.float64).tiny
    bound_im = terms * u * abs_im + np.finfo(np.float64).tiny
    err_re, err_im = np.abs(y.real - ref.real), np.abs(y.imag - ref.imag)
    assert (err_re <= bound_re).all() and (err_im <= bound_im).all(), (
        f"{what}: worst error / bound {max((err_re / bound_re).max(initial=0), (err_im / bound_im).max(initial=0)):.3g}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", ["complex64", "complex128"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("last", [False, True], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_forward_within_the_bound_of_gauss_form(rank, last, op, dtype, case):
    transposed = op == "transposed"
    dt = np.dtype(dtype)
    x, w, b = _arrays(case, rank, transposed, dt)
    kw = _keywords(case, transposed)
    fn = FORWARD[rank] if transposed else CONV[rank]
    y = call_in_layout(fn, x, w, b, DATA_FORMATS[rank][last], rank, case[8] == "c", **kw)
    ref, abs_re, abs_im = _expected(x, w, b, kw, transposed)
    assert y.dtype == dt
    assert y.shape == _to_layout(ref, rank, last).shape
    assert y.flags.c_contiguous
    _check(_from_layout(y, rank, last), ref, abs_re, abs_im, dt,
           _terms(w.shape, transposed, kw.get("groups", 1)), f"{op} {rank}-D {dtype}")


@pytest.mark.parametrize("backend", ["direct", "im2col"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
def test_every_cpu_backend(op, backend):
    transposed = op == "transposed"
    x, w, b = _arrays(CASES[2], 2, transposed, C128)
    kw = _keywords(CASES[2], transposed)
    y = (FORWARD if transposed else CONV)[2](x, w, b, backend=backend, **kw)
    ref, abs_re, abs_im = _expected(x, w, b, kw, transposed)
    _check(y, ref, abs_re, abs_im, C128, _terms(w.shape, transposed, 2), backend)


def test_gauss_form_by_hand():
    """x = 1 + 2j through w = 3 + 4j: a = 3, b = 8, c = 3 * 7 = 21, so -5 + 10j."""
    w = np.array([[[3 + 4j]]])
    assert np.array_equal(gauss_weight(w, C128)[:, 0, 0], [3, 4, 7])
    x = np.array([[[1 + 2j]]])
    assert ct.conv_transpose1d(x, w)[0, 0, 0] == -5 + 10j
    assert ct.conv1d(x, w)[0, 0, 0] == -5 + 10j
    assert ct.conv1d(x, w, np.array([1 - 1j]))[0, 0, 0] == -4 + 9j


# ----------------------------------------------------------------------------
# gradients: adjoint identities, the convention, and PyTorch


def _inner(a, b):
    """``<a, b> = sum(conj(a) * b)`` in complex128."""
    return np.vdot(np.asarray(a, C128).ravel(), np.asarray(b, C128).ravel())


@pytest.mark.parametrize("last", [False, True], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_gradients_are_the_adjoints(rank, op, last):
    """``<g, A x> = <grad_input, x>`` and ``<g, A(w) x> = <grad_weight, w>`` (the map is
    linear in each), and ``grad_bias`` sums ``g``: PyTorch's convention for a real loss;
    and the complex reference's gradients (NumPy's complex products with the conjugates)."""
    transposed = op == "transposed"
    case = CASES[2]
    x, w, b = _arrays(case, rank, transposed, C128)
    kw = _keywords(case, transposed)
    fmt = DATA_FORMATS[rank][last]
    fn = FORWARD[rank] if transposed else CONV[rank]
    xl = np.ascontiguousarray(_to_layout(x, rank, last))
    y = fn(xl, w, None, data_format=fmt, **kw)
    g = _complex(np.random.default_rng(1), y.shape, C128)
    gi, gw, gb = BACKWARD[op, rank](g, xl, w, data_format=fmt, **kw)
    assert gi.shape == xl.shape and gw.shape == w.shape and gb.shape == b.shape
    assert gi.dtype == gw.dtype == gb.dtype == C128
    scale = np.abs(g).sum() * np.abs(y).max()
    assert abs(_inner(g, y) - _inner(gi, xl)) <= 1e-12 * scale
    assert abs(_inner(g, y) - _inner(gw, w)) <= 1e-12 * scale
    np.testing.assert_allclose(gb, _from_layout(g, rank, last).sum(
        axis=tuple(i for i in range(g.ndim) if i != g.ndim - rank - 1)), rtol=1e-12)
    ref = conv_transpose_backward_reference if transposed else conv_backward_reference
    want = ref(_from_layout(g, rank, last), x, w, **kw)
    for got, expected in zip((_from_layout(gi, rank, last), gw, gb), want):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_forward_and_gradients_against_pytorch(rank, op):
    torch = pytest.importorskip("torch")
    transposed = op == "transposed"
    case = CASES[2]
    x, w, b = _arrays(case, rank, transposed, C64)
    kw = _keywords(case, transposed)
    name = f"conv_transpose{rank}d" if transposed else f"conv{rank}d"
    tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    ty = getattr(torch.nn.functional, name)(tx, tw, tb, **kw)
    g = _complex(np.random.default_rng(2), tuple(ty.shape), C64)
    ty.backward(torch.from_numpy(g))
    y = getattr(ct, name)(x, w, b, **kw)
    grads = BACKWARD[op, rank](g, x, w, **kw)
    for got, want in zip((y, *grads), (ty, tx.grad, tw.grad, tb.grad)):
        want = want.detach().numpy()
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())


# ----------------------------------------------------------------------------
# Inf and NaN


def _category(a):
    """0 finite, 1 +Inf, 2 -Inf, 3 NaN, per part."""
    return np.select([np.isnan(a), np.isposinf(a), np.isneginf(a)], [3, 1, 2], 0)


def _sprinkle(rng, a):
    flat = a.reshape(-1)
    for _ in range(2):
        i = rng.integers(flat.size)
        v = rng.choice([np.inf, -np.inf, np.nan])
        flat[i] = complex(v, flat[i].imag) if rng.random() < 0.5 else complex(flat[i].real, v)


NAN_CASE = ("one-image", 1, 3, 4, 5, 3, True, {}, "c")


@pytest.mark.parametrize("where", ["x", "weight", "bias"])
@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2])
def test_inf_and_nan_land_where_pytorch_puts_them(rank, op, where):
    """The forward's placement, part by part; the gradients' non-finite elements (one
    image: PyTorch 2.13's weight gradient keeps some products of cropped padding finite
    for batches of two or more, and NaN for one, which the real functions follow)."""
    torch = pytest.importorskip("torch")
    transposed = op == "transposed"
    rng = np.random.default_rng(3)
    name = f"conv_transpose{rank}d" if transposed else f"conv{rank}d"
    kw = dict(stride=2, padding=1)
    for trial in range(12):
        x, w, b = _arrays(NAN_CASE, rank, transposed, C64, seed=trial)
        _sprinkle(rng, dict(x=x, weight=w, bias=b)[where])
        with np.errstate(all="ignore"):
            tx, tw = torch.from_numpy(x).requires_grad_(), torch.from_numpy(w).requires_grad_()
            ty = getattr(torch.nn.functional, name)(tx, tw, torch.from_numpy(b), **kw)
            g = np.ones(tuple(ty.shape), C64)
            ty.backward(torch.from_numpy(g))
            y = getattr(ct, name)(x, w, b, **kw)
            gi, gw, _ = BACKWARD[op, rank](g, x, w, **kw)
        want = ty.detach().numpy()
        np.testing.assert_array_equal(_category(y.real), _category(want.real))
        np.testing.assert_array_equal(_category(y.imag), _category(want.imag))
        np.testing.assert_array_equal(np.isfinite(gi), np.isfinite(tx.grad.numpy()))
        np.testing.assert_array_equal(np.isfinite(gw), np.isfinite(tw.grad.numpy()))


def test_a_nonfinite_element_is_nan_in_both_parts():
    """Hand cases: (inf + 0j)(1 + 0j) gives a = inf, b = 0, c = inf, so Re = inf and
    Im = inf - inf: NaN, and PyTorch makes both parts NaN."""
    x = np.array([[[complex(np.inf, 0), 1 + 1j]]], C64)
    w = np.array([[[1 + 0j]]], C64)
    y = ct.conv_transpose1d(x, w)
    assert np.isnan(y[0, 0, 0].real) and np.isnan(y[0, 0, 0].imag)
    assert y[0, 0, 1] == 1 + 1j
    assert np.isnan(join(np.array([[np.inf], [0.0], [0.0]]), 0, C128)).all()
    assert np.isnan(join(np.array([[0.0], [0.0], [np.nan]]), 0, C128, mode=ADJOINT)).all()
    # the gradients' parts: Re = g0 + g2, Im = g1 + g2 (a bias's Im = g2), non-finite NaN
    g3 = np.array([1.0, 2.0, np.inf, 10.0, 20.0, 30.0, 100.0, 200.0, -np.inf])
    out = np.empty(3, C128)
    gradient_parts(g3, out.view(np.float64), False)
    assert out[0] == 101 + 110j and out[1] == 202 + 220j
    assert np.isnan(out[2].real) and np.isnan(out[2].imag)      # inf - inf, and -inf
    gradient_parts(g3[:6], out[:2].view(np.float64), True)      # blocks [1, 2] [inf, 10]
    assert out[0] == 21 + 20j and out[1] == 32 + 30j             # [20, 30]: g1 unused


def test_the_passes_take_odd_layouts_and_bytes_orders():
    a = np.arange(24.0).reshape(2, 3, 4) + 1j
    for odd in (a.astype(">c16"), a[:, ::-1], np.asfortranarray(a)):
        got = split(odd, 1, C128)
        np.testing.assert_array_equal(got[:, :3], odd.real)
        np.testing.assert_array_equal(got[:, 6:], odd.real + odd.imag)
        np.testing.assert_array_equal(join(np.concatenate([odd.real, 0 * odd.real, odd.real],
                                                          axis=1), 1, C128), odd.real + 0j)


# ----------------------------------------------------------------------------
# dtypes, out=, layers, Dask, explain, refusals


@pytest.mark.parametrize("dtypes, expected", [
    ((C64, np.float64), C128),
    ((np.float32, C64), C64),
    ((np.float16, C64), C64),
    ((C64, C128), C128),
])
def test_promotion(dtypes, expected):
    rng = np.random.default_rng(4)
    x = np.asarray(_complex(rng, (1, 2, 3, 3), C128)).astype(dtypes[0]) \
        if np.dtype(dtypes[0]).kind == "c" else rng.standard_normal((1, 2, 3, 3)).astype(dtypes[0])
    w = np.asarray(_complex(rng, (2, 2, 2, 2), C128)).astype(dtypes[1]) \
        if np.dtype(dtypes[1]).kind == "c" else rng.standard_normal((2, 2, 2, 2)).astype(dtypes[1])
    y = ct.conv_transpose2d(x, w, stride=2)
    assert y.dtype == expected
    ref, abs_re, abs_im = _expected(x.astype(C128), w.astype(C128), None, dict(stride=2), True)
    _check(y, ref, abs_re, abs_im, np.dtype(np.complex64), _terms(w.shape, True, 1), "promotion")


@pytest.mark.parametrize("last", [False, True], ids=["channels-first", "channels-last"])
@pytest.mark.parametrize("contiguous", [True, False])
def test_out(last, contiguous):
    x, w, b = _arrays(CASES[1], 2, True, C64)
    fmt = DATA_FORMATS[2][last]
    xl = np.ascontiguousarray(_to_layout(x, 2, last))
    want = ct.conv_transpose2d(xl, w, b, stride=2, padding=1, data_format=fmt)
    big = np.zeros(want.shape[:-1] + (2 * want.shape[-1],), C64)
    out = np.zeros_like(want) if contiguous else big[..., ::2]
    got = ct.conv_transpose2d(xl, w, b, stride=2, padding=1, data_format=fmt, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    with pytest.raises(ValueError, match="out must have dtype complex64, got complex128"):
        ct.conv_transpose2d(xl, w, b, stride=2, padding=1, data_format=fmt,
                            out=np.zeros(want.shape, C128))


def test_layers_take_complex_parameters():
    torch = pytest.importorskip("torch")
    layer = ct.ConvTranspose2d(2, 3, 2, stride=2, dtype=np.complex64, seed=0)
    assert layer.weight.dtype == layer.bias.dtype == C64
    bound = 1 / np.sqrt(3 * 4)
    assert np.abs(layer.weight.real).max() <= bound and np.abs(layer.weight.imag).max() > 0
    x = _complex(np.random.default_rng(5), (2, 2, 3, 3), C64)
    y = layer(x)
    gx = layer.backward(np.ones_like(y))
    t = torch.nn.ConvTranspose2d(2, 3, 2, stride=2, dtype=torch.complex64)
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(layer.weight))
        t.bias.copy_(torch.from_numpy(layer.bias))
    tx = torch.from_numpy(x).requires_grad_()
    ty = t(tx)
    ty.backward(torch.ones_like(ty))
    np.testing.assert_allclose(y, ty.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(gx, tx.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(layer.weight_grad, t.weight.grad.numpy(), atol=1e-4)


@pytest.mark.parametrize("op", ["transposed", "correlation"])
@pytest.mark.parametrize("rank", [1, 2, 3])
def test_dask_chunks(rank, op):
    da = pytest.importorskip("dask.array")
    transposed = op == "transposed"
    x, w, b = _arrays(CASES[1], rank, transposed, C128)
    kw = _keywords(CASES[1], transposed)
    fn = FORWARD[rank] if transposed else CONV[rank]
    want = fn(x, w, None, **kw)
    lazy = fn(da.from_array(x, chunks=(1, -1) + (2,) * rank if rank < 3 else (1,) + (-1,) * (rank + 1)),
              w, None, **kw)
    assert isinstance(lazy, da.Array) and lazy.dtype == C128
    np.testing.assert_allclose(lazy.compute(), want, rtol=1e-12, atol=1e-12)
    g = _complex(np.random.default_rng(6), want.shape, C128)
    eager = BACKWARD[op, rank](g, x, w, **kw)
    grads = BACKWARD[op, rank](da.from_array(g, chunks=(1,) + (-1,) * (rank + 1)),
                               da.from_array(x, chunks=(1,) + (-1,) * (rank + 1)), w, **kw)
    for got, want_ in zip(grads, eager):
        np.testing.assert_allclose(got.compute(), want_, rtol=1e-12, atol=1e-12)


def test_explain_describes_the_real_call():
    x, w, b = _arrays(CASES[0], 2, True, C64)
    choice = ct.explain(x, w, b)
    assert choice.reason.startswith("complex (x is complex64, weight is complex64, bias is "
                                    "complex64) runs as three real convolutions")
    assert choice.flops == 3 * ct.explain(x.real, w.real, b.real).flops


@pytest.mark.parametrize("call", [
    lambda x, w: ct.conv_transpose2d(x, w, backend="cuda"),
    lambda x, w: ct.conv2d(x, w.transpose(1, 0, 2, 3), backend="cuda"),
    lambda x, w: ct.conv_transpose2d_backward(ct.conv_transpose2d(x, w), x, w, backend="cuda"),
    lambda x, w: ct.explain(x, w, backend="cuda"),
], ids=["conv_transpose2d", "conv2d", "backward", "explain"])
def test_cuda_refuses_complex(call):
    x, w, _ = _arrays(CASES[0], 2, True, C64)
    with pytest.raises(TypeError, match="complex operands run on the CPU only"):
        call(x, w)


def test_errors_name_the_argument_in_the_callers_terms():
    x, w, _ = _arrays(CASES[0], 2, True, C64)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 4, 7, 7\)"):
        ct.conv_transpose2d(x, w, out=np.zeros((2, 4, 8, 8), C64))
    xl = np.ascontiguousarray(_to_layout(x, 2, True))
    with pytest.raises(ValueError, match="weight"):
        ct.conv_transpose2d(xl, w[:2], data_format="NHWC")
    with pytest.raises(TypeError, match="complex64 or complex128, got dtype complex(256|192)"):
        ct.conv_transpose2d(x, w.astype(np.clongdouble))
    with pytest.raises(TypeError, match="^dtype is complex64: complex arrays are taken by the "
                                        "functions"):
        ct.params.check_dtype(np.complex64, "dtype")
