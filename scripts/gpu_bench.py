"""GPU benchmark of the DESIGN.md suite: the ``cuda`` backend against PyTorch cuDNN.

Run on a machine with a CUDA GPU and PyTorch with CUDA (``scripts/gpu_run.sh`` does)::

    PYTHONPATH=src python3 scripts/gpu_bench.py [--markdown FILE] [--dtype float32]

Each suite shape runs with its batch scaled up (:func:`convtranspose.cuda.bench.scaled_batch`:
at least ``--min-gflop`` GFLOP or ``--min-gib`` GiB per call, within ``--max-gib`` GiB of
input plus output) and is measured by :func:`convtranspose.cuda.bench.measure`. Prints
markdown ready for docs/gpu-results.md, then a short plain table last. ``--smoke`` checks
this script on a machine without a GPU (CPU tensors, CPU backends, batch 1); its numbers
mean nothing.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import sys

import numpy as np

import convtranspose as ct
from convtranspose import cuda as ctcuda
from convtranspose.cuda import bench, kernels
from convtranspose.suite import SUITE


def _version(*names):
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "-"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--min-gflop", type=float, default=20.0)
    ap.add_argument("--min-gib", type=float, default=1.0)
    ap.add_argument("--max-gib", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--shapes", nargs="*", help="suite shape names (default: all)")
    ap.add_argument("--markdown", help="also write the markdown to this file")
    ap.add_argument("--tests", default="not run", help="a line saying how the CUDA tests went")
    ap.add_argument("--memcheck", default="not run",
                    help="a line saying how compute-sanitizer memcheck over the kernel tests went")
    ap.add_argument("--smoke", action="store_true",
                    help="check this script without a GPU: CPU tensors, CPU backends, batch 1")
    args = ap.parse_args(argv)

    import torch
    if not args.smoke and not (torch.cuda.is_available() and ctcuda.is_available()):
        sys.exit("gpu_bench.py needs a CUDA GPU visible to both torch and numba.cuda")
    info = ctcuda.info()
    peak = float("nan") if args.smoke else bench.peak_fp32()
    itemsize = np.dtype(args.dtype).itemsize
    rows = []
    for shape in SUITE:
        if args.shapes and shape.name not in args.shapes:
            continue
        n = 1 if args.smoke else bench.scaled_batch(shape, itemsize, args.min_gflop,
                                                    args.min_gib, args.max_gib)
        r = bench.measure(shape, n, args.dtype, args.repeat, smoke=args.smoke,
                          log=lambda msg: print("#", msg, file=sys.stderr, flush=True))
        r["pct"] = 100 * r["gflops"] * 1e9 / peak
        rows.append(r)
        print(f"# {shape.name}: N={n} {r['cuda_ms']:.3f} ms (cuDNN fp32 {r['cudnn_fp32_ms']:.3f}, "
              f"tf32 {r['cudnn_tf32_ms']:.3f})", file=sys.stderr, flush=True)

    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cc = ".".join(map(str, info.get("compute_capability", ())))
    md = [f"## {today}: {info.get('device')} (compute capability {cc})", "",
          f"- convtranspose {ct.__version__}, {info['implementation']}, numba {_version('numba')}, "
          f"torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}), "
          f"CuPy {_version('cupy-cuda13x', 'cupy-cuda12x', 'cupy')}, Python {platform.python_version()}",
          f"- CUDA tests (`python -m pytest tests/cuda`, real GPU): {args.tests}",
          "- `compute-sanitizer --tool memcheck` over the kernel tests "
          f"(`tests/cuda/test_{{kernels,edges,backward}}*.py`): {args.memcheck}",
          f"- dtype {args.dtype}; FP32 peak (SMs x lanes x 2 x boost clock) {peak / 1e12:.1f} "
          f"TFLOP/s; batch N scaled up per shape (>= {args.min_gflop:g} GFLOP or >= "
          f"{args.min_gib:g} GiB per call, <= {args.max_gib:g} GiB); median of {args.repeat} "
          "synchronised calls; cuDNN with `cudnn.benchmark = True`",
          f"- launch shapes: gather {kernels.GATHER_THREADS} threads; tiled "
          f"{kernels.TILE_CO}x{kernels.TILE_P} tile, {kernels.TILE_K} channels per stage, "
          f"{kernels.REG_CO}x{kernels.REG_P} per thread; tiled when C/groups >= "
          f"{kernels.TILED_MIN_CHANNELS}", "",
          "| shape | N | kernel | first call s | cuda ms | GFLOP/s | % FP32 peak | cuDNN fp32 ms "
          "| cuDNN TF32 ms | cuda / fp32 | cuda / TF32 | max rel. err vs fp32 |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['name']} | {r['n']} | {r['kernel']} | {r['first_s']:.2f} "
                  f"| {r['cuda_ms']:.3f} | {r['gflops']:.0f} | {r['pct']:.1f} "
                  f"| {r['cudnn_fp32_ms']:.3f} | {r['cudnn_tf32_ms']:.3f} "
                  f"| {r['cuda_ms'] / r['cudnn_fp32_ms']:.2f} "
                  f"| {r['cuda_ms'] / r['cudnn_tf32_ms']:.2f} | {r['err']:.1e} |")
    text = "\n".join(md) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)

    print(f"{'shape':<13} {'N':>6} {'kernel':<7} {'cuda ms':>9} {'fp32 ms':>9} {'tf32 ms':>9} "
          f"{'x fp32':>7} {'GFLOP/s':>8}")
    for r in rows:
        print(f"{r['name']:<13} {r['n']:>6} {r['kernel']:<7} {r['cuda_ms']:>9.3f} "
              f"{r['cudnn_fp32_ms']:>9.3f} {r['cudnn_tf32_ms']:>9.3f} "
              f"{r['cuda_ms'] / r['cudnn_fp32_ms']:>7.2f} {r['gflops']:>8.0f}")
    print(f"{'CUDA tests':<13} {args.tests}")
    print(f"{'memcheck':<13} {args.memcheck}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
