"""Command line: ``python -m convtranspose {info,check,bench,compile}``."""
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
    from .. import __version__
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
    from .. import conv_transpose2d
    from .._threading import threading_layer
    # a problem above direct.SERIAL_FLOPS, so the parallel kernel starts the thread pool
    conv_transpose2d(np.zeros((1, 16, 16, 16)), np.zeros((16, 16, 3, 3)), backend="direct")
    return [("numba threading layer", threading_layer() or "not started"),
            ("numba threads", f"{numba.get_num_threads()} of {numba.config.NUMBA_NUM_THREADS}")]


def _blas():
    from ..cpu.blas import blas_info
    info = blas_info()
    rows = [("BLAS", f"{info.get('library')} {info.get('version')}, architecture "
                     f"{info.get('architecture')}, {info.get('threads')} threads, "
                     f"CPU AVX-512: {info.get('cpu_avx512')}")]
    if info.get("warning"):
        rows.append(("WARNING", info["warning"]))
    return rows


def _gpu():
    from .. import cuda
    info = cuda.info()
    if info["available"]:
        where = "Numba's CUDA simulator" if info["simulator"] else \
            f"{info['device']}, compute capability {info['compute_capability']}"
        return [("GPU", where), ("CUDA implementation", info["implementation"])]
    return [("GPU", f"none seen ({info.get('reason', 'unavailable')})"),
            ("CUDA implementation", info["implementation"])]


def _backends():
    """CPU backends, plus ``cuda`` when a real GPU is present (not the simulator)."""
    from .. import cuda
    names = list(CPU_BACKENDS)
    if cuda.is_available() and not cuda.info()["simulator"]:
        names.append("cuda")
    return names


def cmd_info(args):
    from ..dispatch import BACKENDS, GPU_BACKENDS
    rows = _versions() + _threading() + _blas()
    rows.append(("backends", ", ".join(["auto (default)", *BACKENDS, *GPU_BACKENDS])))
    rows += _gpu()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def cmd_check(args):
    from .check import run_check
    ok = run_check(args.backends or _backends(), [np.dtype(d) for d in args.dtype],
                   count=args.count, seed=args.seed, suite=not args.no_suite)
    print("all backends agree with the reference" if ok else "MISMATCH: see FAIL lines above")
    return 0 if ok else 1


def cmd_compile(args):
    import llvmlite.binding
    import numba
    from .._jit import disk_cache
    from .precompile import compile_kernels
    if not disk_cache():
        print("no writable location for Numba's disk cache: compiling ahead of time would be "
              "lost; set NUMBA_CACHE_DIR to a writable directory", file=sys.stderr)
        return 1
    where = numba.config.CACHE_DIR or "__pycache__ folders beside the package's modules"
    print(f"compiling every CPU kernel for {', '.join(args.dtype)} into Numba's disk cache "
          f"({where}); the cache is keyed by the CPU (this one: "
          f"{llvmlite.binding.get_host_cpu_name()}), so run this on the CPU model that will "
          "run the code", flush=True)
    start = time.perf_counter()
    done = compile_kernels(args.dtype, args.kernels, stream=sys.stdout)
    compiled = sum(r["compiled"] for r in done)
    print(f"done in {time.perf_counter() - start:.0f} s: {compiled} compiled, "
          f"{len(done) - compiled} already in the cache")
    return 0


