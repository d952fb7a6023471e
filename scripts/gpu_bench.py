"""GPU benchmark of the DESIGN.md suite: the ``cuda`` backend against PyTorch cuDNN.

Run on a machine with a CUDA GPU and PyTorch with CUDA (``scripts/gpu_run.sh`` does)::

    PYTHONPATH=src python3 scripts/gpu_bench.py [--markdown docs/gpu-results.md] [--dtype float32]

Each suite shape runs with its batch scaled up until one call does at least
``--min-gflop`` GFLOP or moves ``--min-gib`` GiB, within ``--max-gib`` GiB of input plus
output. Inputs are torch CUDA tensors, so the timed call is the public
``conv_transpose2d`` on torch tensors (torch in, torch out, torch's stream). Times are
medians of synchronised calls after warm-up (the first call, JIT compilation included,
is reported on its own). cuDNN runs with ``cudnn.benchmark = True``, once with TF32 off
(strict fp32) and once with TF32 on. GFLOP/s counts ``2*N*C_in*(C_out/groups)*kH*kW*H*W``.

Prints markdown ready for docs/gpu-results.md, then a short plain table last.
``--smoke`` checks the script itself on a machine without a GPU (CPU tensors, the CPU
backends, batch 1); its numbers mean nothing.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import math
import platform
import statistics
import sys
import time

import numpy as np

import convtranspose as ct
from convtranspose import cuda as ctcuda
from convtranspose.cuda import kernels
from convtranspose.suite import SUITE

#: FP32 lanes per multiprocessor by compute capability (CUDA programming guide).
_FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
               (9, 0): 128, (10, 0): 128, (12, 0): 128}


def _version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "-"


def _peak_fp32(smoke):
    """Non-tensor FP32 peak, FLOP/s: SMs x lanes x 2 x the boost clock."""
    if smoke:
        return float("nan")
    from numba import cuda
    dev = cuda.get_current_device()
    lanes = _FP32_LANES.get(tuple(dev.compute_capability), 128)
    return dev.MULTIPROCESSOR_COUNT * lanes * 2 * dev.CLOCK_RATE * 1e3


def _batch(shape, itemsize, min_gflop, min_gib, max_gib):
    h_out, w_out = ct.output_shape(shape.x_shape, shape.w_shape, **shape.kwargs())[2:]
    per_image_bytes = itemsize * (shape.c_in * shape.h * shape.w + shape.c_out * h_out * w_out)
    per_image_flop = shape.flops / shape.n
    want = max(min_gflop * 1e9 / per_image_flop, min_gib * 2**30 / per_image_bytes, shape.n)
    cap = max(1, int(max_gib * 2**30 // per_image_bytes))
    return int(min(math.ceil(want), cap))


def _median_ms(fn, repeat, smoke=False):
    if smoke:                       # CPU smoke run: nothing to synchronise
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)
    return 1e3 * statistics.median(ctcuda.time_call(fn, repeat=repeat, warmup=2))


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
    ap.add_argument("--smoke", action="store_true",
                    help="check this script without a GPU: CPU tensors, CPU backends, tiny batches")
    args = ap.parse_args(argv)
    smoke = args.smoke
    dev = "cpu" if smoke else "cuda"

    import torch
    import torch.nn.functional as F
    if not smoke and not (torch.cuda.is_available() and ctcuda.is_available()):
        sys.exit("gpu_bench.py needs a CUDA GPU visible to both torch and numba.cuda")
    torch.backends.cudnn.benchmark = True
    tdtype = getattr(torch, args.dtype)
    itemsize = np.dtype(args.dtype).itemsize
    info = ctcuda.info()
    peak = _peak_fp32(smoke)
    sync = (lambda: None) if smoke else torch.cuda.synchronize
    shapes = [s for s in SUITE if not args.shapes or s.name in args.shapes]

    rows = []
    for shape in shapes:
        n = 1 if smoke else _batch(shape, itemsize, args.min_gflop, args.min_gib, args.max_gib)
        gen = torch.Generator(device=dev).manual_seed(0)
        x = torch.randn((n, *shape.x_shape[1:]), generator=gen, device=dev, dtype=tdtype)
        bound = 1.0 / math.sqrt(shape.w_shape[1] * shape.k ** 2)
        w = (torch.rand(shape.w_shape, generator=gen, device=dev, dtype=tdtype) * 2 - 1) * bound
        b = (torch.rand(shape.c_out, generator=gen, device=dev, dtype=tdtype) * 2 - 1) * bound
        kw = shape.kwargs()
        flop = shape.flops / shape.n * n
        if smoke:
            xn, wn, bn = x.numpy(), w.numpy(), b.numpy()
            call = lambda: torch.from_numpy(ct.conv_transpose2d(xn, wn, bn, **kw))  # noqa: E731
        else:
            call = lambda: ct.conv_transpose2d(x, w, b, **kw)  # noqa: E731

        kernel = kernels.pick_kernel(tuple(x.shape), tuple(w.shape), shape.groups)
        ours = strict = None
        first_s = ours_ms = fp32_ms = tf32_ms = err = float("nan")
        try:
            sync()
            t0 = time.perf_counter()
            ours = call()
            sync()
            first_s = time.perf_counter() - t0
            ours_ms = _median_ms(call, args.repeat, smoke)
        except Exception as exc:        # record and go on: one shape must not lose the rest
            print(f"# {shape.name}: cuda backend failed: {exc!r}", file=sys.stderr)
        conv = lambda: F.conv_transpose2d(x, w, b, **kw)  # noqa: E731
        try:
            torch.backends.cudnn.allow_tf32 = False
            strict = conv()
            fp32_ms = _median_ms(conv, args.repeat, smoke)
            torch.backends.cudnn.allow_tf32 = True
            tf32_ms = _median_ms(conv, args.repeat, smoke)
        except Exception as exc:
            print(f"# {shape.name}: cuDNN failed: {exc!r}", file=sys.stderr)
        finally:
            torch.backends.cudnn.allow_tf32 = False
        if ours is not None and strict is not None:
            scale = strict.abs().max().item() or 1.0
            err = (ours - strict).abs().max().item() / scale
        rows.append(dict(name=shape.name, n=n, kernel=kernel, first_s=first_s, ours=ours_ms,
                         fp32=fp32_ms, tf32=tf32_ms, gflops=flop / ours_ms / 1e6,
                         pct=100 * flop / (ours_ms * 1e-3) / peak, err=err))
        del x, w, b, ours, strict
        if not smoke:
            torch.cuda.empty_cache()
        print(f"# {shape.name}: N={n} {ours_ms:.3f} ms (cuDNN fp32 {fp32_ms:.3f}, "
              f"tf32 {tf32_ms:.3f})", file=sys.stderr, flush=True)

    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    md = [f"## {today}: {info.get('device')} (compute capability "
          f"{'.'.join(map(str, info.get('compute_capability', ())))})", "",
          f"- convtranspose {ct.__version__}, {info['implementation']}, numba {_version('numba')}, "
          f"torch {torch.__version__} (cuDNN {torch.backends.cudnn.version()}), "
          f"CuPy {_version('cupy-cuda13x') if _version('cupy-cuda13x') != '-' else _version('cupy-cuda12x')}, "
          f"Python {platform.python_version()}",
          f"- CUDA tests (`python -m pytest tests/cuda`, real GPU): {args.tests}",
          f"- dtype {args.dtype}; FP32 peak (SMs x lanes x 2 x boost clock) "
          f"{peak / 1e12:.1f} TFLOP/s; batch N scaled up per shape (>= {args.min_gflop:g} GFLOP "
          f"or >= {args.min_gib:g} GiB per call, <= {args.max_gib:g} GiB); median of "
          f"{args.repeat} synchronised calls; cuDNN with `cudnn.benchmark = True`",
          f"- launch shapes: gather {kernels.GATHER_THREADS} threads; tiled "
          f"{kernels.TILE_CO}x{kernels.TILE_P} tile, {kernels.TILE_K} channels per stage, "
          f"{kernels.REG_CO}x{kernels.REG_P} per thread; tiled when C/groups >= "
          f"{kernels.TILED_MIN_CHANNELS}", "",
          "| shape | N | kernel | first call s | cuda ms | GFLOP/s | % FP32 peak | cuDNN fp32 ms "
          "| cuDNN TF32 ms | cuda / fp32 | cuda / TF32 | max rel. err vs fp32 |",
          "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        md.append(f"| {r['name']} | {r['n']} | {r['kernel']} | {r['first_s']:.2f} | {r['ours']:.3f} "
                  f"| {r['gflops']:.0f} | {r['pct']:.1f} | {r['fp32']:.3f} | {r['tf32']:.3f} "
                  f"| {r['ours'] / r['fp32']:.2f} | {r['ours'] / r['tf32']:.2f} | {r['err']:.1e} |")
    text = "\n".join(md) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)

    print(f"{'shape':<13} {'N':>6} {'kernel':<7} {'cuda ms':>9} {'fp32 ms':>9} {'tf32 ms':>9} "
          f"{'x fp32':>7} {'GFLOP/s':>8}")
    for r in rows:
        print(f"{r['name']:<13} {r['n']:>6} {r['kernel']:<7} {r['ours']:>9.3f} {r['fp32']:>9.3f} "
              f"{r['tf32']:>9.3f} {r['ours'] / r['fp32']:>7.2f} {r['gflops']:>8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
