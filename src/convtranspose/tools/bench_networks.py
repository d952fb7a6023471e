"""Timing of whole networks (``suite.NETWORKS``) against the same networks in PyTorch.

A network runs the library's public functions with plain NumPy between the layers, so it
shows what per-layer timings hide: a layer that starts right after NumPy's (or the
library's own) BLAS call, whose threads may still hold a core. Each network is first
checked against PyTorch (the largest difference relative to PyTorch's largest value),
then ours and PyTorch's are timed alternately in the same run (medians after warm-up).
Run ``python -m convtranspose bench --networks [--dtype float64] [--json FILE]``.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from .bench import _meta, gemm_gflops, interleaved_times, match_torch_threads, table_lines
from ..suite import NETWORKS, torch_outputs

__all__ = ["max_error", "run_networks", "format_networks_table"]


def max_error(ours, theirs):
    """``max |ours - theirs| / max |theirs|`` over a network's outputs (float64)."""
    worst = 0.0
    for a, b in zip(ours, theirs):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = float(np.max(np.abs(b))) or 1.0
        worst = max(worst, float(np.max(np.abs(a - b))) / scale)
    return worst


def _load():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def run_networks(networks=None, backends=("auto",), dtype=np.float32, repeat=5,
                 with_torch=True, progress="stderr", clock=time.perf_counter):
    """Check and time each network; return a JSON-ready dict.

    ``{"meta": {..., "load_before": [1, 5, 15 min]}, "results": [{"network", "backend",
    "dtype", "median_s", "min_s", "ratio_torch", "max_error"}, ...]}``: ``"backend":
    "torch"`` rows hold PyTorch's times; ``max_error`` is :func:`max_error` of this
    backend's outputs against PyTorch's (None without torch).
    """
    progress = sys.stderr if progress == "stderr" else progress
    load = _load()
    networks = list(NETWORKS if networks is None else networks)
    threads, with_torch = match_torch_threads(with_torch)
    dtype = np.dtype(dtype)
    gemm = gemm_gflops(dtype, repeat=3)
    rows = []
    for net in networks:
        fns = {}
        runner = net.torch_runner(dtype) if with_torch else None
        expected = None
        if runner is not None:
            fns["torch"] = runner
            expected = torch_outputs(runner())
        errors = {}
        for backend in backends:
            fns[backend] = net.runner(dtype, backend)
            if expected is not None:
                errors[backend] = max_error(fns[backend](), expected)
        if progress is not None:
            progress.write(f"  {net.name}: checked "
                           + ", ".join(f"{b} {e:.1e}" for b, e in errors.items()) + "\n")
            progress.flush()
        times = interleaved_times(fns, repeat, clock=clock)
        t_torch = float(np.median(times["torch"])) if "torch" in times else None
        for name, samples in times.items():
            t = float(np.median(samples))
            rows.append(dict(network=net.name, backend=name, dtype=dtype.name, median_s=t,
                             min_s=float(np.min(samples)),
                             ratio_torch=None if t_torch is None else t / t_torch,
                             max_error=errors.get(name)))
    meta = _meta(dtype, threads, gemm)
    meta.update(load_before=load, load_after=_load(),
                clock="thread CPU time" if clock is time.thread_time else "wall time")
    return dict(meta=meta, results=rows)


def format_networks_table(report):
    """The report as a fixed-width table: per network and backend, ms, the ratio to
    PyTorch and the error against it; geometric means of the ratios last."""
    meta, rows = report["meta"], report["results"]
    load = meta.get("load_before")
    load = "unknown" if not load else " ".join(f"{v:.2f}" for v in load)
    head = (f"networks, dtype {meta['dtype']}, {meta['threads']} threads, GEMM "
            f"{meta['gemm_gflops']:.0f} GFLOP/s, load average before {load}; per backend: "
            "ms (time / torch) max error vs torch")

    def cell(r, ratio):
        err = "" if r["max_error"] is None else f"{r['max_error']:.1e}"
        return f"{r['median_s'] * 1e3:>11.2f} {ratio:>9} {err:>8}"
    return "\n".join([head, *table_lines(rows, "network", 13, cell)])
