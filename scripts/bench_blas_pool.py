"""The second thread pool, measured on one layer: ``dcgan_g2`` (auto, float32) timed alone,
right after ``dcgan_g1`` (whose 1x1 input takes im2col's dense path) and right after a
user's ``512 x 512`` ``np.matmul``, with the dense path's GEMM on NumPy's BLAS or on the
engine, and the pool defence (``convtranspose._blaspool``) off or on; all four variants
interleaved in one process, medians of ``--repeat`` samples, each after a 0.15 s pause
(so that every pool has gone quiet before the call that precedes the timed one).

    PYTHONPATH=src python scripts/bench_blas_pool.py [--repeat 15]
"""
import argparse
import os
import time

import numpy as np

import convtranspose as ct
from convtranspose import _blaspool
from convtranspose.cpu import im2col
from convtranspose.suite import get

ENGINE = im2col._matmul


def numpy_matmul(a, b, c):
    """The dense path as it was: NumPy's multi-threaded BLAS."""
    np.matmul(a, b, out=c)
    return c


VARIANTS = {"before": (numpy_matmul, False), "dense only": (ENGINE, False),
            "defence only": (numpy_matmul, True), "after": (ENGINE, True)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    g1, g2 = get("dcgan_g1"), get("dcgan_g2")
    x1, w1, b1 = g1.arrays(np.float32)
    x2, w2, b2 = g2.arrays(np.float32)
    a = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32)
    before = {"alone": lambda: None,
              "after dcgan_g1": lambda: ct.conv_transpose2d(x1, w1, b1, **g1.kwargs()),
              "after np.matmul": lambda: np.matmul(a, a)}
    print("load average before", os.getloadavg())
    times = {}
    for rnd in range(args.repeat + 1):          # round 0 warms up
        for name, (matmul, defence) in VARIANTS.items():
            im2col._matmul = matmul
            _blaspool._set_enabled(defence)
            for pre, call in before.items():
                time.sleep(0.15)
                call()
                t0 = time.perf_counter()
                ct.conv_transpose2d(x2, w2, b2, **g2.kwargs())
                if rnd:
                    times.setdefault((name, pre), []).append(time.perf_counter() - t0)
    im2col._matmul = ENGINE
    for (name, pre), ts in times.items():
        print(f"{name:<13} {pre:<16} dcgan_g2 median {np.median(ts) * 1e3:6.1f} ms, "
              f"min {np.min(ts) * 1e3:6.1f} ms")
    print("load average after", os.getloadavg())


if __name__ == "__main__":
    main()
