"""Float32 accumulation error on long reductions, the figures README.md ("Guarantees")
states: each element within the worst-case bound ``K * 2**-24 * (|x| (*) |w|)``, and in
practice ``max|y - y64| / max|y64| <= 2 * sqrt(K) * 2**-24``.

All-positive data is the hard case for a relative figure (no cancellation shrinks the
rounding errors of a running sum, and ``max|y64|`` grows like ``K``, not ``sqrt(K)``).
Sizes are kept to one 3x3 (or 4x4) image per problem so the float64 reference stays fast.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import convtranspose as ct
from convtranspose.reference import conv_transpose2d_reference as reference

U = 2.0**-24     # float32 unit roundoff


def _positive_problem(c_in, k, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (2, c_in, 4, 4)).astype(np.float32)
    w = rng.uniform(0, 1, (c_in, 2, k, k)).astype(np.float32)
    return x, w


@pytest.mark.parametrize("c_in, k", [(256, 4), (1024, 3), (16384, 3)],
                         ids=["K4096", "K9216", "K147456"])
@pytest.mark.parametrize("backend", ["direct", "im2col", "auto"])
def test_float32_long_positive_reductions(backend, c_in, k):
    x, w = _positive_problem(c_in, k)
    taps = c_in * k * k
    y = ct.conv_transpose2d(x, w, backend=backend)
    assert y.dtype == np.float32
    y64 = reference(x, w)                   # float64 on the same float32 values
    err = np.abs(y - y64)
    assert (err <= taps * U * reference(np.abs(x), np.abs(w))).all()    # worst case
    rel = err.max() / np.abs(y64).max()
    assert rel <= 2 * math.sqrt(taps) * U, (rel, taps)


def test_torch_for_scale():
    """PyTorch's own float32 figure on the largest problem, for the README's comparison:
    it stays far inside the same practical bound."""
    torch = pytest.importorskip("torch")
    x, w = _positive_problem(16384, 3)
    y = torch.nn.functional.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    y64 = reference(x, w)
    assert np.abs(y - y64).max() / np.abs(y64).max() <= 2 * math.sqrt(16384 * 9) * U
