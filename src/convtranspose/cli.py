"""Command line: ``python -m convtranspose {info,check,bench}``."""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np

CPU_BACKENDS = ("direct", "im2col", "auto")
ALL_BACKENDS = (*CPU_BACKENDS, "cuda")


def _versions():
    import numba
    import scipy
    from . import __version__
    rows = [("convtranspose", __version__), ("python", platform.python_version()),
            ("numpy", np.__version__), ("scipy", scipy.__version__), ("numba", numba.__version__)]
    try:
        import torch
        rows.append(("torch", torch.__version__))
    except ImportError:
        rows.append(("torch", "not installed (cross-checks and ratios skipped)"))
    return rows


def _threading():
    import numba
    from . import conv_transpose2d
    from ._threading import threading_layer
    # a problem above direct.SERIAL_FLOPS, so the parallel kernel starts the thread pool
    conv_transpose2d(np.zeros((1, 16, 16, 16)), np.zeros((16, 16, 3, 3)), backend="direct")
    return [("numba threading layer", threading_layer() or "not started"),
            ("numba threads", f"{numba.get_num_threads()} of {numba.config.NUMBA_NUM_THREADS}")]


def _blas():
    from .cpu.blas import blas_info
    info = blas_info()
    rows = [("BLAS", f"{info.get('library')} {info.get('version')}, architecture "
                     f"{info.get('architecture')}, {info.get('threads')} threads, "
                     f"CPU AVX-512: {info.get('cpu_avx512')}")]
    if info.get("warning"):
        rows.append(("WARNING", info["warning"]))
    return rows


def _gpu():
    from . import cuda
    info = cuda.info()
    if info["available"]:
        where = "Numba's CUDA simulator" if info["simulator"] else \
            f"{info['device']}, compute capability {info['compute_capability']}"
        return [("GPU", where), ("CUDA implementation", info["implementation"])]
    return [("GPU", f"none seen ({info.get('reason', 'unavailable')})"),
            ("CUDA implementation", info["implementation"])]


def _backends():
    """CPU backends, plus ``cuda`` when a real GPU is present (not the simulator)."""
    from . import cuda
    names = list(CPU_BACKENDS)
    if cuda.is_available() and not cuda.info()["simulator"]:
        names.append("cuda")
    return names


def cmd_info(args):
    from .dispatch import BACKENDS, GPU_BACKENDS
    rows = _versions() + _threading() + _blas()
    rows.append(("backends", ", ".join([*BACKENDS, *GPU_BACKENDS])))
    rows += _gpu()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_check(args):
    from .check import run_check
    ok = run_check(args.backends or _backends(), [np.dtype(d) for d in args.dtype], count=args.count,
                   seed=args.seed, suite=not args.no_suite)
    print("all backends agree with the reference" if ok else "MISMATCH: see FAIL lines above")
    return 0 if ok else 1


def cmd_bench(args):
    from .bench import format_table, run_suite
    from .suite import get
    try:
        shapes = None if not args.shapes else [get(s) for s in args.shapes]
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.threads:
        import numba
        numba.set_num_threads(args.threads)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    if args.backward:
        from .bench_backward import run_backward_suite
        backends = [b for b in args.backends or CPU_BACKENDS if b in CPU_BACKENDS]
        report = run_backward_suite(shapes, backends, np.dtype(args.dtype), repeat=args.repeat,
                                    with_torch=not args.no_torch, clock=clock)
    else:
        report = run_suite(shapes, args.backends or _backends(), np.dtype(args.dtype),
                           repeat=args.repeat, with_torch=not args.no_torch, clock=clock)
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"saved {args.json}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m convtranspose",
                                     description="PyTorch-exact conv_transpose2d for NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threading, BLAS, backends, GPU")
    p = sub.add_parser("check", help="compare every backend with the float64 reference")
    p.add_argument("--backends", nargs="+", choices=ALL_BACKENDS,
                   help="default: the CPU backends, and cuda when a GPU is present")
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"])
    p.add_argument("--count", type=int, default=500, help="random problems (default 500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-suite", action="store_true", help="skip the benchmark-suite shapes")
    p = sub.add_parser("bench", help="time the benchmark suite against PyTorch")
    p.add_argument("--shapes", nargs="+", help="suite shape names (default: all)")
    p.add_argument("--backends", nargs="+", choices=ALL_BACKENDS,
                   help="default: the CPU backends, and cuda when a GPU is present")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=5, help="samples per median (default 5)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--backward", action="store_true",
                   help="time conv_transpose2d_backward against torch autograd instead")
    p.add_argument("--threads", type=int, help="Numba and PyTorch threads (default: all)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time the calling thread's CPU time (with --threads 1 and "
                        "OPENBLAS_NUM_THREADS=1: stable on a shared machine)")
    p.add_argument("--json", metavar="FILE", help="save the results as JSON")
    args = parser.parse_args(argv)
    return {"info": cmd_info, "check": cmd_check, "bench": cmd_bench}[args.command](args)
