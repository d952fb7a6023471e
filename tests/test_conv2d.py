"""conv2d, conv2d_backward and the Conv2d layer: against torch.nn.functional.conv2d and its
autograd, the float64 references and central finite differences."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.params import _as_padding
from convtranspose.reference import conv2d_backward_reference, conv2d_reference
from convtranspose.testing import assert_close, random_problem, relative_error

TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
METHODS = ["direct", "im2col", "auto"]


def conv_problem(rng, dtype, seed, **limits):
    """The adjoint of a random transposed-convolution problem: a conv2d problem over the
    same grid of strides, (asymmetric) paddings, dilations, groups, shapes and N = 0."""
    p = random_problem(rng, **limits)
    kw = {k: p.kwargs[k] for k in ("stride", "padding", "dilation", "groups")}
    x_shape = ct.output_shape(p.x_shape, p.w_shape, **p.kwargs)
    r = np.random.default_rng(seed)
    x = r.standard_normal(x_shape).astype(dtype)
    w = r.standard_normal(p.w_shape).astype(dtype)
    b = r.standard_normal(p.w_shape[0]).astype(dtype) if p.bias else None
    return x, w, b, kw


def torch_conv(x, w, b, kw, gy=None):
    """F.conv2d (asymmetric padding by padding x first); with ``gy`` its autograd."""
    torch = pytest.importorskip("torch")
    (top, bottom), (left, right) = _as_padding(kw["padding"])
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    xp = torch.nn.functional.pad(tx, (left, right, top, bottom))
    y = torch.nn.functional.conv2d(xp, tw, tb, stride=kw["stride"], dilation=kw["dilation"],
                                   groups=kw["groups"])
    if gy is None:
        return y.detach().numpy()
    y.backward(torch.from_numpy(gy))
    return tx.grad.numpy(), tw.grad.numpy(), None if b is None else tb.grad.numpy()


def check(got, expected, dtype, factor=1.0):
    tol = factor * TOL[np.dtype(dtype)]
    for a, e in zip(got, expected):
        assert (a is None) == (e is None)
        if e is not None:
            assert a.dtype == np.dtype(dtype)
            err = relative_error(a, e)
            assert err <= tol, f"relative error {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("seed", range(8))
def test_forward_and_backward_match_torch(dtype, seed):
    """8 x 40 = 320 random configurations per dtype, every backend in turn."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(700 + seed)
    for i in range(40):
        x, w, b, kw = conv_problem(rng, dtype, i)
        method = METHODS[i % 3]
        y = ct.conv2d(x, w, b, backend=method, **kw)
        check([y], [torch_conv(x, w, b, kw)], dtype)
        gy = np.random.default_rng(i).standard_normal(y.shape).astype(dtype)
        got = ct.conv2d_backward(gy, x, w, backend=method, needs_bias_grad=b is not None, **kw)
        check(got, torch_conv(x, w, b, kw, gy), dtype)


@pytest.mark.parametrize("method", METHODS)
def test_random_problems_match_reference(method):
    rng = np.random.default_rng(13)
    for i in range(40):
        x, w, b, kw = conv_problem(rng, np.float64, i)
        y = ct.conv2d(x, w, b, backend=method, **kw)
        assert_close(y, conv2d_reference(x, w, b, **kw), np.float64)
        gy = np.random.default_rng(i).standard_normal(y.shape)
        check(ct.conv2d_backward(gy, x, w, backend=method, **kw),
              conv2d_backward_reference(gy, x, w, **kw), np.float64, factor=0.1)


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_string_padding_matches_torch(padding):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for k, d in [((3, 3), 1), ((4, 2), (1, 3)), ((2, 5), 2)]:
        x = rng.standard_normal((2, 4, 9, 10))
        w = rng.standard_normal((6, 2, *k))
        expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                              padding=padding, dilation=d, groups=2).numpy()
        assert_close(ct.conv2d(x, w, padding=padding, dilation=d, groups=2), expected,
                     np.float64)


def test_hand_computed_case():
    x = np.arange(9.0).reshape(1, 3, 3)
    w = np.ones((2, 1, 2, 2))
    w[1] *= -1
    y = ct.conv2d(x, w, np.array([0.5, 0.0]), padding=((0, 1), (0, 0)))
    np.testing.assert_array_equal(y[0], [[8.5, 12.5], [20.5, 24.5], [13.5, 15.5]])
    np.testing.assert_array_equal(y[1], -y[0] + 0.5)


