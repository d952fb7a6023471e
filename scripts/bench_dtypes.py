"""Time the forward suite in another dtype beside float32, and PyTorch in both, in one run.

Usage::

    python scripts/bench_dtypes.py complex64 [--shapes a b] [--ranks-layouts] [--json F]
    python scripts/bench_dtypes.py float16 bfloat16

For each suite layer, ``backend="auto"`` in float32 and in each dtype named, and PyTorch's
CPU op in the same dtypes, their samples interleaved (``tools.bench.interleaved_times``,
median of 5 after a warm-up), 2 threads (Numba's count, given to PyTorch too). Prints each
dtype's time over this library's float32 time (the issues' targets: at most 1.1x for
float16 and bfloat16, 3.5x for complex64) and over PyTorch's time in that dtype, and their
geometric means. bfloat16 needs ``ml_dtypes``.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np

from convtranspose.suite import RANKS_LAYOUTS, SUITE, get
from convtranspose.tools.bench import (gemm_gflops, interleaved_times, match_torch_threads,
                                       torch_runner)


def _dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dtypes", nargs="+")
    p.add_argument("--shapes", nargs="+")
    p.add_argument("--ranks-layouts", action="store_true")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args(argv)
    threads, _ = match_torch_threads(True)
    shapes = ([get(s) for s in args.shapes] if args.shapes else
              RANKS_LAYOUTS if args.ranks_layouts else SUITE)
    dtypes = {"float32": np.dtype(np.float32), **{n: _dtype(n) for n in args.dtypes}}
    print(f"GEMM float32 {gemm_gflops(np.float32, repeat=3):.0f} GFLOP/s, {threads} threads")
    rows = []
    for s in shapes:
        kw, op = s.kwargs(), s.function()
        fns = {}
        for name, dt in dtypes.items():
            x, w, b = s.arrays(dt)
            fns[name] = (lambda x=x, w=w, b=b: op(x, w, b, **kw))
            fns["torch " + name] = torch_runner(x, w, b, kw, s.rank, s.channels_last)
        times = {k: float(np.median(v)) for k, v in
                 interleaved_times({k: f for k, f in fns.items() if f}, args.repeat).items()}
        rows.append(dict(shape=s.name, median_s=times))
        line = f"{s.name:16s} float32 {times['float32'] * 1e3:8.2f} ms"
        for name in args.dtypes:
            t = times[name]
            line += (f" | {name} {t * 1e3:8.2f} ms ({t / times['float32']:4.2f}x float32, "
                     f"{t / times['torch ' + name]:5.2f}x torch)")
        print(line, flush=True)
    for name in args.dtypes:
        def geo(key, base):
            return math.exp(np.mean([math.log(r["median_s"][key] / r["median_s"][base])
                                     for r in rows]))
        print(f"geomean {name}: {geo(name, 'float32'):.2f}x float32, "
              f"{geo(name, 'torch ' + name):.2f}x torch {name}, torch {name} "
              f"{geo('torch ' + name, 'torch float32'):.2f}x torch float32")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(threads=threads, rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
