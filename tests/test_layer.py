"""ConvTranspose2d: PyTorch's initialisation bounds and forward."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close


@pytest.mark.parametrize("c_in,c_out,k,groups", [(16, 8, 4, 1), (6, 9, (3, 2), 3), (64, 64, 4, 64)])
def test_initialisation_bounds(c_in, c_out, k, groups):
    layer = ct.ConvTranspose2d(c_in, c_out, k, groups=groups, seed=1)
    kh, kw = (k, k) if isinstance(k, int) else k
    bound = 1 / np.sqrt(c_out // groups * kh * kw)     # kaiming_uniform(a=sqrt(5)) fan-in
    assert layer.weight.shape == (c_in, c_out // groups, kh, kw)
    assert layer.weight.dtype == np.float32
    for a in (layer.weight, layer.bias):
        assert np.all(np.abs(a) <= bound)
        assert np.abs(a).max() > 0.8 * bound        # uses the whole interval
    if layer.weight.size > 500:
        # uniform on [-bound, bound] has standard deviation bound / sqrt(3)
        assert abs(layer.weight.std() - bound / np.sqrt(3)) < 0.1 * bound


def test_init_matches_torch_statistics():
    torch = pytest.importorskip("torch")
    t = torch.nn.ConvTranspose2d(32, 16, 3, groups=2)
    bound_torch = float(t.weight.detach().abs().max())
    layer = ct.ConvTranspose2d(32, 16, 3, groups=2, seed=0)
    assert abs(float(np.abs(layer.weight).max()) - bound_torch) < 0.02 * bound_torch


def test_forward_and_options():
    layer = ct.ConvTranspose2d(4, 2, 3, stride=2, padding=((1, 0), (0, 0)), bias=False,
                               dtype=np.float64, seed=0)
    assert layer.bias is None and layer.weight.dtype == np.float64
    x = np.random.default_rng(0).standard_normal((3, 4, 4, 4))
    assert_close(layer(x), conv_transpose2d_reference(x, layer.weight, stride=2,
                                                       padding=((1, 0), (0, 0))), np.float64)
    assert layer(x[0]).shape == layer(x)[0].shape
    assert "ConvTranspose2d(4, 2" in repr(layer)


def test_seed_is_reproducible():
    a = ct.ConvTranspose2d(3, 3, 3, seed=42)
    b = ct.ConvTranspose2d(3, 3, 3, seed=42)
    np.testing.assert_array_equal(a.weight, b.weight)


@pytest.mark.parametrize("kwargs,exc,message", [
    (dict(in_channels=4, out_channels=3, kernel_size=3, groups=2), ValueError,
     "out_channels must be a positive multiple of groups = 2, got 3"),
    (dict(in_channels=0, out_channels=3, kernel_size=3), ValueError,
     "in_channels must be a positive multiple of groups = 1, got 0"),
    (dict(in_channels=4, out_channels=3, kernel_size=0), ValueError, "kernel_size must be >= 1"),
    (dict(in_channels=4, out_channels=3, kernel_size=3, dtype=np.int32), TypeError,
     "dtype must be float16, bfloat16, float32, float64, complex64 or complex128"),
    (dict(in_channels=4, out_channels=3, kernel_size=3, stride=2, output_padding=2), ValueError,
     "output_padding"),
])
def test_constructor_errors(kwargs, exc, message):
    with pytest.raises(exc, match=message):
        ct.ConvTranspose2d(**kwargs)


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_conv_transpose_layer_takes_same_and_valid(padding):
    # Keras's Conv2DTranspose: "same" gives input * stride; "valid" is padding 0
    rng = np.random.default_rng(41)
    layer = ct.ConvTranspose2d(3, 4, (4, 3), stride=(2, 3), padding=padding, seed=0)
    x = rng.standard_normal((2, 3, 5, 6))
    y = layer(x)
    want = ct.conv_transpose2d(x, layer.weight, layer.bias, stride=(2, 3), padding=padding)
    np.testing.assert_array_equal(y, want)
    if padding == "same":
        assert y.shape == (2, 4, 10, 18)
        full = conv_transpose2d_reference(x, layer.weight, layer.bias, stride=(2, 3))
        # T = (4 - 2, 3 - 3) = (2, 0): one row cropped at the top, one at the bottom
        np.testing.assert_allclose(y, full[:, :, 1:11, 0:18], rtol=1e-12, atol=1e-12)
    else:
        assert y.shape == (2, 4, 12, 18)
    gx, = [layer.backward(np.ones_like(y))]
    assert gx.shape == x.shape