@pytest.mark.parametrize("seed", range(6))
def test_central_finite_differences(seed):
    """d/dt L(x + t v) for L = sum(conv2d(x, w, b) * R), along random v."""
    rng = np.random.default_rng(950 + seed)
    x, w, b, kw = conv_problem(rng, np.float64, seed, max_channels=4, max_size=4, max_kernel=3)
    b = np.zeros(w.shape[0]) if b is None else b
    r = np.random.default_rng(seed).standard_normal(ct.conv2d(x, w, **kw).shape)

    def loss(x_, w_, b_):
        return float(np.sum(ct.conv2d(x_, w_, b_, **kw) * r))

    grads = ct.conv2d_backward(r, x, w, **kw)
    h = 1e-3
    for index, grad in enumerate(grads):
        v = rng.standard_normal(grad.shape)
        args_p, args_m = [x, w, b], [x, w, b]
        args_p[index] = args_p[index] + h * v
        args_m[index] = args_m[index] - h * v
        numeric = (loss(*args_p) - loss(*args_m)) / (2 * h)
        analytic = float(np.sum(grad * v))
        assert abs(numeric - analytic) <= 1e-8 * max(1.0, abs(analytic))


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight=np.ones((4, 3, 2, 2))), "input channels"),
    (dict(weight=np.ones((3, 2, 2, 2)), groups=2), "divisible by groups"),
    (dict(weight=np.ones((4, 2, 2))), "weight must be 4-D"),
    (dict(x=np.ones((4, 4))), "x must be 3-D"),
    (dict(bias=np.ones(3)), "bias"),
    (dict(padding="same", stride=2), "stride 1"),
    (dict(padding="full"), "padding"),
    (dict(padding=-1), "padding"),
    (dict(weight=np.ones((4, 4, 5, 5))), "output size"),
    (dict(x=np.ones((1, 4, 3, 3), np.int32)), "float32, float64, complex64 or complex128"),
    (dict(backend="gpu"), "backend"),
])
def test_errors_name_the_argument(kwargs, match):
    args = dict(x=np.ones((1, 4, 3, 3)), weight=np.ones((4, 4, 2, 2)))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        ct.conv2d(**args)


def test_backward_checks_grad_output_shape():
    with pytest.raises(ValueError, match="grad_output"):
        ct.conv2d_backward(np.ones((1, 2, 3, 3)), np.ones((1, 4, 3, 3)), np.ones((2, 4, 2, 2)))


def test_layer_matches_torch_module():
    torch = pytest.importorskip("torch")
    layer = ct.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2,
                      dtype=np.float64, seed=0)
    ref = torch.nn.Conv2d(4, 6, (3, 2), stride=2, padding=1, dilation=(1, 2), groups=2,
                          dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight))
        ref.bias.copy_(torch.from_numpy(layer.bias))
    x = np.random.default_rng(1).standard_normal((3, 4, 9, 8))
    tx = torch.tensor(x, requires_grad=True)
    y_ref = ref(tx)
    y = layer(x)
    assert_close(y, y_ref.detach().numpy(), np.float64)
    gy = np.random.default_rng(2).standard_normal(y.shape)
    y_ref.backward(torch.from_numpy(gy))
    check((layer.backward(gy), *layer.gradients()),
          (tx.grad.numpy(), ref.weight.grad.numpy(), ref.bias.grad.numpy()), np.float64)


def test_layer_initialisation_bounds():
    layer = ct.Conv2d(6, 8, 3, groups=2, seed=1)
    bound = 1 / np.sqrt(3 * 3 * 3)
    assert layer.weight.shape == (8, 3, 3, 3) and layer.weight.dtype == np.float32
    assert np.abs(layer.weight).max() <= bound and np.abs(layer.bias).max() <= bound
    assert np.abs(layer.weight).max() > 0.8 * bound
    assert ct.Conv2d(2, 2, 2, bias=False).parameters()[0].shape == (2, 2, 2, 2)
    with pytest.raises(ValueError, match="groups"):
        ct.Conv2d(3, 4, 2, groups=2)
