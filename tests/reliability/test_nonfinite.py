"""NaN and Inf in ``conv2d`` and in the gradients of both convolutions, on every CPU backend.

The rule (README "Guarantees", :mod:`convtranspose.nonfinite`) is PyTorch's: a
convolution's zero padding takes part in the products (so a padding zero times an Inf
weight is NaN), a transposed convolution's inserted zeros and cropped borders do not.
Random configurations with Inf/NaN in each operand are compared position by position
(NaN, the sign of Inf, finite values within tolerance) against the float64 references
(:mod:`convtranspose.reference`, which multiply the padding zeros explicitly) and
against PyTorch in float64 (whose native CPU path forms the same products).
"""
from __future__ import annotations

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.params import _as_padding
from convtranspose.reference import (conv2d_backward_reference, conv2d_reference,
                                     conv_transpose2d_backward_reference)
from convtranspose.testing import assert_same_specials, random_problem

BACKENDS = ("direct", "im2col", "auto")
DTYPES = (np.float32, np.float64)
SPECIALS = (np.inf, -np.inf, np.nan)
#: Gradients sum more terms than the forward: ten times the forward's tolerance.
GRAD_FACTOR = 10.0


def same_specials(got, expected, dtype):
    assert_same_specials(got, expected, dtype, GRAD_FACTOR)


def poison(a, rng):
    """A copy of ``a`` with one or two elements set to Inf, -Inf or NaN."""
    a = a.copy()
    for _ in range(int(rng.integers(1, 3)) if a.size else 0):
        a.flat[rng.integers(a.size)] = rng.choice(SPECIALS)
    return a


def conv2d_kwargs(kwargs):
    """The convolution whose adjoint is the transposed convolution ``kwargs``."""
    return dict(stride=kwargs["stride"], padding=_as_padding(kwargs["padding"]),
                dilation=kwargs["dilation"], groups=kwargs["groups"])


def problems(seed, asymmetric=True):
    """Operands of the three operations for a random problem, float64, unpoisoned:
    ``(kwargs, ckwargs, x, w, gy, gz)`` with ``gy`` of the transposed convolution's
    output shape (also ``conv2d``'s input) and ``gz`` of ``conv2d(gy, w)``'s shape."""
    rng = np.random.default_rng(seed)
    p = random_problem(rng, max_channels=4, max_size=6, asymmetric=asymmetric)
    x, w, _ = p.arrays(np.float64, seed=seed)
    gy = rng.standard_normal(ct.output_shape(p.x_shape, p.w_shape, **p.kwargs))
    ckw = conv2d_kwargs(p.kwargs)
    with np.errstate(invalid="ignore"):
        gz = rng.standard_normal(conv2d_reference(gy, w, **ckw).shape)
    return p.kwargs, ckw, x, w, gy, gz


#: (operation, its operands by name): ours(backend, **operands) and the reference.
OPERATIONS = {
    "conv2d": ("gy w",
               lambda o, kw, ckw, backend: (ct.conv2d(o["gy"], o["w"], backend=backend, **ckw),),
               lambda o, kw, ckw: (conv2d_reference(o["gy"], o["w"], **ckw),)),
    "conv2d_backward": (
        "gz gy w",
        lambda o, kw, ckw, backend: ct.conv2d_backward(o["gz"], o["gy"], o["w"], backend=backend,
                                                       **ckw),
        lambda o, kw, ckw: conv2d_backward_reference(o["gz"], o["gy"], o["w"], **ckw)),
    "conv_transpose2d_backward": (
        "gy x w",
        lambda o, kw, ckw, backend: ct.conv_transpose2d_backward(o["gy"], o["x"], o["w"],
                                                                 backend=backend, **kw),
        lambda o, kw, ckw: conv_transpose2d_backward_reference(o["gy"], o["x"], o["w"], **kw)),
}


def cases(seed, asymmetric=True):
    """``(operation, poisoned operand, operands, kwargs, ckwargs)`` for one random problem:
    every operation with Inf/NaN in each of its operands in turn."""
    kw, ckw, x, w, gy, gz = problems(seed, asymmetric)
    clean = dict(x=x, w=w, gy=gy, gz=gz)
    rng = np.random.default_rng(1000 + seed)
    for op, (names, _, _) in OPERATIONS.items():
        for name in names.split():
            yield op, name, {**clean, name: poison(clean[name], rng)}, kw, ckw


def _as(operands, dtype):
    return {k: v.astype(dtype) for k, v in operands.items()}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(16))
