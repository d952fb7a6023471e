"""Timing of the benchmark suite: medians of repeats after warm-up, against PyTorch.

Used by ``python -m convtranspose bench``; the JSON it writes is read by the
performance notebook. Speed is only ever measured here and in ``asv_benchmarks/``,
never asserted in unit tests.
"""
from __future__ import annotations

import datetime
import math
import platform
import sys
import time

import numpy as np

from .. import __version__
from ..api import conv_transpose2d
from ..suite import SUITE

__all__ = ["interleaved_times", "median_time", "gemm_gflops", "torch_runner", "run_suite", "geometric_mean",
           "format_table", "table_lines"]


def _loops(fn, min_seconds, clock):
    """How many calls make one sample last about ``min_seconds``."""
    t0 = clock()
    fn()
    return max(1, int(min_seconds / max(clock() - t0, 1e-9)))


def interleaved_times(fns, repeat=5, warmup=1, min_seconds=0.02, clock=time.perf_counter):
    """Per-call times of several callables, sampled in turn: ``{name: [seconds, ...]}``.

    Each round takes one sample of every callable, so load from other processes falls on
    all of them alike. Before each sample the callable runs once untimed: the thread pools
    of the library timed before it (PyTorch's OpenMP, Numba's, a BLAS's) spin on the
    cores for a while after their last call, and the sample of whatever runs next would
    pay for it. A sample of a fast call loops until it lasts ``min_seconds`` and reports
    the mean per call. ``clock=time.thread_time`` measures the calling thread's CPU time:
    stable on a shared machine, meaningful with one thread only.
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    loops = {name: _loops(fn, min_seconds, clock) for name, fn in fns.items()}
    samples = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            fn()        # settle: the previous library's spinning threads have backed off
            t0 = clock()
            for _ in range(loops[name]):
                fn()
            samples[name].append((clock() - t0) / loops[name])
    return samples


def median_time(fn, repeat=5, warmup=1, min_seconds=0.05, clock=time.perf_counter):
    """Median time of ``fn()`` in seconds over ``repeat`` samples after ``warmup`` calls
    (wall time, or ``clock``'s: see :func:`interleaved_times`)."""
    return float(np.median(interleaved_times({"f": fn}, repeat, warmup, min_seconds,
                                             clock)["f"]))


def gemm_gflops(dtype=np.float32, n=2048, repeat=5):
    """The measured rate of a square ``n x n`` GEMM (NumPy's BLAS), in GFLOP/s."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    t = median_time(lambda: np.matmul(a, b, out=c), repeat=repeat, min_seconds=0.0)
    return 2 * n ** 3 / t / 1e9


def torch_runner(x, w, b, kwargs, rank=2, channels_last=False):
    """A zero-argument callable running PyTorch's ``conv_transpose{rank}d`` on the CPU, or
    None. With ``channels_last`` ``x`` is ``(N, *spatial, C)`` and PyTorch gets it as a
    tensor in its channels-last memory format (its NHWC kernels), no copy."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    tx, tw, tb = (_tensor(torch, a) for a in (x, w, b))
    if channels_last:
        tx = tx.movedim(-1, 1)
    op = getattr(F, f"conv_transpose{rank}d")
    kw = dict(kwargs)

    def run():
        with torch.no_grad():
            return op(tx, tw, tb, **kw)
    return run


def _tensor(torch, a):
    """``a`` as a CPU tensor of its dtype (``ml_dtypes.bfloat16`` through its bits)."""
    a = np.ascontiguousarray(a)
    if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.view(np.uint16)).view(torch.bfloat16)
    return torch.from_numpy(a)


def work_dtype(dtype):
    """``(real dtype whose GEMM rate is the yardstick, real flops per counted flop)`` for a
    benchmark in ``dtype``: half precision computes in float32; a complex product is four
    real ones.

    Examples
    --------
    >>> import numpy as np
    >>> from convtranspose.tools.bench import work_dtype
    >>> work_dtype(np.dtype(np.complex64)), work_dtype(np.dtype(np.float16))
    ((dtype('float32'), 4), (dtype('float32'), 1))
    """
    if dtype.kind == "c":
        return np.dtype(f"f{dtype.itemsize // 2}"), 4
    return (np.dtype(np.float32), 1) if dtype.itemsize == 2 else (dtype, 1)


def match_torch_threads(with_torch=True):
    """Give PyTorch as many threads as Numba has; return ``(threads, torch usable)``."""
    import numba
    threads = numba.get_num_threads()
    if with_torch:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            with_torch = False
    return threads, with_torch


def geometric_mean(values):
    values = [v for v in values if v is not None and v > 0]
    return math.exp(sum(map(math.log, values)) / len(values)) if values else None


def _progress(done, total, label, stream, width=30):
    """Report ``done`` of ``total`` shapes timed, now on ``label``: a bar redrawn in place
    on a terminal; elsewhere (pipes, logs) one whole line per step, flushed."""
    if stream is None:
        return
    if stream.isatty():
        filled = int(width * done / max(total, 1))
        stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label:<28}"
                     + ("\n" if done == total else ""))
    else:
        stream.write(f"[{done}/{total}] {label}\n")
    stream.flush()


def _meta(dtype, threads, gemm):
    import numba
    try:
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                machine=platform.processor() or platform.machine(), platform=platform.platform(),
                python=platform.python_version(), numpy=np.__version__, numba=numba.__version__,
                convtranspose=__version__, torch=torch_version, threads=threads,
                dtype=np.dtype(dtype).name, gemm_gflops=gemm)


