"""Every backend against the float64 reference, over stacked parameter grids."""
import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.suite import SUITE
from convtranspose.testing import assert_close, random_problem


def check(backend, dtype, x_shape, w_shape, bias=True, seed=0, **kwargs):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[1] * kwargs.get("groups", 1)).astype(dtype) if bias else None
    got = ct.conv_transpose2d(x, w, b, backend=backend, **kwargs)
    expected = conv_transpose2d_reference(x, w, b, **kwargs)
    assert got.dtype == dtype
    assert got.shape == expected.shape
    assert_close(got, expected, dtype)
    return got


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
@pytest.mark.parametrize("dilation", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1, (2, 0), ((0, 3), (2, 1))])
def test_stride_dilation_padding(backend, dtype, stride, dilation, padding):
    check(backend, dtype, (2, 3, 5, 6), (3, 2, 3, 2), stride=stride, dilation=dilation,
          padding=padding)


@pytest.mark.parametrize("stride,dilation,output_padding",
                         [(2, 1, 1), (3, 1, (2, 1)), (1, 2, 1), (2, 3, (2, 1)), (4, 2, (3, 0))])
def test_output_padding(backend, dtype, stride, dilation, output_padding):
    check(backend, dtype, (1, 2, 4, 3), (2, 3, 3, 3), stride=stride, dilation=dilation,
          output_padding=output_padding, padding=1)


@pytest.mark.parametrize("c_in,c_out_g,groups", [(4, 3, 2), (6, 1, 3), (5, 1, 5), (8, 2, 8)])
@pytest.mark.parametrize("stride", [1, 2])
def test_groups_and_depthwise(backend, dtype, c_in, c_out_g, groups, stride):
    check(backend, dtype, (2, c_in, 5, 4), (c_in, c_out_g, 4, 3), groups=groups, stride=stride,
          padding=1)


@pytest.mark.parametrize("x_shape,w_shape,kwargs", [
    ((1, 1, 1, 1), (1, 1, 1, 1), {}),                            # 1x1 everything
    ((3, 2, 1, 1), (2, 4, 4, 4), dict(stride=2)),                # 1x1 image, DCGAN style
    ((1, 2, 1, 7), (2, 2, 1, 5), dict(stride=(1, 3))),           # one-row image
    ((2, 3, 9, 2), (3, 1, 2, 7), dict(stride=(2, 1), padding=(1, 3))),  # non-square
    ((1, 1, 3, 3), (1, 1, 5, 5), dict(padding=3)),               # padding crops to 1x1
    ((1, 2, 2, 3), (2, 2, 3, 3), dict(stride=5)),                # stride above the kernel
])
def test_edge_shapes(backend, dtype, x_shape, w_shape, kwargs):
    check(backend, dtype, x_shape, w_shape, **kwargs)


def test_no_bias(backend, dtype):
    check(backend, dtype, (2, 3, 4, 4), (3, 2, 3, 3), bias=False, stride=2)


def test_unbatched(backend, dtype):
    out = check(backend, dtype, (3, 4, 5), (3, 2, 3, 3), stride=2, padding=1)
    assert out.shape == (2, 7, 9)


def test_empty_batch(backend, dtype):
    out = check(backend, dtype, (0, 3, 4, 5), (3, 2, 3, 3), stride=2)
    assert out.shape == (0, 2, 9, 11)


def test_random_problems(backend, dtype):
    rng = np.random.default_rng(2024)
    for i in range(60):
        p = random_problem(rng)
        x, w, b = p.arrays(dtype, i)
        got = ct.conv_transpose2d(x, w, b, backend=backend, **p.kwargs)
        assert_close(got, conv_transpose2d_reference(x, w, b, **p.kwargs), dtype)


@pytest.mark.parametrize("shape", [s for s in SUITE if s.flops < 2e8], ids=lambda s: s.name)
def test_suite_shapes(backend, shape):
    x, w, b = shape.arrays(np.float32, batch=min(shape.n, 2))
    got = ct.conv_transpose2d(x, w, b, backend=backend, **shape.kwargs())
    assert_close(got, conv_transpose2d_reference(x, w, b, **shape.kwargs()), np.float32)


@pytest.mark.parametrize("limit", [1, 4000, 10**5])
def test_im2col_chunks_within_workspace(dtype, limit):
    """Tiny workspace limits force chunks of images and of input rows; same answer."""
    old = ct.set_workspace_limit(limit)
    try:
        check("im2col", dtype, (3, 4, 7, 5), (4, 3, 3, 4), stride=(2, 3), padding=((1, 2), (0, 1)),
              dilation=(2, 1), output_padding=(1, 0))
    finally:
        ct.set_workspace_limit(old)


@pytest.mark.parametrize("threads", [1, 2, 8])
def test_im2col_plans_respect_limit(threads):
    from convtranspose.cpu.im2col import plan_col2im, plan_phases
    from convtranspose.params import normalise
    for x_shape, w_shape, kw in [((64, 512, 4, 4), (512, 256, 4, 4), dict(stride=2, padding=1)),
                                 ((1, 16, 256, 256), (16, 16, 3, 3), dict(padding=1))]:
        params, out_shape, _ = normalise(x_shape, w_shape, None, [np.dtype(np.float32)], **kw)
        tasks, slot = plan_col2im(x_shape, w_shape, params, out_shape[2:], 4, 2**22, threads)
        assert threads * slot * 4 <= 2**22
        # every output row of every image is owned by exactly one task
        owner = np.zeros((x_shape[0], out_shape[2]), int)
        for n0, m, ih_a, ih_b, oh_a, oh_b in tasks:
            owner[n0:n0 + m, oh_a:oh_b] += 1
            assert 0 <= ih_a <= ih_b <= x_shape[2]
        assert (owner == 1).all()
        plan = plan_phases(x_shape, w_shape, params, out_shape[2:], 4, 2**22, threads)
        assert threads * plan.slot * 4 <= 2**22
