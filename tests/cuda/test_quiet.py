"""No warning from the CUDA functions on NaN, Inf or overflowing input (README's promise
under "NaN and Inf"), with pytest's warnings as errors and no filter here.

A GPU computes ``0 * inf`` and ``inf - inf`` silently; Numba's simulator runs the kernels
on NumPy scalars, one Python thread per CUDA thread, and those warn unless the launch
says otherwise. Every function of the ``cuda`` backend, both forward kernels (the
``kernel`` fixture), tiny shapes: NumPy operands with ``backend="cuda"``.
"""
from __future__ import annotations

import numpy as np
import pytest

import convtranspose as ct

BIG = np.finfo(np.float32).max       # times a weight of 2: overflows to inf in float32
VALUES = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf, "overflow": BIG}


def _operands(rank, value, dtype, transposed):
    """x, weight and grad_output of a padded, strided problem with ``value`` in the
    first element of x and of weight (so ``0 * inf`` meets the padding zeros)."""
    rng = np.random.default_rng(rank)
    x = rng.standard_normal((1, 2) + (3,) * rank)
    w = rng.standard_normal((2, 2) + (2,) * rank) + 2.0
    kw = dict(stride=2, padding=1)
    x.flat[0] = value
    w.flat[0] = 2.0 if value == BIG else value
    x, w = x.astype(dtype), w.astype(dtype)
    fwd = {1: ct.conv_transpose1d, 2: ct.conv_transpose2d, 3: ct.conv_transpose3d}[rank] \
        if transposed else {1: ct.conv1d, 2: ct.conv2d, 3: ct.conv3d}[rank]
    shape = fwd(x, w, **kw).shape                   # on the CPU
    gy = rng.standard_normal(shape).astype(dtype)
    gy.flat[-1] = value
    return x, w, gy, kw


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("value", list(VALUES))
def test_conv_transpose2d_and_conv2d_emit_no_warning(value, dtype, kernel):
    x, w, gy, kw = _operands(2, VALUES[value], dtype, True)
    y = ct.conv_transpose2d(x, w, w[0, :, 0, 0], backend="cuda", **kw)
    assert y.shape == gy.shape
    z = ct.conv2d(gy, w, backend="cuda", **kw)
    assert z.shape == x.shape


@pytest.mark.parametrize("value", list(VALUES))
def test_backward_functions_emit_no_warning(value):
    x, w, gy, kw = _operands(2, VALUES[value], np.float32, True)
    gx, gw, gb = ct.conv_transpose2d_backward(gy, x, w, backend="cuda", **kw)
    assert (gx.shape, gw.shape, gb.shape) == (x.shape, w.shape, (2,))
    gx, gw, gb = ct.conv2d_backward(x, gy, w, backend="cuda", **kw)   # the adjoint problem
    assert (gx.shape, gw.shape, gb.shape) == (gy.shape, w.shape, (2,))


@pytest.mark.parametrize("rank", [1, 3])
@pytest.mark.parametrize("value", list(VALUES))
def test_other_ranks_emit_no_warning(value, rank):
    x, w, gy, kw = _operands(rank, VALUES[value], np.float32, True)
    fns = {1: (ct.conv_transpose1d, ct.conv1d, ct.conv_transpose1d_backward, ct.conv1d_backward),
           3: (ct.conv_transpose3d, ct.conv3d, ct.conv_transpose3d_backward, ct.conv3d_backward)}
    transposed, conv, transposed_backward, conv_backward = fns[rank]
    assert transposed(x, w, backend="cuda", **kw).shape == gy.shape
    assert conv(gy, w, backend="cuda", **kw).shape == x.shape
    assert transposed_backward(gy, x, w, backend="cuda", **kw)[0].shape == x.shape
    assert conv_backward(x, gy, w, backend="cuda", **kw)[0].shape == gy.shape
