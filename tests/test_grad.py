"""conv_transpose2d_backward and the layers' backward: against PyTorch autograd, the float64
reference and central finite differences."""
import numba
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_backward_reference
from convtranspose.testing import random_problem, relative_error

GRAD_TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
METHODS = ["direct", "im2col", "auto"]


def assert_grads(got, expected, dtype, factor=1.0):
    tol = factor * GRAD_TOL[np.dtype(dtype)]
    for name, a, b in zip(("grad_input", "grad_weight", "grad_bias"), got, expected):
        if b is None:
            assert a is None, name
            continue
        assert a.dtype == np.dtype(dtype), name
        err = relative_error(a, b)
        assert err <= tol, f"{name}: relative error {err:.3g} > {tol:.3g}"


def torch_grads(p, x, w, b, gy):
    """PyTorch autograd of conv_transpose2d; asymmetric padding as a crop of padding 0."""
    torch = pytest.importorskip("torch")
    kw = p.kwargs
    (top, bottom), (left, right) = ct.params._as_padding(kw["padding"])
    op = kw["output_padding"]
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    full = torch.nn.functional.conv_transpose2d(
        tx, tw, tb, stride=kw["stride"], padding=0,
        output_padding=(max(0, op[0] - bottom), max(0, op[1] - right)),
        groups=kw["groups"], dilation=kw["dilation"])
    ho, wo = gy.shape[-2:]
    y = full[..., top:top + ho, left:left + wo]
    y.backward(torch.from_numpy(gy))
    return (tx.grad.numpy(), tw.grad.numpy(), None if b is None else tb.grad.numpy())


