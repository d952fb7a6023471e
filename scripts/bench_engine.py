"""Single-thread GFLOP/s of the packed GEMM engine against NumPy's BLAS (one thread).

Usage::

    python scripts/bench_engine.py                      # the default table
    python scripts/bench_engine.py --reps 21 --dtype float32 --shape 1024,1024,1024
    python scripts/bench_engine.py --blocks 384,96,3072 # try another (KC, MC, NC)
    python scripts/bench_engine.py --threads 2          # the engine's prange path as well

Each shape is warmed up first (compilation stays out of the timings), then engine and
BLAS calls alternate ``--reps`` times, so both see the same machine load. Single-thread
runs are timed in thread CPU time (see :func:`measure`). The table gives the best and the
median rate of each and the ratio of the best times (the least disturbed runs; on a
shared machine the medians move with other people's jobs). BLAS is held to
one thread with ``threadpoolctl``; set ``OPENBLAS_NUM_THREADS=1`` as well to be sure.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from convtranspose.cpu import simd
from convtranspose.cpu.engine import blocking, gemm

#: (name, M, K, N): square GEMMs, then the GEMM shapes of the suite's layers.
SHAPES = [
    ("square 512", 512, 512, 512),
    ("square 1024", 1024, 1024, 1024),
    ("square 2048", 2048, 2048, 2048),
    ("dcgan_g2-like", 256, 512 * 4, 64 * 16 * 4),
    ("unet_up1-like", 512, 1024, 784),
    ("dilated-like", 64, 64 * 9, 8 * 32 * 32),
]


def _clock(fn, now):
    t = now()
    fn()
    return now() - t


def measure(m, k, n, dtype, reps, blocks=None, threads=1, seed=0):
    """Best and median seconds of the engine and of ``np.matmul`` on one shape.

    With one engine thread both run on the calling thread, and the clock is that thread's
    CPU time (``time.thread_time``): the time other processes hold the core is left out,
    though their use of the shared caches is not. With more, it is wall-clock time.
    """
    now = time.thread_time if threads == 1 else time.perf_counter
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype)
    engine = lambda: gemm(a, b, c, blocks=blocks, threads=threads)  # noqa: E731
    blas = lambda: np.matmul(a, b, out=c)  # noqa: E731
    engine()
    blas()
    te, tb = [], []
    for _ in range(reps):
        te.append(_clock(engine, now))
        tb.append(_clock(blas, now))
    return min(te), float(np.median(te)), min(tb), float(np.median(tb))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--dtype", choices=["float32", "float64"], action="append")
    parser.add_argument("--shape", action="append", help="M,K,N (repeatable)")
    parser.add_argument("--blocks", help="KC,MC,NC instead of the engine's defaults")
    parser.add_argument("--threads", type=int, default=1, help="engine tasks (BLAS stays at 1)")
    args = parser.parse_args(argv)
    shapes = SHAPES if not args.shape else [
        (s, *map(int, s.split(","))) for s in args.shape]
    blocks = tuple(map(int, args.blocks.split(","))) if args.blocks else None
    blas = [(i.get("internal_api"), i.get("version"), i.get("architecture"))
            for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"target: {simd.ISA}, {simd.VECTOR_BITS}-bit vectors, {simd.REGISTERS} registers; "
          f"BLAS: {blas}; engine threads {args.threads}, BLAS threads 1")
    print(f"{'shape':<15}{'dtype':<9}{'M,K,N':>17}{'tile':>7}{'KC,MC,NC':>15}"
          f"{'engine best/med':>17}{'BLAS best/med':>15}{'ratio':>7}")
    with threadpool_limits(1):
        for dtype in args.dtype or ["float32", "float64"]:
            mr, nr = simd.tile(dtype)
            kc, mc, nc = blocks or blocking(dtype)
            for name, m, k, n in shapes:
                te, tem, tb, tbm = measure(m, k, n, dtype, args.reps, blocks, args.threads)
                gf = 2.0 * m * k * n / 1e9
                print(f"{name:<15}{dtype:<9}{f'{m},{k},{n}':>17}{f'{mr}x{nr}':>7}"
                      f"{f'{kc},{mc},{nc}':>15}{f'{gf / te:7.1f} /{gf / tem:6.1f}':>17}"
                      f"{f'{gf / tb:6.1f} /{gf / tbm:6.1f}':>15}{tb / te:7.2f}", flush=True)


if __name__ == "__main__":
    main()
