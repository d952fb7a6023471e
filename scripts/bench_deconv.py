"""GFLOP/s of direct's engine form (``direct.run_engine``: the channels-last engine of
cpu/nd_engine.py) against the im2col backend and the gather kernel on the benchmark suite
(and the held-out layers), with one and with two threads.

Usage::

    OPENBLAS_NUM_THREADS=1 python scripts/bench_deconv.py               # the whole suite
    OPENBLAS_NUM_THREADS=1 python scripts/bench_deconv.py --reps 9 --shape dcgan_g2 --dtype float32

``OPENBLAS_NUM_THREADS=1`` keeps the im2col backend's BLAS calls single-threaded (its
tasks run them in parallel themselves; see DESIGN.md section 4). Each (shape, dtype,
thread count) warms every backend up first (compilation stays out of the timings), then
the backends' calls alternate ``--reps`` times, each after an untimed call, so all see
the same machine load. With one thread (``numba.set_num_threads(1)``) the clock is the
calling thread's CPU time (``time.thread_time``), which leaves out the time other
processes hold the core; with two, wall-clock time. The table gives medians; GFLOP/s is
``convtranspose.dispatch.flops`` over the time. The GEMM rate of the same run is
``np.matmul`` on 2048 x 2048 matrices (one BLAS thread) and the register-blocked GEMM of
cpu/engine.py (the weight gradient's).
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from convtranspose.cpu import direct, simd
from convtranspose.cpu.engine import gemm
from convtranspose.dispatch import BACKENDS, flops
from convtranspose.params import normalise
from convtranspose.suite import HELD_OUT, SUITE

#: name -> run(x, weight, bias, params, out)
RUNS = {"engine": direct.run_engine, "im2col": BACKENDS["im2col"], "gather": direct.gather}


def _median_seconds(fns, reps, now):
    """Median seconds of each function in ``fns``, calls alternating, each after an untimed one."""
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            fn()
            t = now()
            fn()
            times[name].append(now() - t)
    return {name: float(np.median(ts)) for name, ts in times.items()}


def gemm_rates(dtype, reps, n=2048):
    """GFLOP/s of ``np.matmul`` (one BLAS thread) and of the register-blocked GEMM on
    ``n^3``, one thread, CPU time."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    sec = _median_seconds({"blas": lambda: np.matmul(a, b, out=c),
                           "engine": lambda: gemm(a, b, c)}, reps, time.thread_time)
    return {name: 2.0 * n ** 3 / s / 1e9 for name, s in sec.items()}


def measure(shape, dtype, reps, threads, batch=None):
    """Median seconds of every backend in :data:`RUNS` on one suite shape."""
    x, w, b = shape.arrays(dtype, batch=batch)
    params, out_shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype] * 3,
                                     **shape.kwargs())
    outs = {name: np.empty(out_shape, dtype) for name in RUNS}
    fns = {name: (lambda run=run, out=outs[name]: run(x, w, b, params, out))
           for name, run in RUNS.items()}
    numba.set_num_threads(threads)
    now = time.thread_time if threads == 1 else time.perf_counter
    sec = _median_seconds(fns, reps, now)
    np.testing.assert_allclose(outs["engine"], outs["im2col"], rtol=1e-3,
                               atol=1e-3 * float(np.abs(outs["im2col"]).max()))
    return sec, flops(x.shape, w.shape, shape.groups)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dtype", choices=["float32", "float64"], action="append")
    parser.add_argument("--shape", action="append", help="suite shape name (repeatable)")
    parser.add_argument("--threads", type=int, action="append",
                        help="thread counts (default 1 and NUMBA_NUM_THREADS)")
    parser.add_argument("--batch", type=int, help="batch instead of the suite's")
    parser.add_argument("--held-out", action="store_true", help="the held-out layers too")
    args = parser.parse_args(argv)
    pool = SUITE + (HELD_OUT if args.held_out else ())
    shapes = [s for s in pool if not args.shape or s.name in args.shape]
    thread_counts = args.threads or sorted({1, numba.config.NUMBA_NUM_THREADS})
    print(f"target {simd.ISA}, {simd.VECTOR_BITS}-bit vectors; NUMBA_NUM_THREADS "
          f"{numba.config.NUMBA_NUM_THREADS}; medians of {args.reps}")
    with threadpool_limits(1):
        for dtype in args.dtype or ["float32", "float64"]:
            rates = gemm_rates(dtype, args.reps)
            print(f"\n{dtype}: GEMM 2048^3, one thread: np.matmul {rates['blas']:.1f} GFLOP/s, "
                  f"engine {rates['engine']:.1f} GFLOP/s")
            print(f"{'shape':<14}{'thr':>4}{'engine':>9}{'im2col':>9}{'gather':>9}   GFLOP/s"
                  f"{'eng/im2col':>12}{'eng/GEMM':>10}")
            for threads in thread_counts:
                for shape in shapes:
                    sec, work = measure(shape, dtype, args.reps, threads, args.batch)
                    gf = {name: work / s / 1e9 for name, s in sec.items()}
                    print(f"{shape.name:<14}{threads:>4}{gf['engine']:>9.1f}{gf['im2col']:>9.1f}"
                          f"{gf['gather']:>9.1f}{'':10}{gf['engine'] / gf['im2col']:>12.2f}"
                          f"{gf['engine'] / (threads * rates['blas']):>10.2f}", flush=True)


if __name__ == "__main__":
    main()
