"""The CUDA kernels against the float64 reference, on Numba device arrays.

Small configurations covering every parameter, run through both kernels (the ``kernel``
fixture forces the size rule) and both dtypes, plus seeded random valid problems.
"""
from __future__ import annotations

import numpy as np
import pytest
from numba import cuda

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close, random_problem

# (x shape, weight shape, bias, kwargs): one parameter stressed per case
CASES = {
    "plain": ((2, 3, 4, 5), (3, 2, 3, 3), True, {}),
    "stride2_pad1": ((1, 3, 3, 4), (3, 3, 4, 4), True, dict(stride=2, padding=1)),
    "stride_asym_kernel_asym": ((2, 2, 3, 3), (2, 3, 2, 3), False, dict(stride=(3, 2))),
    "padding_asym": ((1, 3, 4, 3), (3, 2, 3, 3), True,
                     dict(stride=2, padding=((2, 0), (1, 3)))),
    "output_padding": ((1, 2, 3, 3), (2, 3, 3, 2), True,
                       dict(stride=(2, 3), output_padding=(1, 2))),
    "dilation": ((2, 3, 3, 4), (3, 2, 3, 2), False,
                 dict(stride=(1, 2), dilation=(2, 3), output_padding=(1, 0))),
    "groups": ((1, 6, 3, 3), (6, 3, 3, 3), True, dict(stride=2, groups=2, padding=1)),
    "depthwise": ((2, 4, 4, 4), (4, 1, 4, 4), True, dict(stride=2, padding=1, groups=4)),
    "unbatched": ((3, 4, 4), (3, 3, 3, 3), True, dict(stride=2, padding=(1, 0))),
    "crop_large": ((1, 2, 5, 5), (2, 3, 5, 5), False, dict(padding=3)),
    "one_pixel": ((3, 5, 1, 1), (5, 4, 4, 4), True, {}),
    "empty_batch": ((0, 3, 4, 4), (3, 2, 3, 3), True, dict(stride=2)),
}


def _run(x, w, b, kwargs, **extra):
    dev = [None if a is None else cuda.to_device(a) for a in (x, w, b)]
    y = ct.conv_transpose2d(*dev, **kwargs, **extra)
    return y.copy_to_host()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(CASES))
def test_case_against_reference(case, dtype, kernel):
    x_shape, w_shape, has_bias, kwargs = CASES[case]
    rng = np.random.default_rng(len(case))
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype) if has_bias else None
    y = _run(x, w, b, kwargs)
    assert y.dtype == dtype
    assert y.shape == ct.output_shape(x_shape, w_shape, **kwargs)
    assert_close(y, conv_transpose2d_reference(x, w, b, **kwargs), dtype)


@pytest.mark.parametrize("seed", range(10))
def test_random_problem(seed, monkeypatch):
    from convtranspose.cuda import kernels
    monkeypatch.setattr(kernels, "TILED_MIN_CHANNELS", 1 if seed % 2 else 10**9)
    dtype = (np.float32, np.float64)[seed // 2 % 2]
    problem = random_problem(np.random.default_rng(1000 + seed), max_channels=6, max_size=5,
                             max_kernel=4, max_stride=3)
    x, w, b = problem.arrays(dtype, seed)
    y = _run(x, w, b, problem.kwargs)
    assert_close(y, conv_transpose2d_reference(x, w, b, **problem.kwargs), dtype)


def test_output_size(kernel):
    x = np.random.default_rng(0).standard_normal((1, 2, 3, 3))
    w = np.random.default_rng(1).standard_normal((2, 2, 3, 3))
    y = _run(x, w, None, dict(stride=2, padding=1), output_size=(6, 6))
    assert_close(y, conv_transpose2d_reference(x, w, stride=2, padding=1, output_padding=1),
                 np.float64)


def test_nan_and_inf_propagate(kernel):
    x = np.ones((1, 2, 2, 2), np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 1, 1, 1] = np.inf
    w = np.ones((2, 2, 1, 1), np.float32)
    y = _run(x, w, None, {})
    assert np.isnan(y[0, :, 0, 0]).all() and np.isposinf(y[0, :, 1, 1]).all()
    assert (y[0, :, 0, 1] == 2).all()


def test_pick_kernel_by_size():
    from convtranspose.cuda import kernels
    big = kernels.TILED_MIN_CHANNELS
    assert kernels.pick_kernel((8, big, 8, 8), (big, big, 4, 4), 1) == "tiled"
    assert kernels.pick_kernel((8, big, 8, 8), (big, 1, 4, 4), big) == "gather"     # depthwise
    assert kernels.pick_kernel((8, 3, 8, 8), (3, big, 4, 4), 1) == "gather"


@pytest.mark.parametrize("shape", [
    dict(TILE_CO=4, TILE_P=2, TILE_K=3, REG_CO=2, REG_P=1),    # 4 threads share a pixel column
    dict(TILE_CO=2, TILE_P=8, TILE_K=2, REG_CO=2, REG_P=4),    # 2 threads load 4 pixels each
    dict(GATHER_THREADS=2, GATHER_MAX_GRID=(2, 1, 3)),
    dict(GATHER_THREADS=16, GATHER_MAX_GRID=(1, 1, 1)),        # 3-D block over planes
], ids=["k_split", "p_slots", "gather_grid", "gather_planes"])
def test_launch_shape_does_not_change_result(shape, monkeypatch):
    """Other block and tile shapes give the same numbers (each output has one writer)."""
    from convtranspose.cuda import kernels
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 5, 3, 4)), rng.standard_normal((5, 3, 3, 3))
    kwargs = dict(stride=(2, 3), padding=((1, 0), (0, 2)), dilation=(1, 2))
    monkeypatch.setattr(kernels, "TILED_MIN_CHANNELS", 1 if "TILE_P" in shape else 10**9)
    first = _run(x, w, None, kwargs)
    for name, value in shape.items():
        monkeypatch.setattr(kernels, name, value)
    second = _run(x, w, None, kwargs)
    assert_close(first, conv_transpose2d_reference(x, w, **kwargs), np.float64)
    np.testing.assert_array_equal(first, second)


def test_bad_tiled_shape_is_value_error():
    from convtranspose.cuda import kernels
    with pytest.raises(ValueError, match="bad tiled launch shape"):
        kernels.tiled_kernel(np.float32, 4, 6, 2, 1, 3)     # 8 threads for 6 pixel columns
    with pytest.raises(ValueError, match="bad tiled launch shape"):
        kernels.tiled_kernel(np.float32, 3, 4, 2, 2, 1)     # 3 channels in registers of 2