def cmd_bench(args):
    from .bench import format_table, run_suite
    from ..suite import HELD_OUT, RANKS_LAYOUTS, get
    try:
        shapes = None if not args.shapes else [get(s) for s in args.shapes]
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    if args.dtype not in ("float32", "float64") and (args.networks or args.backward or args.dask):
        print(f"--dtype {args.dtype} times the forward suites only (not --networks, "
              "--backward or --dask)", file=sys.stderr)
        return 2
    if args.dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:
            print("--dtype bfloat16 needs the ml_dtypes package", file=sys.stderr)
            return 2
        args.dtype = ml_dtypes.bfloat16
    if args.held_out:
        shapes = (shapes or []) + [s for s in HELD_OUT if s not in (shapes or [])]
    if args.ranks_layouts:
        shapes = (shapes or []) + [s for s in RANKS_LAYOUTS if s not in (shapes or [])]
    if args.dask:
        return _bench_dask(args)
    if args.threads is not None:
        import numba
        numba.set_num_threads(args.threads)
    clock = time.thread_time if args.cpu_time else time.perf_counter
    if args.networks:
        from .bench_networks import format_networks_table, run_networks
        report = run_networks(None, [b for b in args.backends or ["auto"] if b in CPU_BACKENDS],
                              np.dtype(args.dtype), repeat=args.repeat,
                              with_torch=not args.no_torch, clock=clock)
        return _report(format_networks_table(report), report, args.json)
    if args.backward:
        from .bench_backward import run_backward_suite
        backends = [b for b in args.backends or CPU_BACKENDS if b in CPU_BACKENDS]
        report = run_backward_suite(shapes, backends, np.dtype(args.dtype), repeat=args.repeat,
                                    with_torch=not args.no_torch, clock=clock)
    else:
        report = run_suite(shapes, args.backends or _backends(), np.dtype(args.dtype),
                           repeat=args.repeat, with_torch=not args.no_torch, clock=clock)
    return _report(format_table(report), report, args.json)


def _report(table, data, path):
    """Print ``table``; save ``data`` as JSON at ``path`` when given."""
    print(table)
    if path:
        with open(path, "w") as fh:
            json.dump(data, fh, indent=1)
        print(f"saved {path}")
    return 0


def _bench_dask(args):
    try:
        import distributed  # noqa: F401
    except ImportError:
        print("bench --dask needs dask and distributed: pip install '.[dask]'", file=sys.stderr)
        return 2
    from .bench_dask import format_dask_table, run_dask_bench
    rows = run_dask_bench(size=args.size, tile=args.tile, batch=args.batch,
                          workers=tuple(args.workers), verify=not args.no_verify,
                          jobs=tuple(args.jobs))
    return _report(format_dask_table(rows), rows, args.json)


def _int_arg(problem):
    """An argparse type: an int that ``problem(value)`` finds no fault with (it returns
    ``None``, or the message argparse prints after the option's name)."""
    def parse(text):
        value = int(text)
        message = problem(value)
        if message:
            raise argparse.ArgumentTypeError(message)
        return value
    parse.__name__ = "int"      # argparse's "invalid int value: 'x'" names the type
    return parse


def _at_least(low):
    return _int_arg(lambda value: f"must be >= {low}, got {value}" if value < low else None)


def _thread_count_problem(value):
    """What is wrong with ``value`` threads: Numba accepts 1..NUMBA_NUM_THREADS."""
    import numba
    most = numba.config.NUMBA_NUM_THREADS
    if not 1 <= value <= most:
        return f"must be between 1 and NUMBA_NUM_THREADS = {most}, got {value}"
    return None


def _shape_names(text):
    """An argparse type: one suite shape name, or several separated by commas."""
    return [name for name in text.split(",") if name]


def _check_args(parser, args):
    """What argparse cannot check alone; ``parser.error`` (exit 2, with the usage of
    ``parser``: the subcommand's) names the problem."""
    if args.command == "check" and args.count == 0 and args.no_suite:
        parser.error("nothing to check: --count 0 with --no-suite")
    if "cuda" in (getattr(args, "backends", None) or ()):
        from .. import cuda
        info = cuda.info()
        if not info["available"]:
            parser.error(f"--backends cuda needs a GPU: {info.get('reason', 'none seen')}")
    if getattr(args, "shapes", None):
        args.shapes = [name for names in args.shapes for name in names]
    if getattr(args, "json", None):
        try:        # fail now, not after the whole run; "a" keeps an existing file
            open(args.json, "a").close()
        except OSError as exc:
            parser.error(f"--json {args.json}: cannot write: {exc.strerror}")


