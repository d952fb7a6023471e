"""Hypothesis property tests over random valid configurations."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import convtranspose as ct
from convtranspose.dispatch import BACKENDS
from convtranspose.reference import conv_transpose2d_reference
from convtranspose.testing import assert_close

pair = st.tuples(st.integers(1, 4), st.integers(1, 4))


@st.composite
def problems(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in = groups * draw(st.integers(1, 3))
    c_out_g = draw(st.integers(1, 3))
    k = draw(st.tuples(st.integers(1, 5), st.integers(1, 5)))
    stride, dilation = draw(pair), draw(pair)
    hw = draw(st.tuples(st.integers(1, 7), st.integers(1, 7)))
    op = tuple(draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation))
    pads = draw(st.tuples(*[st.integers(0, 3)] * 4))
    padding = ((pads[0], pads[1]), (pads[2], pads[3]))
    full = [(i - 1) * s + d * (kk - 1) + o + 1 for i, s, d, kk, o in zip(hw, stride, dilation, k, op)]
    # keep only paddings that leave at least one output row and column
    padding = tuple((min(p[0], f - 1), min(p[1], max(0, f - 1 - min(p[0], f - 1))))
                    for p, f in zip(padding, full))
    n = draw(st.sampled_from([None, 0, 1, 2]))
    x_shape = (c_in, *hw) if n is None else (n, c_in, *hw)
    return dict(x_shape=x_shape, w_shape=(c_in, c_out_g, *k), bias=draw(st.booleans()),
                dtype=draw(st.sampled_from([np.float32, np.float64])),
                backend=draw(st.sampled_from([*BACKENDS, "auto"])),
                kwargs=dict(stride=stride, padding=padding, output_padding=op, groups=groups,
                            dilation=dilation))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**32 - 1))
def test_matches_reference(p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(p["x_shape"]).astype(p["dtype"])
    w = rng.standard_normal(p["w_shape"]).astype(p["dtype"])
    b = rng.standard_normal(p["w_shape"][1] * p["kwargs"]["groups"]).astype(p["dtype"]) \
        if p["bias"] else None
    got = ct.conv_transpose2d(x, w, b, backend=p["backend"], **p["kwargs"])
    assert got.shape == ct.output_shape(p["x_shape"], p["w_shape"], **p["kwargs"])
    assert_close(got, conv_transpose2d_reference(x, w, b, **p["kwargs"]), p["dtype"])


@settings(max_examples=100, deadline=None)
@given(problems())
def test_linear_in_input(p):
    """conv_transpose2d(a*x1 + x2) == a*conv_transpose2d(x1) + conv_transpose2d(x2)."""
    rng = np.random.default_rng(0)
    x1, x2 = (rng.standard_normal(p["x_shape"]) for _ in range(2))
    w = rng.standard_normal(p["w_shape"])
    f = lambda x: ct.conv_transpose2d(x, w, backend=p["backend"], **p["kwargs"])  # noqa: E731
    assert_close(f(2.5 * x1 + x2), 2.5 * f(x1) + f(x2), np.float64, factor=100)