def test_random_nonfinite_against_reference(seed, dtype, backend):
    for op, name, operands, kw, ckw in cases(seed):
        ours, reference = OPERATIONS[op][1:]
        o = _as(operands, dtype)
        with np.errstate(invalid="ignore"):
            expected = reference(o, kw, ckw)
        got = ours(o, kw, ckw, backend)
        for i, (g, e) in enumerate(zip(got, expected)):
            try:
                same_specials(g, e, dtype)
            except AssertionError as exc:
                raise AssertionError(f"{op} output {i}, Inf/NaN in {name}, {kw}: {exc}") from None


def _torch_results(torch, op, o, kw, ckw):
    """PyTorch float64 (native CPU path) results of ``op``: autograd gradients."""
    t = {k: torch.from_numpy(v.astype(np.float64)).requires_grad_() for k, v in o.items()}
    if op == "conv2d":
        return (torch.nn.functional.conv2d(t["gy"], t["w"], **_torch_kw(ckw)).detach().numpy(),)
    if op == "conv2d_backward":
        z = torch.nn.functional.conv2d(t["gy"], t["w"], **_torch_kw(ckw))
        z.backward(t["gz"].detach())
        return t["gy"].grad.numpy(), t["w"].grad.numpy(), t["gz"].detach().sum((0, 2, 3)).numpy()
    y = torch.nn.functional.conv_transpose2d(t["x"], t["w"], **kw)
    y.backward(t["gy"].detach())
    return t["x"].grad.numpy(), t["w"].grad.numpy(), t["gy"].detach().sum((0, 2, 3)).numpy()


def _torch_kw(ckw):
    return {**ckw, "padding": tuple(p[0] for p in ckw["padding"])}     # symmetric here


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed", range(8))
def test_random_nonfinite_against_torch(seed, dtype, backend):
    torch = pytest.importorskip("torch")
    for op, name, operands, kw, ckw in cases(100 + seed, asymmetric=False):
        if operands["x"].ndim == 3:
            continue                       # torch's autograd wants batched input here
        o = _as(operands, dtype)
        expected = _torch_results(torch, op, o, kw, ckw)
        got = OPERATIONS[op][1](o, kw, ckw, backend)
        for i, (g, e) in enumerate(zip(got, expected)):
            try:
                same_specials(g, e, dtype)
            except AssertionError as exc:
                raise AssertionError(f"{op} output {i}, Inf/NaN in {name}, {kw}: {exc}") from None


# the examples, computed by hand: 2x1 input, 2x1 kernel, one row of padding

INF_FIRST = np.array([np.inf, 1.0]).reshape(1, 1, 2, 1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_padding_zero_times_inf_weight_is_nan(backend):
    # out[oh] = x[oh - 1] * w[0] + x[oh] * w[1]; out[0] reads the padding zero times Inf
    y = ct.conv2d(np.ones((1, 1, 2, 1)), INF_FIRST, padding=(1, 0), backend=backend)
    np.testing.assert_array_equal(y.ravel(), [np.nan, np.inf, np.inf])


@pytest.mark.parametrize("backend", BACKENDS)
def test_transposed_gradients_read_zeros_outside_grad_output(backend):
    # the forward has one output pixel, y = x[0] * w[1] + x[1] * w[0]; its gradients read
    # grad_output at ih + kh - 1, so grad_input[0] = 0 * w[0] + 1 * w[1] = nan with
    # w[0] = inf, and grad_weight[0] = x[0] * 0 + x[1] * 1 = nan with x[0] = inf
    gy = np.ones((1, 1, 1, 1))
    gx, _, _ = ct.conv_transpose2d_backward(gy, np.ones((1, 1, 2, 1)), INF_FIRST,
                                            padding=(1, 0), backend=backend)
    np.testing.assert_array_equal(gx.ravel(), [np.nan, np.inf])
    _, gw, _ = ct.conv_transpose2d_backward(gy, INF_FIRST, np.ones((1, 1, 2, 1)),
                                            padding=(1, 0), backend=backend)
    np.testing.assert_array_equal(gw.ravel(), [np.nan, np.inf])


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv2d_input_gradient_multiplies_no_padding(backend):
    # grad_input is a transposed convolution: no padding zero is multiplied, so an Inf
    # weight gives Inf (the product with grad_output), never NaN
    gx, gw, _ = ct.conv2d_backward(np.ones((1, 1, 3, 1)), np.ones((1, 1, 2, 1)), INF_FIRST,
                                   padding=(1, 0), backend=backend)
    np.testing.assert_array_equal(gx.ravel(), [np.inf, np.inf])
    np.testing.assert_array_equal(gw.ravel(), [2.0, 2.0])
