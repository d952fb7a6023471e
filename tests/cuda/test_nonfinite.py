"""NaN and Inf on the CUDA backend: the rule of :mod:`convtranspose.nonfinite`.

A convolution's zero padding takes part in the products (PyTorch's rule; the float64
references multiply those zeros), a transposed convolution's inserted zeros and cropped
borders do not. Tiny shapes for the simulator; both forward kernels (the ``kernel``
fixture), NumPy operands with ``backend="cuda"``.
"""
from __future__ import annotations

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import (conv2d_backward_reference, conv2d_reference,
                                     conv_transpose2d_backward_reference,
                                     conv_transpose2d_reference)
from convtranspose.testing import assert_same_specials

# (x shape, weight shape, kwargs of conv_transpose2d); channels >= 2 so the tiled kernel
# has real tiles
CASES = {
    "stride2_pad_asym": ((1, 2, 2, 3), (2, 2, 3, 2), dict(stride=2, padding=((1, 0), (2, 1)))),
    "dilation_groups": ((1, 4, 2, 2), (4, 1, 2, 3), dict(dilation=(2, 1), groups=2, padding=1)),
}
SPOTS = {"corner": 0, "last": -1}


def _same_specials(got, expected, dtype):
    assert_same_specials(got, expected, dtype, 10.0)


def _operands(case, name, value, spot, dtype):
    x_shape, w_shape, kwargs = CASES[case]
    rng = np.random.default_rng(len(case))
    o = dict(x=rng.standard_normal(x_shape), w=rng.standard_normal(w_shape),
             gy=rng.standard_normal(ct.output_shape(x_shape, w_shape, **kwargs)))
    o[name].flat[SPOTS[spot]] = value
    return {k: v.astype(dtype) for k, v in o.items()}, kwargs


def test_issue_example_inf_weight_times_no_inserted_zero(kernel):
    x = np.ones((1, 1, 2, 1))
    w = np.ones((1, 1, 3, 1))
    w[0, 0, 0, 0] = np.inf
    y = ct.conv_transpose2d(x, w, stride=(2, 1), backend="cuda")
    np.testing.assert_array_equal(y.ravel(), [np.inf, 1, np.inf, 1, 1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("spot", list(SPOTS))
@pytest.mark.parametrize("value", [np.inf, np.nan])
@pytest.mark.parametrize("case", list(CASES))
def test_forward_nonfinite_weight(case, value, spot, dtype, kernel):
    o, kwargs = _operands(case, "w", value, spot, dtype)
    expected = conv_transpose2d_reference(o["x"], o["w"], **kwargs)
    _same_specials(ct.conv_transpose2d(o["x"], o["w"], backend="cuda", **kwargs), expected,
                   dtype)


@pytest.mark.parametrize("spot", list(SPOTS))
@pytest.mark.parametrize("name", ["x", "w", "gy"])
@pytest.mark.parametrize("case", list(CASES))
def test_transposed_gradients(case, name, spot):
    o, kwargs = _operands(case, name, -np.inf, spot, np.float64)
    with np.errstate(invalid="ignore"):     # the reference's NumPy products; ours are silent
        expected = conv_transpose2d_backward_reference(o["gy"], o["x"], o["w"], **kwargs)
    got = ct.conv_transpose2d_backward(o["gy"], o["x"], o["w"], backend="cuda", **kwargs)
    for g, e in zip(got, expected):
        _same_specials(g, e, np.float64)


@pytest.mark.parametrize("spot", list(SPOTS))
@pytest.mark.parametrize("name", ["gy", "w"])
@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_and_its_gradients(case, name, spot, kernel):
    # conv2d of gy with the same weight and padding (the adjoint), then its gradients with
    # a NaN in the incoming gradient too
    o, kwargs = _operands(case, name, np.inf, spot, np.float32)
    ckw = dict(stride=kwargs.get("stride", 1), padding=kwargs.get("padding", 0),
               dilation=kwargs.get("dilation", 1), groups=kwargs.get("groups", 1))
    with np.errstate(invalid="ignore"):
        z = conv2d_reference(o["gy"], o["w"], **ckw)
    _same_specials(ct.conv2d(o["gy"], o["w"], backend="cuda", **ckw), z, np.float32)
    gz = np.ones(z.shape, np.float32)
    gz.flat[0] = np.nan if name == "gy" else 1.0
    expected = conv2d_backward_reference(gz, o["gy"], o["w"], **ckw)
    got = ct.conv2d_backward(gz, o["gy"], o["w"], backend="cuda", **ckw)
    for g, e in zip(got, expected):
        _same_specials(g, e, np.float32)