def main(argv=None):
    """Run the command line; return the exit status (0 ok, 1 mismatch, 2 usage error).

    Examples
    --------
    >>> from convtranspose.tools.cli import main
    >>> main(["check", "--count", "3", "--no-suite", "--backends", "direct",
    ...       "--dtype", "float64"])     # doctest: +ELLIPSIS
    checking 3 random problems and 0 suite shapes
    checked 3/3 ...
    all backends agree with the reference
    0
    """
    from .precompile import STEPS
    parser = argparse.ArgumentParser(prog="python -m convtranspose",
                                     description="PyTorch-exact conv_transpose2d for NumPy.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="versions, threading, BLAS, backends, GPU")
    p = sub.add_parser("check", help="compare every backend with the float64 reference")
    p.add_argument("--backends", nargs="+", choices=ALL_BACKENDS,
                   help="default: the CPU backends, and cuda when a GPU is present")
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"], help="default: float32 float64")
    p.add_argument("--count", type=_at_least(0), default=500,
                   help="random problems (default 500)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random problems and their arrays (default 0)")
    p.add_argument("--no-suite", action="store_true", help="skip the benchmark-suite shapes")
    p = sub.add_parser("bench", help="time the benchmark suite against PyTorch")
    p.add_argument("--shapes", nargs="+", type=_shape_names,
                   help="suite shape names, separated by spaces or commas (default: all)")
    p.add_argument("--held-out", action="store_true",
                   help="the held-out layers (suite.HELD_OUT: real networks' layers that no "
                        "tuning used) instead of the suite, or after --shapes")
    p.add_argument("--ranks-layouts", action="store_true",
                   help="the 1-D, 3-D and channels-last layers (suite.RANKS_LAYOUTS) instead "
                        "of the suite, or after --shapes")
    p.add_argument("--networks", action="store_true",
                   help="whole networks (suite.NETWORKS: NumPy between the layers) against "
                        "the same networks in PyTorch, instead of the suite (default backend "
                        "auto)")
    p.add_argument("--backends", nargs="+", choices=ALL_BACKENDS,
                   help="default: the CPU backends, and cuda when a GPU is present")
    p.add_argument("--dtype", default="float32",
                   choices=["float32", "float64", "float16", "bfloat16", "complex64",
                            "complex128"],
                   help="default: float32 (bfloat16 needs ml_dtypes; the forward suites only; "
                        "GFLOP/s count a complex product as four real ones)")
    p.add_argument("--repeat", type=_at_least(1), default=5,
                   help="samples per median (default 5)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch")
    p.add_argument("--backward", action="store_true",
                   help="time conv_transpose{1,2,3}d_backward against torch autograd instead")
    p.add_argument("--threads", type=_int_arg(_thread_count_problem),
                   help="Numba and PyTorch threads, 1..NUMBA_NUM_THREADS (default: all)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time the calling thread's CPU time (with --threads 1 and "
                        "OPENBLAS_NUM_THREADS=1: stable on a shared machine)")
    p.add_argument("--json", metavar="FILE", help="save the results as JSON")
    p.add_argument("--dask", action="store_true",
                   help="scale-out figures on a dask.distributed LocalCluster instead: an "
                        "image upsampled tile by tile, a decoder layer over a chunked batch")
    p.add_argument("--jobs", nargs="+", choices=["image", "decoder"],
                   default=["image", "decoder"], help="with --dask: which jobs")
    p.add_argument("--size", type=_at_least(8), default=16384,
                   help="with --dask: image side (default 16384)")
    p.add_argument("--tile", type=_at_least(8), default=2048,
                   help="with --dask: image chunk side (default 2048)")
    p.add_argument("--batch", type=_at_least(1), default=1024,
                   help="with --dask: decoder batch (default 1024, chunks of 64)")
    p.add_argument("--workers", type=_at_least(1), nargs="+", default=[1, 2],
                   help="with --dask: worker processes per run (default 1 2)")
    p.add_argument("--no-verify", action="store_true",
                   help="with --dask: skip comparing the image with the NumPy call")
    p = sub.add_parser("compile", help="compile every CPU kernel ahead of time into Numba's "
                                       "disk cache (a Docker build, CI)")
    p.add_argument("--dtype", nargs="+", default=["float32", "float64"],
                   choices=["float32", "float64"], help="default: float32 float64")
    p.add_argument("--kernels", nargs="+", choices=[step.name for step in STEPS],
                   metavar="NAME", help="only these kernels (default: all): "
                                        + ", ".join(step.name for step in STEPS))
    args = parser.parse_args(argv)
    _check_args(sub.choices[args.command], args)
    return {"info": cmd_info, "check": cmd_check, "bench": cmd_bench,
            "compile": cmd_compile}[args.command](args)
