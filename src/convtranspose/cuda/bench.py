"""GPU benchmark helpers: the ``cuda`` backend against PyTorch cuDNN on one suite shape.

One definition for ``scripts/gpu_bench.py`` (the H100 run) and ``python -m convtranspose
bench``. Needs PyTorch with CUDA (inputs are torch CUDA tensors, so the timed call is the
public ``conv_transpose2d`` with torch in and torch out on torch's stream), except with
``smoke=True``, which runs the same code on CPU tensors and the CPU backends to check it
on a machine without a GPU (its numbers mean nothing).

Times are medians of calls synchronised before and after (:func:`convtranspose.cuda.time_call`),
after warm-up; the first call, JIT compilation included, is reported on its own. cuDNN
runs with ``cudnn.benchmark = True``, once with TF32 off (strict fp32) and once on.
"""
from __future__ import annotations

import math
import statistics
import time

import numpy as np

from ..params import output_shape
from . import kernels, time_call

__all__ = ["peak_fp32", "scaled_batch", "measure"]

#: FP32 lanes per multiprocessor by compute capability (CUDA programming guide).
_FP32_LANES = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128,
               (9, 0): 128, (10, 0): 128, (12, 0): 128}


def peak_fp32():
    """Non-tensor FP32 peak of the current GPU, FLOP/s: SMs x lanes x 2 x boost clock."""
    from numba import cuda
    dev = cuda.get_current_device()
    lanes = _FP32_LANES.get(tuple(dev.compute_capability), 128)
    return dev.MULTIPROCESSOR_COUNT * lanes * 2 * dev.CLOCK_RATE * 1e3


def scaled_batch(shape, itemsize=4, min_gflop=20.0, min_gib=1.0, max_gib=8.0):
    """The batch that makes one call of suite ``shape`` do at least ``min_gflop`` GFLOP or
    move ``min_gib`` GiB (never below the suite's own batch), within ``max_gib`` GiB of
    input plus output.

    Examples
    --------
    >>> from convtranspose.suite import get
    >>> from convtranspose.cuda.bench import scaled_batch
    >>> scaled_batch(get("unet_up1"))        # 1 GiB of input and output
    112
    >>> scaled_batch(get("unet_up1"), min_gib=0.01)   # 20 GFLOP
    7
    """
    h_out, w_out = output_shape(shape.x_shape, shape.w_shape, **shape.kwargs())[2:]
    per_image_bytes = itemsize * (shape.c_in * shape.h * shape.w + shape.c_out * h_out * w_out)
    per_image_flop = shape.flops / shape.n
    want = max(min_gflop * 1e9 / per_image_flop, min_gib * 2**30 / per_image_bytes, shape.n)
    cap = max(1, int(max_gib * 2**30 // per_image_bytes))
    return int(min(math.ceil(want), cap))


def _median_ms(fn, repeat, smoke):
    if smoke:                       # CPU: nothing to synchronise
        fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1e3 * statistics.median(times)
    return 1e3 * statistics.median(time_call(fn, repeat=repeat, warmup=2))


def measure(shape, batch=None, dtype="float32", repeat=20, smoke=False, log=None):
    """Time suite ``shape`` (batch ``batch``, default its own) on the ``cuda`` backend and
    on cuDNN (TF32 off and on).

    Returns
    -------
    dict
        ``name``, ``n``, ``kernel`` ("gather"/"tiled"), ``first_s`` (first call, seconds),
        ``cuda_ms``, ``cudnn_fp32_ms``, ``cudnn_tf32_ms`` (medians, ms), ``gflops`` (of the
        cuda backend), ``err`` (max relative difference from cuDNN strict fp32); a time is
        NaN when that implementation failed, and ``log`` (a callable) is told why.
    """
    import torch
    import torch.nn.functional as F

    from ..api import conv_transpose2d
    dev = "cpu" if smoke else "cuda"
    n = shape.n if batch is None else batch
    tdtype = getattr(torch, str(np.dtype(dtype)))
    gen = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn((n, *shape.x_shape[1:]), generator=gen, device=dev, dtype=tdtype)
    bound = 1.0 / math.sqrt(shape.w_shape[1] * shape.k_hw[0] * shape.k_hw[1])
    w = (torch.rand(shape.w_shape, generator=gen, device=dev, dtype=tdtype) * 2 - 1) * bound
    b = (torch.rand(shape.c_out, generator=gen, device=dev, dtype=tdtype) * 2 - 1) * bound
    kw = shape.kwargs()
    if smoke:
        xn, wn, bn = x.numpy(), w.numpy(), b.numpy()
        call = lambda: torch.from_numpy(conv_transpose2d(xn, wn, bn, **kw))  # noqa: E731
        sync = lambda: None  # noqa: E731
    else:
        call = lambda: conv_transpose2d(x, w, b, **kw)  # noqa: E731
        sync = torch.cuda.synchronize
    conv = lambda: F.conv_transpose2d(x, w, b, **kw)  # noqa: E731
    log = log or (lambda msg: None)
    row = dict(name=shape.name, n=n, kernel=kernels.pick_kernel(tuple(x.shape), tuple(w.shape),
                                                                shape.groups),
               first_s=math.nan, cuda_ms=math.nan, cudnn_fp32_ms=math.nan,
               cudnn_tf32_ms=math.nan, gflops=math.nan, err=math.nan)
    ours = strict = None
    try:
        sync()
        t0 = time.perf_counter()
        ours = call()
        sync()
        row["first_s"] = time.perf_counter() - t0
        row["cuda_ms"] = _median_ms(call, repeat, smoke)
    except Exception as exc:            # record and go on: one shape must not lose the rest
        log(f"{shape.name}: cuda backend failed: {exc!r}")
    old = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32)
    torch.backends.cudnn.benchmark = True
    try:
        torch.backends.cudnn.allow_tf32 = False
        strict = conv()
        row["cudnn_fp32_ms"] = _median_ms(conv, repeat, smoke)
        torch.backends.cudnn.allow_tf32 = True
        row["cudnn_tf32_ms"] = _median_ms(conv, repeat, smoke)
    except Exception as exc:
        log(f"{shape.name}: cuDNN failed: {exc!r}")
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = old
    if ours is not None and strict is not None:
        scale = strict.abs().max().item() or 1.0
        row["err"] = (ours - strict).abs().max().item() / scale
    row["gflops"] = shape.flops / shape.n * n / row["cuda_ms"] / 1e6
    del x, w, b, ours, strict
    if not smoke:
        torch.cuda.empty_cache()
    return row
