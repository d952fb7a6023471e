"""Cross-checks against PyTorch (skipped when torch is not installed)."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.testing import assert_close, random_problem

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_result(x, w, b, kwargs, output_size=None):
    pad = kwargs.get("padding", 0)
    t = lambda a: None if a is None else torch.from_numpy(a)  # noqa: E731
    if output_size is None:
        return F.conv_transpose2d(t(x), t(w), t(b), **kwargs).numpy()
    layer = torch.nn.ConvTranspose2d(w.shape[0], w.shape[1] * kwargs["groups"], w.shape[2:],
                                     stride=kwargs["stride"], padding=pad,
                                     groups=kwargs["groups"], dilation=kwargs["dilation"],
                                     bias=b is not None, dtype=t(x).dtype)
    with torch.no_grad():
        layer.weight.copy_(t(w))
        if b is not None:
            layer.bias.copy_(t(b))
        return layer(t(x), output_size=output_size).numpy()


@pytest.mark.parametrize("seed", range(4))
def test_random_problems_match_torch(backend, dtype, seed):
    rng = np.random.default_rng(100 + seed)
    for i in range(40):
        p = random_problem(rng, asymmetric=False)
        x, w, b = p.arrays(dtype, i)
        got = ct.conv_transpose2d(x, w, b, backend=backend, **p.kwargs)
        assert_close(got, torch_result(x, w, b, p.kwargs), dtype)


@pytest.mark.parametrize("seed", range(2))
def test_output_size_matches_torch_module(backend, seed):
    rng = np.random.default_rng(200 + seed)
    for i in range(30):
        p = random_problem(rng, asymmetric=False)
        if p.kwargs["output_padding"] != (0, 0):
            continue
        x, w, b = p.arrays(np.float64, i)
        base = ct.output_shape(p.x_shape, p.w_shape, **p.kwargs)[-2:]
        size = tuple(int(v + rng.integers(0, s)) for v, s in zip(base, p.kwargs["stride"]))
        got = ct.conv_transpose2d(x, w, b, backend=backend, output_size=size, **p.kwargs)
        assert got.shape[-2:] == size
        assert_close(got, torch_result(x, w, b, p.kwargs, output_size=size), np.float64)


def test_tutorial_shape_round_trip():
    """The tutorial: a 3x3 convolution takes (1,3,7,9) to (1,5,5,7); the transposed
    convolution with the same weight takes it back to (1,3,7,9)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 7, 9)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)   # conv2d weight (C_out, C_in, k, k)
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    assert y.shape == (1, 5, 5, 7)
    back = ct.conv_transpose2d(y, w)          # same tensor read as (C_in=5, C_out=3, k, k)
    assert back.shape == (1, 3, 7, 9)
    assert_close(back, F.conv_transpose2d(torch.from_numpy(y), torch.from_numpy(w)).numpy(),
                 np.float32)


def test_tutorial_single_channel_stride2_padding2():
    """The tutorial's 1-channel case: 5x5 kernel, stride 2, padding 2, within 1e-6 of torch."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 1, 2, 2)).astype(np.float32)
    w = rng.standard_normal((1, 1, 5, 5)).astype(np.float32)
    got = ct.conv_transpose2d(x, w, stride=2, padding=2)
    expected = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), stride=2,
                                  padding=2).numpy()
    assert got.shape == expected.shape == (2, 1, 3, 3)
    assert np.max(np.abs(got - expected)) < 1e-6


def test_layer_matches_torch_layer():
    layer = ct.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2,
                               dilation=(1, 2), seed=0)
    t = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1, output_padding=1, groups=2,
                                 dilation=(1, 2))
    assert tuple(t.weight.shape) == layer.weight.shape
    with torch.no_grad():
        t.weight.copy_(torch.from_numpy(layer.weight))
        t.bias.copy_(torch.from_numpy(layer.bias))
        x = np.random.default_rng(2).standard_normal((2, 4, 5, 5)).astype(np.float32)
        assert_close(layer(x), t(torch.from_numpy(x)).numpy(), np.float32)
        assert_close(layer(x, output_size=(9, 10)),
                     t(torch.from_numpy(x), output_size=(9, 10)).numpy(), np.float32)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_cpu_tensors_give_numpy_arrays_equal_to_the_numpy_call(rank):
    """Every function and layer of the rank takes PyTorch CPU tensors (read as
    ``np.asarray`` reads them) and returns NumPy arrays, bitwise the NumPy call's."""
    name = {1: "1d", 2: "2d", 3: "3d"}[rank]
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((2, 3) + (5,) * rank).astype(np.float32)
    w = rng.standard_normal((3, 2) + (2,) * rank).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    t = torch.from_numpy
    calls = []
    transposed = getattr(ct, f"conv_transpose{name}")
    y = transposed(x, w, b, stride=2)
    g = rng.standard_normal(y.shape).astype(np.float32)
    calls.append((transposed, (x, w, b), dict(stride=2)))
    calls.append((getattr(ct, f"conv_transpose{name}_backward"), (g, x, w), dict(stride=2)))
    calls.append((getattr(ct, f"conv{name}"), (y, w, None), dict(stride=2)))
    calls.append((getattr(ct, f"conv{name}_backward"), (x, y, w), dict(stride=2)))
    for fn, args, kwargs in calls:
        want = fn(*args, **kwargs)
        got = fn(*(None if a is None else t(a) for a in args), **kwargs)
        for a, e in zip(*((got, want) if isinstance(want, tuple) else ((got,), (want,)))):
            assert type(a) is np.ndarray, fn.__name__
            np.testing.assert_array_equal(a, e)
    for layer_class, inp, grad in ((f"ConvTranspose{name}", x, g), (f"Conv{name}", y, x)):
        layer = getattr(ct, layer_class)(*((3, 2, 2) if "Transpose" in layer_class else (2, 3, 2)),
                                         stride=2, seed=0)
        want, want_grad = layer(inp), layer.backward(grad)
        got, got_grad = layer(t(inp)), layer.backward(t(grad))
        assert type(got) is np.ndarray and type(got_grad) is np.ndarray, layer_class
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got_grad, want_grad)


def test_tensors_that_require_grad_are_refused_naming_the_argument():
    x = torch.ones((1, 1, 2, 2), requires_grad=True)
    with pytest.raises(TypeError, match="^x (must be an array|is a torch tensor).*detach"):
        ct.conv_transpose2d(x, np.ones((1, 1, 2, 2), np.float32))
