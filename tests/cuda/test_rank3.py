"""The 3-D functions on CUDA arrays (convtranspose.cuda.rank3: depth taps stacked as
channels onto the 2-D kernels): forward and gradients against the float64 references,
slices that no tap reaches, Inf and NaN placement as on the CPU (which matches PyTorch),
unbatched input, float32, ``backend="cuda"`` with NumPy arrays, and what is refused."""
from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import convtranspose as ct
from convtranspose.reference import (conv_backward_reference, conv_reference,
                                     conv_transpose_backward_reference, conv_transpose_scatter)

TOL = dict(rtol=1e-10, atol=1e-10)

# (x shape, weight shape, kwargs): one feature stressed per case
CASES = {
    "plain": ((2, 3, 3, 4, 3), (3, 2, 3, 2, 3), {}),
    "stride2": ((1, 4, 3, 3, 2), (4, 2, 2, 2, 2), dict(stride=2)),
    "pad_dilate": ((2, 2, 4, 3, 3), (2, 3, 3, 2, 2), dict(stride=(2, 1, 2), padding=1,
                                                         dilation=(2, 1, 1))),
    "groups_asym": ((1, 4, 3, 3, 3), (4, 1, 3, 3, 2), dict(stride=(3, 1, 1), groups=2,
                                                          padding=((2, 0), (0, 1), (1, 1)),
                                                          output_padding=(1, 0, 0))),
    "bias_only_slices": ((1, 2, 3, 2, 2), (2, 2, 1, 1, 1), dict(stride=3)),
}


def _dev(*arrays):
    return [None if a is None else cuda.to_device(a) for a in arrays]


@pytest.mark.parametrize("case", CASES)
def test_conv_transpose3d_and_gradients_match_reference(case):
    x_shape, w_shape, kw = CASES[case]
    rng = np.random.default_rng(len(case))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[1] * kw.get("groups", 1))
    dx, dw, db = _dev(x, w, b)
    y = ct.conv_transpose3d(dx, dw, db, **kw)
    assert isinstance(y, type(dx))
    want = conv_transpose_scatter(x, w, b, **kw)
    np.testing.assert_allclose(y.copy_to_host(), want, **TOL)
    g = rng.standard_normal(want.shape)
    got = ct.conv_transpose3d_backward(cuda.to_device(g), dx, w, **kw)
    for a, e in zip(got, conv_transpose_backward_reference(g, x, w, **kw)):
        np.testing.assert_allclose(a.copy_to_host(), e, **TOL)


@pytest.mark.parametrize("case", CASES)
def test_conv3d_and_gradients_match_reference(case):
    _, w_shape, kw = CASES[case]
    kw = {k: v for k, v in kw.items() if k != "output_padding"}
    groups = kw.get("groups", 1)
    rng = np.random.default_rng(10 + len(case))
    w = rng.standard_normal((w_shape[1] * groups, w_shape[0] // groups, *w_shape[2:]))
    x = rng.standard_normal((2, w_shape[0], 6, 5, 5))
    b = rng.standard_normal(w.shape[0])
    y = ct.conv3d(*_dev(x, w, b), **kw).copy_to_host()
    want = conv_reference(x, w, b, **kw)
    np.testing.assert_allclose(y, want, **TOL)
    g = rng.standard_normal(want.shape)
    got = ct.conv3d_backward(cuda.to_device(g), cuda.to_device(x), w, **kw)
    for a, e in zip(got, conv_backward_reference(g, x, w, **kw)):
        np.testing.assert_allclose(a.copy_to_host(), e, **TOL)


def test_nonfinite_placement_matches_the_cpu():
    rng = np.random.default_rng(3)
    kw = dict(stride=2, padding=1)
    x = rng.standard_normal((1, 2, 3, 3, 3))
    w = rng.standard_normal((2, 2, 3, 3, 3))
    x.flat[4] = np.inf
    w.flat[9] = -np.inf
    for gpu, cpu in (
            (ct.conv_transpose3d(*_dev(x, w), **kw).copy_to_host(),
             ct.conv_transpose3d(x, w, **kw)),
            (ct.conv3d(*_dev(x, w), **kw).copy_to_host(), ct.conv3d(x, w, **kw))):
        np.testing.assert_array_equal(np.isnan(gpu), np.isnan(cpu))
        ok = np.isfinite(cpu)
        np.testing.assert_allclose(gpu[ok], cpu[ok], **TOL)
    y = ct.conv_transpose3d(x, w, **kw)
    g = rng.standard_normal(y.shape)
    for a, e in zip(ct.conv_transpose3d_backward(*_dev(g, x), w, **kw),
                    ct.conv_transpose3d_backward(g, x, w, **kw)):
        np.testing.assert_array_equal(np.isnan(a.copy_to_host()), np.isnan(e))


def test_unbatched_float32_and_numpy_with_backend_cuda():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    w = rng.standard_normal((3, 2, 2, 2, 2)).astype(np.float32)
    want = conv_transpose_scatter(x, w, stride=2)
    y = ct.conv_transpose3d(cuda.to_device(x), w, stride=2).copy_to_host()
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    host = ct.conv_transpose3d(x, w, stride=2, backend="cuda")
    assert isinstance(host, np.ndarray)
    np.testing.assert_allclose(host, want, rtol=1e-5, atol=1e-5)
    layer = ct.ConvTranspose3d(3, 2, kernel_size=2, stride=2, seed=0)
    np.testing.assert_allclose(layer(cuda.to_device(x)).copy_to_host(), layer(x),
                               rtol=1e-5, atol=1e-5)


def test_refusals_name_the_problem():
    x = cuda.to_device(np.zeros((1, 2, 2, 2, 2)))
    w = np.zeros((2, 2, 2, 2, 2))
    with pytest.raises(NotImplementedError, match="channels-first"):
        ct.conv_transpose3d(x, w, data_format="NDHWC")
    with pytest.raises(ValueError, match="runs on the CPU but x is a CUDA array"):
        ct.conv3d(x, w, backend="direct")
    with pytest.raises(NotImplementedError, match="out="):
        ct.conv_transpose3d(x, w, out=cuda.device_array((1, 2, 3, 3, 3)))
