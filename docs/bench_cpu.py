"""Per-shape CPU timings of convtranspose against PyTorch, as quoted in docs/performance.md.

Usage: PYTHONPATH=src python docs/bench_cpu.py [float32|float64] [reps] [threads] [--cpu-time]

Every shape of the suite runs ``backend="auto"`` and ``torch.nn.functional.conv_transpose2d``
interleaved (one call of each per round, after one warm-up call), so load from other
processes hits both alike. Prints min and median ms, GFLOP/s of the min, the ratio of mins
and the geometric mean of the ratios. ``--cpu-time`` measures the calling thread's CPU time
(``time.thread_time``) instead of wall time: meaningful with one thread only, and robust on
a shared machine.
"""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

import convtranspose as ct
from convtranspose.suite import SUITE


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    dtype = np.dtype(args[0] if args else "float32")
    reps = int(args[1]) if len(args) > 1 else 7
    threads = int(args[2]) if len(args) > 2 else 2
    clock = time.thread_time if "--cpu-time" in sys.argv else time.perf_counter
    torch.set_num_threads(threads)
    import numba
    numba.set_num_threads(threads)
    ratios = []
    print(f"{dtype}, {threads} threads, {reps} rounds, "
          f"{'thread CPU time' if clock is time.thread_time else 'wall time'}")
    print(f"{'shape':13s} {'backend':>8s} {'ct min':>9s} {'ct med':>9s} {'GF/s':>6s} "
          f"{'torch min':>9s} {'torch med':>9s} {'GF/s':>6s} {'ratio':>6s}")
    for s in SUITE:
        x, w, b = s.arrays(dtype)
        kw = s.kwargs()
        tx, tw, tb = map(torch.from_numpy, (x, w, b))
        fs = {"ct": lambda: ct.conv_transpose2d(x, w, b, **kw),
              "torch": lambda: F.conv_transpose2d(tx, tw, tb, **kw)}
        ts = {k: [] for k in fs}
        for f in fs.values():
            f()
        for _ in range(reps):
            for k, f in fs.items():
                t0 = clock()
                f()
                ts[k].append(clock() - t0)
        c, t = min(ts["ct"]), min(ts["torch"])
        ratios.append(c / t)
        print(f"{s.name:13s} {ct.explain(x, w, **kw).backend:>8s} {c * 1e3:9.3f} "
              f"{np.median(ts['ct']) * 1e3:9.3f} {s.flops / c / 1e9:6.1f} {t * 1e3:9.3f} "
              f"{np.median(ts['torch']) * 1e3:9.3f} {s.flops / t / 1e9:6.1f} {c / t:6.2f}",
              flush=True)
    print(f"geometric mean of ratios: {np.exp(np.mean(np.log(ratios))):.3f}; "
          f"max {max(ratios):.2f}")


if __name__ == "__main__":
    main()
