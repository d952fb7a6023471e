"""Array interop and dispatch of the ``cuda`` backend.

Numba device arrays run under the simulator; the CuPy and torch tests need a real GPU
(``scripts/gpu_run.sh`` runs them on a lent H100).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from numba import cuda

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close

SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
KW = dict(stride=2, padding=1, output_padding=1)


@pytest.fixture
def problem():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    return x, w, b, conv_transpose2d_reference(x, w, b, **KW)


def _is_numba_device(a):
    return cuda.devicearray.is_cuda_ndarray(a)


def test_numba_in_numba_out(problem):
    x, w, b, expected = problem
    y = ct.conv_transpose2d(cuda.to_device(x), cuda.to_device(w), cuda.to_device(b), **KW)
    assert _is_numba_device(y) and y.dtype == np.float32
    assert_close(y.copy_to_host(), expected, np.float32)


def test_host_weight_and_bias_are_copied(problem):
    x, w, b, expected = problem
    y = ct.conv_transpose2d(cuda.to_device(x), w, b, **KW)
    assert _is_numba_device(y)
    assert_close(y.copy_to_host(), expected, np.float32)


def test_backend_cuda_with_numpy_gives_numpy(problem):
    x, w, b, expected = problem
    y = ct.conv_transpose2d(x, w, b, backend="cuda", **KW)
    assert isinstance(y, np.ndarray)
    assert_close(y, expected, np.float32)
    out = np.full(expected.shape, np.nan, np.float32)
    assert ct.conv_transpose2d(x, w, b, backend="cuda", out=out, **KW) is out
    assert_close(out, expected, np.float32)


def test_mixed_dtypes_promote_on_device(problem):
    x, w, b, _ = problem
    w64 = w.astype(np.float64)
    y = ct.conv_transpose2d(cuda.to_device(x), cuda.to_device(w64), **KW)
    assert y.dtype == np.float64
    assert_close(y.copy_to_host(), conv_transpose2d_reference(x, w64, **KW), np.float64)


def test_out_device_array_is_filled(problem):
    x, w, b, expected = problem
    out = cuda.device_array(expected.shape, np.float32)
    assert ct.conv_transpose2d(cuda.to_device(x), cuda.to_device(w), b, out=out, **KW) is out
    assert_close(out.copy_to_host(), expected, np.float32)


def test_out_aliasing_input_still_correct():
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    w = np.random.default_rng(1).standard_normal((2, 2, 1, 1))
    xd = cuda.to_device(x)
    y = ct.conv_transpose2d(xd, w, out=xd)            # same shape: 1x1 kernel, stride 1
    assert y is xd
    assert_close(xd.copy_to_host(), conv_transpose2d_reference(x, w), np.float64)


def test_unbatched_and_strided_input(problem):
    x, w, b, _ = problem
    big = cuda.to_device(np.ascontiguousarray(np.repeat(x[0], 2, axis=-1)))
    view = big[:, :, ::2]                                  # (3, 3, 4), not contiguous
    y = ct.conv_transpose2d(view, w, b, **KW)
    assert y.shape == (2, 6, 8)
    assert_close(y.copy_to_host(), conv_transpose2d_reference(x[0], w, b, **KW), np.float32)


def test_host_x_with_device_weight_is_type_error(problem):
    x, w, b, _ = problem
    with pytest.raises(TypeError, match="weight is a CUDA array"):
        ct.conv_transpose2d(x, cuda.to_device(w), b, **KW)
    with pytest.raises(TypeError, match="bias is a CUDA array"):
        ct.conv_transpose2d(x, w, cuda.to_device(b), backend="cuda", **KW)


def test_device_x_with_host_out_is_type_error(problem):
    x, w, b, expected = problem
    with pytest.raises(TypeError, match="out is a host"):
        ct.conv_transpose2d(cuda.to_device(x), w, b, out=np.empty(expected.shape, np.float32), **KW)


def test_host_x_with_device_out_is_type_error(problem):
    x, w, b, expected = problem
    with pytest.raises(TypeError, match="out is a CUDA array"):
        ct.conv_transpose2d(x, w, b, out=cuda.device_array(expected.shape, np.float32), **KW)


def test_cpu_backend_with_device_arrays_is_value_error(problem):
    x, w, b, _ = problem
    with pytest.raises(ValueError, match="backend 'direct' runs on the CPU"):
        ct.conv_transpose2d(cuda.to_device(x), w, b, backend="direct", **KW)


@pytest.mark.parametrize("bad, match", [
    (dict(out_shape=(1, 1, 1, 1)), "out must have shape"),
    (dict(out_dtype=np.float64), "out must have dtype"),
    (dict(stride=0), "stride must be >= 1"),
    (dict(groups=2), "divisible by groups"),
])
def test_validation_on_device(problem, bad, match):
    x, w, b, expected = problem
    kwargs = dict(KW)
    out = None
    if "out_shape" in bad or "out_dtype" in bad:
        out = cuda.device_array(bad.get("out_shape", expected.shape),
                                bad.get("out_dtype", np.float32))
    else:
        kwargs.update(bad)
    with pytest.raises(ValueError, match=match):
        ct.conv_transpose2d(cuda.to_device(x), cuda.to_device(w), b, out=out, **kwargs)


def test_integer_device_array_is_type_error(problem):
    x, w, b, _ = problem
    with pytest.raises(TypeError, match="x must be .*float32, float64.*, got dtype int32"):
        ct.conv_transpose2d(cuda.to_device(x.astype(np.int32)), w, b, **KW)


class _GradTensor:
    """Stands in for a torch CUDA tensor that requires grad: the attribute raises."""

    @property
    def __cuda_array_interface__(self):
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")


def test_tensor_requiring_grad_is_type_error(problem):
    x, w, b, _ = problem
    with pytest.raises(TypeError, match=r"requires grad.*x\.detach\(\)"):
        ct.conv_transpose2d(_GradTensor(), w, b)
    with pytest.raises(TypeError, match=r"weight.*requires grad"):
        ct.conv_transpose2d(x, _GradTensor(), b)


def test_info_and_timing():
    from convtranspose import cuda as ctcuda
    assert ctcuda.is_available()
    info = ctcuda.info()
    assert info["available"] and info["simulator"] == SIMULATOR
    assert len(info["compute_capability"]) == 2 and "numba" in info["implementation"]
    times = ctcuda.time_call(lambda: None, repeat=2, warmup=1)
    assert len(times) == 2 and min(times) >= 0


# --------------------------------------------------------------------------------------
# CuPy and torch: real GPU only

real_gpu = pytest.mark.skipif(SIMULATOR, reason="CuPy/torch need a real GPU (the simulator "
                                                "has no __cuda_array_interface__)")


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch without CUDA")
    return torch


@real_gpu
def test_torch_in_torch_out_on_callers_stream(problem):
    torch = _torch_cuda()
    x, w, b, expected = problem
    xt, wt, bt = (torch.from_numpy(a).cuda() for a in (x, w, b))
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        y = ct.conv_transpose2d(xt, wt, bt, **KW)
        z = y * 2                                      # queued after the kernel on `stream`
    stream.synchronize()
    assert isinstance(y, torch.Tensor) and y.is_cuda and y.dtype == torch.float32
    assert_close(y.cpu().numpy(), expected, np.float32)
    assert_close(z.cpu().numpy(), 2 * expected, np.float32)
    ref = torch.nn.functional.conv_transpose2d(xt.double(), wt.double(), bt.double(), **KW)
    assert_close(y.cpu().numpy(), ref.cpu().numpy(), np.float32)


@real_gpu
def test_torch_requires_grad_is_type_error(problem):
    torch = _torch_cuda()
    x, w, b, _ = problem
    xt = torch.from_numpy(x).cuda().requires_grad_()
    with pytest.raises(TypeError, match="requires grad"):
        ct.conv_transpose2d(xt, w, b, **KW)


@real_gpu
def test_torch_non_contiguous_and_out(problem):
    torch = _torch_cuda()
    x, w, b, expected = problem
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 3, 2))).cuda().transpose(2, 3)
    out = torch.empty(expected.shape, device="cuda")
    assert ct.conv_transpose2d(xt, w, b, out=out, **KW) is out
    torch.cuda.synchronize()
    assert_close(out.cpu().numpy(), expected, np.float32)


@real_gpu
def test_cupy_in_cupy_out_on_callers_stream(problem):
    cupy = pytest.importorskip("cupy")
    x, w, b, expected = problem
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        xc, wc, bc = (cupy.asarray(a) for a in (x, w, b))
        y = ct.conv_transpose2d(xc, wc, bc, **KW)
        z = y * 2
    stream.synchronize()
    assert isinstance(y, cupy.ndarray)
    assert_close(cupy.asnumpy(y), expected, np.float32)
    assert_close(cupy.asnumpy(z), 2 * expected, np.float32)


@real_gpu
def test_arrays_on_two_gpus_are_value_error(problem):
    torch = _torch_cuda()
    if torch.cuda.device_count() < 2:
        pytest.skip("one GPU")
    x, w, b, _ = problem
    with pytest.raises(ValueError, match="one GPU"):
        ct.conv_transpose2d(torch.from_numpy(x).to("cuda:0"), torch.from_numpy(w).to("cuda:1"),
                            None, **KW)


@real_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_suite_shapes_against_torch(dtype):
    """Every suite shape (its own batch) against cuDNN with TF32 off."""
    torch = _torch_cuda()
    from convtranspose.suite import SUITE
    torch.backends.cudnn.allow_tf32 = False
    for shape in SUITE:
        x, w, b = (torch.from_numpy(a).cuda() for a in shape.arrays(dtype, seed=1))
        y = ct.conv_transpose2d(x, w, b, **shape.kwargs())
        ref = torch.nn.functional.conv_transpose2d(x.double(), w.double(), b.double(),
                                                   **shape.kwargs())
        assert_close(y.cpu().numpy(), ref.cpu().numpy(), dtype, factor=10)


def test_explain_names_the_gpu_and_kernel(monkeypatch):
    from convtranspose.cuda import kernels
    monkeypatch.setattr(kernels, "TILED_MIN_CHANNELS", 4)
    x = cuda.device_array((2, 8, 4, 4), np.float32)
    choice = ct.explain(x, cuda.device_array((8, 4, 3, 3), np.float32), stride=2)
    assert choice.backend == "cuda" and "tiled kernel" in choice.reason
    choice = ct.explain(x, np.empty((8, 1, 3, 3), np.float32), groups=8)
    assert choice.backend == "cuda" and "gather kernel" in choice.reason
    assert choice.flops == 2 * 2 * 8 * 1 * 9 * 16


@pytest.mark.parametrize("call", [
    lambda x, w: ct.conv_transpose2d(x, w),
    lambda x, w: ct.conv2d(x, w),
    lambda x, w: ct.conv_transpose2d_backward(x, x, w),
], ids=["conv_transpose2d", "conv2d", "backward"])
def test_half_precision_device_arrays_are_refused(call):
    """float16 on the GPU: a TypeError naming the operand, before any launch."""
    x = cuda.to_device(np.zeros((1, 2, 3, 3), np.float16))
    w = cuda.to_device(np.zeros((2, 2, 1, 1), np.float16))
    with pytest.raises(TypeError, match=r"(x|grad_output) is float16: the cuda backend "
                                        r"takes float32 or float64 only"):
        call(x, w)


@pytest.mark.parametrize("call", [
    lambda x, w: ct.conv_transpose2d(x, w),
    lambda x, w: ct.conv2d(x, w),
    lambda x, w: ct.conv_transpose1d(x[:, :, 0], w[:, :, 0]),
    lambda x, w: ct.conv_transpose2d_backward(x, x, w),
    lambda x, w: ct.explain(x, w),
], ids=["conv_transpose2d", "conv2d", "conv_transpose1d", "backward", "explain"])
def test_complex_device_arrays_are_refused(call):
    """complex64 on the GPU: a TypeError before any launch or copy."""
    x = cuda.to_device(np.zeros((1, 2, 3, 3), np.complex64))
    w = cuda.to_device(np.zeros((2, 2, 1, 1), np.complex64))
    with pytest.raises(TypeError, match="complex operands run on the CPU only"):
        call(x, w)
