"""Command line: ``python -m convtranspose {info,check,bench}``."""
from __future__ import annotations

import argparse
import json
import platform
import sys

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
    conv_transpose2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)))  # starts the thread pool
    return [("numba threading layer", numba.threading_layer()),
            ("numba threads", f"{numba.get_num_threads()} of {numba.config.NUMBA_NUM_THREADS}")]


def _blas():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [("BLAS", "install threadpoolctl to see which BLAS and CPU kernels NumPy uses")]
    rows = []
    for pool in threadpool_info():
        if pool.get("user_api") == "blas":
            rows.append(("BLAS", f"{pool.get('internal_api')} {pool.get('version')}, "
                                 f"architecture {pool.get('architecture')}, "
                                 f"{pool.get('num_threads')} threads ({pool.get('filepath')})"))
    return rows or [("BLAS", "no BLAS library reported by threadpoolctl")]


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
    report = run_suite(shapes, args.backends or _backends(), np.dtype(args.dtype), repeat=args.repeat,
                       with_torch=not args.no_torch)
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
    p.add_argument("--json", metavar="FILE", help="save the results as JSON")
    args = parser.parse_args(argv)
    return {"info": cmd_info, "check": cmd_check, "bench": cmd_bench}[args.command](args)