def run_suite(shapes=None, backends=("direct", "im2col", "auto"), dtype=np.float32,
              repeat=5, with_torch=True, progress="stderr", clock=time.perf_counter):
    """Time each backend (and PyTorch) on each suite shape; return a JSON-ready dict.

    ``{"meta": {...}, "results": [{"shape", "backend", "dtype", "median_s", "gflops",
    "ratio_torch"}, ...]}``; ``"backend": "torch"`` rows hold PyTorch's own CPU times and
    ``ratio_torch`` is this backend's time over PyTorch's in the same run. The ``cuda``
    backend is timed on device-resident arrays and compared with cuDNN (rows
    ``cudnn_fp32`` and ``cudnn_tf32``; its ratio is to cuDNN with TF32 off). Samples of
    PyTorch and of every CPU backend are interleaved (see :func:`interleaved_times`);
    ``median_s`` is the median, ``min_s`` the minimum.
    """
    progress = sys.stderr if progress == "stderr" else progress
    shapes = list(SUITE if shapes is None else shapes)
    threads, with_torch = match_torch_threads(with_torch)
    dtype = np.dtype(dtype)
    total = len(shapes)
    rows = []
    _progress(0, total, "GEMM rate", progress)
    part, scale = work_dtype(dtype)
    gemm = gemm_gflops(part, repeat=3)
    for i, shape in enumerate(shapes):
        _progress(i, total, shape.name, progress)
        x, w, b = shape.arrays(dtype)
        kw = shape.kwargs()
        out = shape.in_layout(np.empty(_out_shape(shape), dtype))
        op = shape.function()
        fns = {}
        runner = torch_runner(x, w, b, kw, shape.rank, shape.channels_last) \
            if with_torch else None
        if runner is not None:
            fns["torch"] = runner
        for backend in backends:
            if backend != "cuda":
                fns[backend] = (lambda backend=backend: op(x, w, b, out=out, backend=backend,
                                                           **kw))
        times = interleaved_times(fns, repeat, clock=clock)
        t_torch = float(np.median(times["torch"])) if "torch" in times else None
        for name, samples in times.items():
            t = float(np.median(samples))
            rows.append(dict(shape=shape.name, backend=name, dtype=dtype.name, median_s=t,
                             min_s=float(np.min(samples)),
                             gflops=scale * shape.flops / t / 1e9,
                             ratio_torch=None if t_torch is None else t / t_torch))
        if "cuda" in backends:
            rows += _cuda_rows(shape, dtype, repeat)
    _progress(total, total, "done", progress)
    meta = _meta(dtype, threads, gemm)
    meta["clock"] = "thread CPU time" if clock is time.thread_time else "wall time"
    return dict(meta=meta, results=rows)


def _cuda_rows(shape, dtype, repeat):
    """The ``cuda`` backend on device-resident arrays, against cuDNN when torch has CUDA."""
    from .. import cuda
    try:
        import torch
        has_cudnn = torch.cuda.is_available()
    except ImportError:
        has_cudnn = False
    if has_cudnn:
        from ..cuda.bench import measure
        m = measure(shape, dtype=dtype.name, repeat=max(repeat, 10))
        rows = [dict(shape=shape.name, backend=name, dtype=dtype.name, median_s=m[key] / 1e3,
                     gflops=shape.flops / (m[key] / 1e3) / 1e9,
                     ratio_torch=m[key] / m["cudnn_fp32_ms"])
                for name, key in (("cudnn_fp32", "cudnn_fp32_ms"), ("cudnn_tf32", "cudnn_tf32_ms"),
                                  ("cuda", "cuda_ms"))]
        return rows
    x, w, b = cuda.to_device(*shape.arrays(dtype))
    kw = shape.kwargs()
    t = float(np.median(cuda.time_call(lambda: conv_transpose2d(x, w, b, **kw), repeat)))
    return [dict(shape=shape.name, backend="cuda", dtype=dtype.name, median_s=t,
                 gflops=shape.flops / t / 1e9, ratio_torch=None)]


def _out_shape(shape):
    from ..params import output_shape
    return output_shape(shape.x_shape, shape.w_shape, **shape.kwargs())


def format_table(report):
    """The report as a fixed-width text table with geometric means of the ratios."""
    meta = report["meta"]
    ratios = any(r["ratio_torch"] is not None for r in report["results"])
    head = (f"dtype {meta['dtype']}, {meta['threads']} threads, GEMM {meta['gemm_gflops']:.0f} "
            "GFLOP/s; per backend: ms  GFLOP/s" + ("  (time / torch)" if ratios else ""))
    return "\n".join([head, *table_lines(
        report["results"], "shape", 14,
        lambda r, ratio: f"{r['median_s'] * 1e3:>11.3f} {r['gflops']:>8.1f} {ratio:>9}")])


def table_lines(rows, key, width, cell):
    """The lines of a table of ``rows``: a header, one line per ``row[key]`` with one column
    of 30 characters per backend (``cell(row, "(0.50x)")``), the geometric means of the
    ratios to PyTorch last; ``width`` is the first column's."""
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    by = {(r[key], r["backend"]): r for r in rows}
    names = list(dict.fromkeys(r[key] for r in rows))
    lines = [f"{key:<{width}}" + "".join(f"{b:>30}" for b in backends)]
    for name in names:
        cells = []
        for b in backends:
            r = by.get((name, b))
            if r is None:
                cells.append(f"{'-':>30}")
                continue
            ratio = "" if r["ratio_torch"] is None else f"({r['ratio_torch']:.2f}x)"
            cells.append(cell(r, ratio))
        lines.append(f"{name:<{width}}" + "".join(cells))
    gm = [geometric_mean([by[(n, b)]["ratio_torch"] for n in names if (n, b) in by])
          for b in backends]
    if any(g is not None for g in gm):
        lines.append(f"{'geomean':<{width}}" + "".join(
            f"{'' if g is None else f'({g:.2f}x)':>30}" for g in gm))
    return lines
