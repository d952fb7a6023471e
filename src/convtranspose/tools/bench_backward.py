"""Timing of ``conv_transpose{1,2,3}d_backward`` on the benchmark suite (or its other
ranks and layouts), against PyTorch's autograd backward of the same
``conv_transpose{1,2,3}d`` on the CPU, channels-last layers in PyTorch's channels-last
memory format (medians after warm-up).

The report has the layout of :func:`convtranspose.tools.bench.run_suite`, so
:func:`convtranspose.tools.bench.format_table` prints it; FLOPs count the input and weight
gradients, each as many as the forward (``2 * Shape.flops``). Run
``python -m convtranspose bench --backward [--ranks-layouts] [--threads 2]
[--dtype float32] [--shapes a b]``.
"""
from __future__ import annotations

import functools
import sys
import time

import numpy as np

from .bench import _meta, _out_shape, gemm_gflops, match_torch_threads, median_time
from ..suite import SUITE

__all__ = ["run_backward_suite", "torch_backward_runner"]


def torch_backward_runner(x, w, b, gy, kwargs, rank=2, channels_last=False):
    """A zero-argument callable running PyTorch autograd's backward of
    ``conv_transpose{rank}d`` (input, weight and bias gradients) on a graph built once, or
    None without torch. With ``channels_last``, ``x`` and ``gy`` are ``(N, *spatial, C)``
    and PyTorch gets them in its channels-last memory format, no copy."""
    try:
        import torch
    except ImportError:
        return None
    tx, tw, tb = (torch.from_numpy(np.ascontiguousarray(a)) for a in (x, w, b))
    tg = torch.from_numpy(gy)
    if channels_last:
        tx, tg = tx.movedim(-1, 1), tg.movedim(-1, 1)
    for t in (tx, tw, tb):
        t.requires_grad_()
    op = getattr(torch.nn.functional, f"conv_transpose{rank}d")
    y = op(tx, tw, tb, **kwargs)

    def run():
        return torch.autograd.grad(y, (tx, tw, tb), tg, retain_graph=True)
    return run


def _backward(shape):
    """``convtranspose.conv_transpose{rank}d_backward`` with the shape's ``data_format``."""
    import convtranspose
    f = getattr(convtranspose, f"conv_transpose{shape.rank}d_backward")
    return functools.partial(f, data_format=shape.data_format) if shape.channels_last else f


def run_backward_suite(shapes=None, backends=("auto",), dtype=np.float32, repeat=5,
                       with_torch=True, clock=time.perf_counter):
    """Time the backward of each suite shape; a report for :func:`format_table`.

    ``clock=time.thread_time`` measures the calling thread's CPU time (with one thread).
    """
    shapes = list(SUITE if shapes is None else shapes)
    threads, with_torch = match_torch_threads(with_torch)
    dtype = np.dtype(dtype)
    rows = []
    for shape in shapes:
        x, w, b = shape.arrays(dtype)
        kw = shape.kwargs()
        gy = shape.in_layout(np.random.default_rng(1).standard_normal(
            _out_shape(shape)).astype(dtype))
        work = 2 * shape.flops
        t_torch = None
        backward = _backward(shape)
        runner = torch_backward_runner(x, w, b, gy, kw, shape.rank, shape.channels_last) \
            if with_torch else None
        if runner is not None:
            t_torch = median_time(runner, repeat, clock=clock)
            rows.append(dict(shape=shape.name, backend="torch", dtype=dtype.name,
                             median_s=t_torch, gflops=work / t_torch / 1e9, ratio_torch=1.0))
        for backend in backends:
            t = median_time(lambda: backward(gy, x, w, backend=backend, **kw),
                            repeat, clock=clock)
            rows.append(dict(shape=shape.name, backend=backend, dtype=dtype.name, median_s=t,
                             gflops=work / t / 1e9,
                             ratio_torch=None if t_torch is None else t / t_torch))
        print(f"  {shape.name} done", file=sys.stderr, flush=True)
    return dict(meta=_meta(dtype, threads, gemm_gflops(dtype, repeat=3)), results=rows)