def grad_output_for(p, dtype, seed):
    shape = ct.output_shape(p.x_shape, p.w_shape, **p.kwargs)
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("seed", range(8))
def test_random_problems_match_torch_autograd(dtype, seed):
    """8 x 40 = 320 random configurations per dtype, every backend in turn."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(600 + seed)
    for i in range(40):
        p = random_problem(rng)
        x, w, b = p.arrays(dtype, i)
        gy = grad_output_for(p, dtype, i)
        got = ct.conv_transpose2d_backward(gy, x, w, backend=METHODS[i % 3],
                                           needs_bias_grad=b is not None, **p.kwargs)
        assert_grads(got, torch_grads(p, x, w, b, gy), dtype)


def test_output_size_matches_torch_module():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    for i in range(30):
        p = random_problem(rng, asymmetric=False)
        kw = dict(p.kwargs, output_padding=0)
        x, w, b = p.arrays(np.float64, i)
        base = ct.output_shape(p.x_shape, p.w_shape, **kw)[-2:]
        size = tuple(int(v + rng.integers(0, s)) for v, s in zip(base, kw["stride"]))
        layer = torch.nn.ConvTranspose2d(w.shape[0], w.shape[1] * kw["groups"], w.shape[2:],
                                         stride=kw["stride"], padding=kw["padding"],
                                         groups=kw["groups"], dilation=kw["dilation"],
                                         bias=False, dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(w))
        tx = torch.tensor(x, requires_grad=True)
        y = layer(tx, output_size=size)
        gy = rng.standard_normal(tuple(y.shape))
        y.backward(torch.from_numpy(gy))
        got = ct.conv_transpose2d_backward(gy, x, w, output_size=size, **kw)
        assert_grads(got, (tx.grad.numpy(), layer.weight.grad.numpy(), gy.sum(axis=(0, 2, 3))
                           if gy.ndim == 4 else gy.sum(axis=(1, 2))), np.float64)


@pytest.mark.parametrize("method", METHODS)
def test_random_problems_match_reference(method):
    rng = np.random.default_rng(11)
    for i in range(40):
        p = random_problem(rng)
        x, w, _ = p.arrays(np.float64, i)
        gy = grad_output_for(p, np.float64, i)
        got = ct.conv_transpose2d_backward(gy, x, w, backend=method, **p.kwargs)
        assert_grads(got, conv_transpose2d_backward_reference(gy, x, w, **p.kwargs),
                     np.float64, factor=0.1)


@pytest.mark.parametrize("seed", range(6))
def test_central_finite_differences(seed):
    """d/dt L(x + t v) for L = sum(conv_transpose2d(x, w, b) * R), along random v."""
    rng = np.random.default_rng(900 + seed)
    p = random_problem(rng, max_channels=4, max_size=5, max_kernel=3)
    x, w, b = p.arrays(np.float64, seed)
    b = np.zeros(w.shape[1] * p.kwargs["groups"]) if b is None else b
    r = grad_output_for(p, np.float64, seed + 1)

    def loss(x_, w_, b_):
        return float(np.sum(ct.conv_transpose2d(x_, w_, b_, **p.kwargs) * r))

    gx, gw, gb = ct.conv_transpose2d_backward(r, x, w, **p.kwargs)
    h = 1e-3
    for grad, index in ((gx, 0), (gw, 1), (gb, 2)):
        v = rng.standard_normal(grad.shape)
        args_p, args_m = [x, w, b], [x, w, b]
        args_p[index] = args_p[index] + h * v
        args_m[index] = args_m[index] - h * v
        numeric = (loss(*args_p) - loss(*args_m)) / (2 * h)
        analytic = float(np.sum(grad * v))
        assert abs(numeric - analytic) <= 1e-8 * max(1.0, abs(analytic))


def test_hand_computed_case():
    """1x1 input through a 3x3 kernel of ones at stride 2: every gradient is a sum."""
    x = np.array([[[[1.0, 2.0]]]])
    w = np.arange(9.0).reshape(1, 1, 3, 3)
    gy = np.ones((1, 1, 3, 5))
    gx, gw, gb = ct.conv_transpose2d_backward(gy, x, w, stride=2)
    np.testing.assert_array_equal(gx, [[[[36.0, 36.0]]]])
    np.testing.assert_array_equal(gw, np.full((1, 1, 3, 3), 3.0))
    np.testing.assert_array_equal(gb, [15.0])


@pytest.mark.parametrize("method", ["direct", "im2col"])
def test_thread_count_does_not_change_results(method):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 8, 9, 11))
    w = rng.standard_normal((8, 6, 3, 4))
    kw = dict(stride=2, padding=1, dilation=(1, 2))
    gy = rng.standard_normal(ct.output_shape(x.shape, w.shape, **kw))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = ct.conv_transpose2d_backward(gy, x, w, backend=method, **kw)
    finally:
        numba.set_num_threads(before)
    many = ct.conv_transpose2d_backward(gy, x, w, backend=method, **kw)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


def test_needs_flags_and_empty_batch():
    x = np.zeros((0, 4, 3, 3), np.float32)
    w = np.ones((4, 2, 2, 2), np.float32)
    gy = np.zeros((0, 2, 4, 4), np.float32)
    gx, gw, gb = ct.conv_transpose2d_backward(gy, x, w)
    assert gx.shape == x.shape and not gw.any() and gb.shape == (2,) and not gb.any()
    gx, gw, gb = ct.conv_transpose2d_backward(gy, x, w, needs_input_grad=False,
                                              needs_bias_grad=False)
    assert gx is None and gb is None and gw.shape == w.shape


def test_mixed_dtypes_promote():
    x = np.ones((1, 2, 3, 3), np.float32)
    w = np.ones((2, 1, 2, 2))
    gy = np.ones((1, 1, 4, 4), np.float32)
    assert all(g.dtype == np.float64 for g in ct.conv_transpose2d_backward(gy, x, w))


@pytest.mark.parametrize("kwargs, match", [
    (dict(grad_output=np.ones((1, 2, 4, 5))), "grad_output"),
    (dict(grad_output=np.ones((1, 2, 4, 4), np.int64)), "float32, float64, complex64 or complex128"),
    (dict(backend="gpu"), "backend"),
    (dict(stride=0), "stride"),
    (dict(x=np.ones((1, 3, 3, 3))), "input channels"),
])
def test_errors_name_the_argument(kwargs, match):
    args = dict(grad_output=np.ones((1, 2, 4, 4)), x=np.ones((1, 4, 3, 3)),
                weight=np.ones((4, 2, 2, 2)))
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        ct.conv_transpose2d_backward(**args)


def test_layer_backward_matches_torch_module():
    torch = pytest.importorskip("torch")
    layer = ct.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2,
                               dilation=(1, 2), dtype=np.float64, seed=0)
    ref = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1,
                                   groups=2, dilation=(1, 2), dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(layer.weight))
        ref.bias.copy_(torch.from_numpy(layer.bias))
    x = np.random.default_rng(1).standard_normal((2, 4, 5, 6))
    tx = torch.tensor(x, requires_grad=True)
    y_ref = ref(tx, output_size=(10, 12))
    y = layer(x, output_size=(10, 12))
    gy = np.random.default_rng(2).standard_normal(y.shape)
    y_ref.backward(torch.from_numpy(gy))
    gx = layer.backward(gy)
    assert_grads((gx, *layer.gradients()),
                 (tx.grad.numpy(), ref.weight.grad.numpy(), ref.bias.grad.numpy()), np.float64)
    assert [a is b for a, b in zip(layer.parameters(), (layer.weight, layer.bias))] == [True] * 2


def test_layer_backward_needs_forward():
    with pytest.raises(RuntimeError, match="forward"):
        ct.ConvTranspose2d(1, 1, 2).backward(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(RuntimeError, match="forward"):
        ct.Conv2d(1, 1, 2).backward(np.ones((1, 1, 3, 3), np.float32))


def test_training_example_step_matches_torch():
    """examples/train_autoencoder.py: forward, backward and one Adam step as in PyTorch."""
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "train_autoencoder.py"
    spec = importlib.util.spec_from_file_location("train_autoencoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    check = module.torch_check(seed=1, batch=8)
    assert max(check.values()) < 1e-10, check


def test_cuda_arrays_go_to_the_gpu_path():
    """CUDA arrays are dispatched to convtranspose.cuda (tests/cuda/test_backward.py); here,
    without a GPU, that says so, and a CPU backend named with them is refused."""
    class FakeDeviceArray:
        __cuda_array_interface__ = {"shape": (1, 4, 3, 3), "typestr": "<f8", "version": 2}

    with pytest.raises(ValueError, match="runs on the CPU but grad_output is a CUDA array"):
        ct.conv_transpose2d_backward(FakeDeviceArray(), np.ones((1, 4, 3, 3)),
                                     np.ones((4, 2, 2, 2)), backend="direct")
    if ct.cuda.is_available():
        return
    with pytest.raises(TypeError, match="no CUDA GPU can be used"):
        ct.conv_transpose2d_backward(FakeDeviceArray(), np.ones((1, 4, 3, 3)),
                                     np.ones((4, 2, 2, 2)))
    with pytest.raises(TypeError, match="no CUDA GPU can be used"):
        ct.conv2d(FakeDeviceArray(), np.ones((2, 4, 2, 2)))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_bias_gradient_is_a_fixed_order_float64_sum(rank):
    """README (Non-finite values): ``grad_bias`` sums in float64 in a fixed order, so both
    layouts give the same bits, a float32 total beyond float32's range is Inf, ``inf -
    inf`` is NaN, and partial sums that overflow float32 but cancel give the finite total."""
    fn = getattr(ct, f"conv_transpose{rank}d_backward")
    fmt_first, fmt_last = ct.params.DATA_FORMATS[rank]
    rng = np.random.default_rng(rank)
    w = np.ones((2, 5) + (1,) * rank, np.float32)
    x = rng.standard_normal((3, 2) + (7,) * rank).astype(np.float32)
    g = (rng.standard_normal((3, 5) + (7,) * rank) * 1e3).astype(np.float32)
    first = fn(g, x, w, data_format=fmt_first)[2]
    last = fn(np.ascontiguousarray(np.moveaxis(g, 1, -1)), np.moveaxis(x, 1, -1), w,
              data_format=fmt_last)[2]
    assert first.tobytes() == last.tobytes()
    exact = g.astype(np.float64).sum(axis=tuple(i for i in range(g.ndim) if i != 1))
    assert np.abs(first - exact).max() <= 1e-7 * np.abs(g).sum()
    hand = np.zeros((1, 5) + (4,) * rank, np.float32)
    flat = hand.reshape(5, -1)
    flat[0, :4] = [3e38, 3e38, -3e38, -3e38]     # overflow on the way, total 0
    flat[1, :4] = 3e38                           # total beyond float32: Inf
    flat[2, :2] = [np.inf, -np.inf]              # NaN
    flat[3, :3] = [1.0, 2.0, 3.0]
    xs = np.zeros((1, 2) + (4,) * rank, np.float32)
    gb = fn(hand, xs, w, needs_input_grad=False, needs_weight_grad=False)[2]
    assert gb[0] == 0 and gb[1] == np.inf and np.isnan(gb[2]) and gb[3] == 6 and gb[4] == 0
