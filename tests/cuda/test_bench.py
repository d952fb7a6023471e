"""The GPU benchmark helpers, checked on the CPU (``smoke=True``): no GPU needed."""
from __future__ import annotations

import math

import pytest

from convtranspose.cuda import bench
from convtranspose.suite import SUITE, get


def test_scaled_batch_bounds():
    for shape in SUITE:
        n = bench.scaled_batch(shape, max_gib=8.0)
        assert n >= 1
        assert n >= shape.n or n == bench.scaled_batch(shape, min_gflop=0, min_gib=0, max_gib=8.0)
    assert bench.scaled_batch(get("depthwise_up"), max_gib=0.001) == 1   # the cap wins


def test_measure_smoke():
    pytest.importorskip("torch")
    row = bench.measure(get("seed_shape"), batch=2, repeat=1, smoke=True)
    assert row["name"] == "seed_shape" and row["n"] == 2 and row["kernel"] == "gather"
    assert row["err"] < 1e-5
    for key in ("first_s", "cuda_ms", "cudnn_fp32_ms", "cudnn_tf32_ms", "gflops"):
        assert math.isfinite(row[key]) and row[key] > 0, key
