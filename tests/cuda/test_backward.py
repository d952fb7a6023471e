"""The CUDA backward pass and ``conv2d``: against the float64 references, on Numba device
arrays and on NumPy arrays with ``backend="cuda"``; the reductions' determinism; the
dispatch rules for mixed operands.

Under the simulator the launch shapes are tiny (``conftest.TINY_BACKWARD``), so the
grid-stride loops and the reduction tree run many rounds even on these small shapes.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from numba import cuda

import convtranspose as ct
from convtranspose.cuda import backward
from convtranspose.params import _as_padding
from convtranspose.reference import (conv2d_backward_reference, conv2d_reference,
                                     conv_transpose2d_backward_reference)
from convtranspose.testing import assert_close

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
#: Gradients sum more terms than the forward: ten times the forward's tolerance.
GRAD_FACTOR = 10.0

# (x shape, weight shape, kwargs of conv_transpose2d): one parameter stressed per case
CASES = {
    "plain": ((2, 3, 4, 5), (3, 2, 3, 3), {}),
    "stride2_pad1": ((1, 3, 3, 4), (3, 2, 4, 4), dict(stride=2, padding=1)),
    "stride_asym": ((2, 2, 3, 3), (2, 3, 2, 3), dict(stride=(3, 2))),
    "padding_asym": ((1, 3, 4, 3), (3, 2, 3, 3), dict(stride=2, padding=((2, 0), (1, 3)))),
    "output_padding": ((1, 2, 3, 3), (2, 3, 3, 2), dict(stride=(2, 3), output_padding=(1, 2))),
    "dilation": ((2, 3, 3, 4), (3, 2, 3, 2),
                 dict(stride=(1, 2), dilation=(2, 3), output_padding=(1, 0))),
    "groups": ((1, 6, 3, 3), (6, 1, 3, 3), dict(stride=2, groups=3, padding=1)),
    "depthwise": ((2, 4, 3, 3), (4, 1, 2, 2), dict(stride=2, groups=4)),
    "unbatched": ((3, 4, 4), (3, 2, 3, 3), dict(stride=2, padding=(1, 0))),
    "one_by_one_kernel": ((2, 3, 3, 2), (3, 4, 1, 1), dict(stride=2)),
    "one_pixel": ((3, 4, 1, 1), (4, 2, 3, 3), {}),
    "empty_batch": ((0, 3, 4, 4), (3, 2, 3, 3), dict(stride=2)),
}
DTYPES = [np.float32, np.float64]


def _problem(case, dtype):
    x_shape, w_shape, kwargs = CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal(ct.output_shape(x_shape, w_shape, **kwargs)).astype(dtype)
    return x, w, gy, kwargs


def _host(a):
    return None if a is None else a.copy_to_host()


def _check(got, expected, dtype):
    for name, a, b in zip(("grad_input", "grad_weight", "grad_bias"), got, expected):
        assert a.dtype == np.dtype(dtype) and a.shape == b.shape, name
        assert_close(a, b, dtype, GRAD_FACTOR)


def _conv2d_kwargs(kwargs):
    """conv2d is the adjoint: the same stride, dilation, groups and (pair) padding."""
    kw = {k: v for k, v in kwargs.items() if k != "output_padding"}
    kw["padding"] = _as_padding(kwargs.get("padding", 0))
    return kw


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_conv_transpose2d_backward_on_device(case, dtype):
    x, w, gy, kwargs = _problem(case, dtype)
    got = ct.conv_transpose2d_backward(cuda.to_device(gy), cuda.to_device(x), cuda.to_device(w),
                                       **kwargs)
    assert all(cuda.devicearray.is_cuda_ndarray(g) for g in got)
    _check([_host(g) for g in got], conv_transpose2d_backward_reference(gy, x, w, **kwargs), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_conv2d_and_its_backward_on_device(case, dtype):
    """conv2d of grad_output (the transposed convolution's input gradient) and conv2d's
    own gradients, against conv2d's references."""
    _, w, gy, kwargs = _problem(case, dtype)
    kw = _conv2d_kwargs(kwargs)
    rng = np.random.default_rng(1)
    b = rng.standard_normal(w.shape[0]).astype(dtype)
    y = ct.conv2d(cuda.to_device(gy), cuda.to_device(w), cuda.to_device(b), **kw)
    assert cuda.devicearray.is_cuda_ndarray(y)
    assert_close(y.copy_to_host(), conv2d_reference(gy, w, b, **kw), dtype)
    g2 = rng.standard_normal(y.shape).astype(dtype)
    got = ct.conv2d_backward(cuda.to_device(g2), cuda.to_device(gy), cuda.to_device(w), **kw)
    _check([_host(g) for g in got], conv2d_backward_reference(g2, gy, w, **kw), dtype)


@pytest.mark.parametrize("case", ["padding_asym", "groups", "unbatched", "empty_batch"])
def test_numpy_in_numpy_out_with_backend_cuda(case):
    x, w, gy, kwargs = _problem(case, np.float32)
    got = ct.conv_transpose2d_backward(gy, x, w, backend="cuda", **kwargs)
    assert all(isinstance(g, np.ndarray) for g in got)
    _check(got, conv_transpose2d_backward_reference(gy, x, w, **kwargs), np.float32)
    kw = _conv2d_kwargs(kwargs)
    y = ct.conv2d(gy, w, backend="cuda", **kw)
    assert isinstance(y, np.ndarray)
    assert_close(y, conv2d_reference(gy, w, **kw), np.float32)
    got = ct.conv2d_backward(y, gy, w, backend="cuda", **kw)
    assert all(isinstance(g, np.ndarray) for g in got)
    _check(got, conv2d_backward_reference(y, gy, w, **kw), np.float32)


def _weight_grads(x, w, gy, kwargs, repeat=2):
    dev = [cuda.to_device(a) for a in (gy, x, w)]
    return [ct.conv_transpose2d_backward(*dev, needs_input_grad=False, **kwargs)
            for _ in range(repeat)]


def test_reductions_are_bitwise_reproducible(monkeypatch):
    """Two runs, and runs with other grid sizes, give the same bits: the block size fixes
    the order, the grid does not enter it."""
    x, w, gy, kwargs = _problem("stride2_pad1", np.float32)
    runs = _weight_grads(x, w, gy, kwargs)
    monkeypatch.setattr(backward, "REDUCE_MAX_BLOCKS", 1)
    runs += _weight_grads(x, w, gy, kwargs, repeat=1)
    first = [_host(g) for g in runs[0][1:]]
    for run in runs[1:]:
        for a, b in zip(first, (_host(g) for g in run[1:])):
            assert a.tobytes() == b.tobytes()


def test_reduction_order_is_the_documented_one():
    """Thread t sums pixels t, t + T, ... in order, then the pairwise tree: in float32 the
    bias gradient equals that order replayed in NumPy (sums only, no fused multiply-add)."""
    rng = np.random.default_rng(3)
    g = (rng.standard_normal((2, 3, 5, 7)) * 10.0 ** rng.integers(-4, 5, (2, 3, 5, 7)))
    g = g.astype(np.float32)
    gb = backward.bias_grad(cuda.to_device(g), cuda.device_array(3, np.float32)).copy_to_host()
    threads = backward._reduce_threads(2 * 5 * 7)
    for co in range(3):
        terms = g[:, co].reshape(-1)
        part = np.zeros(threads, np.float32)
        for t in range(threads):
            for v in terms[t::threads]:
                part[t] = np.float32(part[t] + v)
        half = threads // 2
        while half:
            part[:half] = part[:half] + part[half:2 * half]
            half //= 2
        assert gb[co] == part[0]


def test_needs_flags_and_host_operands():
    """A CUDA grad_output decides the kind; host x and weight are copied to its GPU."""
    x, w, gy, kwargs = _problem("plain", np.float64)
    gx, gw, gb = ct.conv_transpose2d_backward(cuda.to_device(gy), x, w, needs_input_grad=False,
                                              needs_bias_grad=False, **kwargs)
    assert gx is None and gb is None and cuda.devicearray.is_cuda_ndarray(gw)
    ref = conv_transpose2d_backward_reference(gy, x, w, **kwargs)
    assert_close(gw.copy_to_host(), ref[1], np.float64, GRAD_FACTOR)
    gx, gw, gb = ct.conv2d_backward(cuda.to_device(x), gy, w, needs_input_grad=False,
                                    needs_weight_grad=False, **_conv2d_kwargs(kwargs))
    assert gx is None and gw is None
    assert_close(gb.copy_to_host(), x.sum(axis=(0, 2, 3)), np.float64)


def test_mixed_dtypes_promote_on_device():
    x, w, gy, kwargs = _problem("plain", np.float32)
    got = ct.conv_transpose2d_backward(cuda.to_device(gy), cuda.to_device(x),
                                       w.astype(np.float64), **kwargs)
    _check([_host(g) for g in got], conv_transpose2d_backward_reference(gy, x, w, **kwargs),
           np.float64)


def test_mixing_rules():
    x, w, gy, kwargs = _problem("plain", np.float32)
    with pytest.raises(TypeError, match="grad_output is a host .* x is a CUDA array"):
        ct.conv_transpose2d_backward(gy, cuda.to_device(x), w, **kwargs)
    with pytest.raises(TypeError, match="x is a host .* weight is a CUDA array"):
        ct.conv2d(gy, cuda.to_device(w))
    with pytest.raises(ValueError, match="runs on the CPU"):
        ct.conv2d_backward(cuda.to_device(x), gy, w, backend="direct")
    with pytest.raises(ValueError, match="grad_output"):
        ct.conv_transpose2d_backward(cuda.to_device(x), cuda.to_device(x), w, **kwargs)
    with pytest.raises(TypeError, match="x must be .*float32, float64.*, got dtype int32"):
        ct.conv2d(cuda.to_device(gy.astype(np.int32)), w)


# torch: real GPU only
@pytest.mark.skipif(SIMULATOR, reason="torch CUDA tensors need a real GPU")
@pytest.mark.parametrize("case", ["dilation", "groups"])
def test_torch_in_torch_out_matches_autograd(case):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    x, w, gy, kwargs = _problem(case, np.float64)
    xt, wt, gt = (torch.from_numpy(a).cuda() for a in (x, w, gy))
    got = ct.conv_transpose2d_backward(gt, xt, wt, **kwargs)
    assert all(isinstance(g, torch.Tensor) and g.is_cuda for g in got)
    _check([g.cpu().numpy() for g in got], conv_transpose2d_backward_reference(gy, x, w, **kwargs),
           np.float64)
