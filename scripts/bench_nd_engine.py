"""The channels-last N-d engine (cpu/nd_engine.py) called directly against the backends
``direct`` (which runs it, with validation and dispatch) and ``auto``, and PyTorch, in one
run (2 threads, wall-clock medians, calls alternating).

Usage::

    python scripts/bench_nd_engine.py                       # float32, the layers below
    python scripts/bench_nd_engine.py --dtype float64 --reps 9

Columns: the N-d engine with channels-last input and output (``nd NHWC``: relayout,
weight packing and kernel, as a call would run them) and with channels-first ones (``nd
NCHW``); this library's ``direct`` and ``auto`` on NCHW; PyTorch on NCHW and in its
``channels_last`` memory format. The GEMM rate is ``np.matmul`` on 2048^3, 2 threads, in
the same run. Time per call in ms, and GFLOP/s for the N-d engine.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import convtranspose as ct
from convtranspose.cpu import nd_engine
from convtranspose.suite import HELD_OUT, SUITE

LAYERS = ["dcgan_g2", "dcgan_g3", "dcgan_g4", "unet_up1", "unet_up4", "dilated", "vae_dec"]


def _median(fns, reps):
    times = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            fn()
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: float(np.median(ts)) * 1e3 for name, ts in times.items()}


def _gemm(dtype, n=2048):
    a = np.ones((n, n), dtype)
    ms = _median({"gemm": lambda: a @ a}, 5)["gemm"]
    return 2 * n ** 3 / ms / 1e6


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--layers", default=",".join(LAYERS))
    args = ap.parse_args()
    dtype = np.dtype(args.dtype)
    shapes = {s.name: s for s in (*SUITE, *HELD_OUT)}
    try:
        import torch
        torch.set_num_threads(2)
    except ImportError:
        torch = None
    print(f"load average {os.getloadavg()[0]:.2f}; GEMM {_gemm(dtype):.0f} GFLOP/s ({dtype})")
    print(f"{'layer':14s} {'nd NHWC':>16s} {'nd NCHW':>9s} {'direct':>9s} {'auto':>9s} "
          f"{'torch':>9s} {'torch CL':>9s}")
    rng = np.random.default_rng(0)
    for name in args.layers.split(","):
        s = shapes[name]
        x = rng.standard_normal(s.x_shape).astype(dtype)
        w = rng.standard_normal(s.w_shape).astype(dtype)
        b = rng.standard_normal(s.w_shape[1] * s.groups).astype(dtype)
        kw = s.kwargs()
        y = ct.conv_transpose2d(x, w, b, **kw, backend="direct")
        pads = ((0, 0), *_pads(kw))
        stride = (1, *_pair(kw.get("stride", 1)))
        dilation = (1, *_pair(kw.get("dilation", 1)))
        x5, y5 = x[:, :, None], np.empty_like(y)[:, :, None]
        xl5 = np.ascontiguousarray(np.moveaxis(x5, 1, -1))
        yl5 = np.empty((y.shape[0], 1, *y.shape[2:], y.shape[1]), dtype)
        groups = s.groups
        fns = {
            "nd_nhwc": lambda: nd_engine.conv_transpose(xl5, w[:, :, None], b, stride, pads,
                                                        dilation, groups, yl5, True),
            "nd_nchw": lambda: nd_engine.conv_transpose(x5, w[:, :, None], b, stride, pads,
                                                        dilation, groups, y5, False),
            "direct": lambda: ct.conv_transpose2d(x, w, b, **kw, backend="direct"),
            "auto": lambda: ct.conv_transpose2d(x, w, b, **kw),
        }
        if torch is not None:
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            txl = tx.contiguous(memory_format=torch.channels_last)
            tkw = {k: v for k, v in kw.items()}
            with torch.no_grad():
                fns["torch"] = lambda: torch.nn.functional.conv_transpose2d(tx, tw, tb, **tkw)
                fns["torch_cl"] = lambda: torch.nn.functional.conv_transpose2d(txl, tw, tb,
                                                                               **tkw)
        fns["nd_nchw"]()
        err = np.abs(y5[:, :, 0] - y).max() / max(np.abs(y).max(), 1e-30)
        ms = _median(fns, args.reps)
        gflops = 2 * x.size * w.shape[1] * w.shape[2] * w.shape[3] / ms["nd_nhwc"] / 1e6
        cols = " ".join(f"{ms[k]:9.2f}" for k in ("nd_nchw", "direct", "auto"))
        tcols = " ".join(f"{ms[k]:9.2f}" for k in ("torch", "torch_cl")) if torch else ""
        print(f"{name:14s} {ms['nd_nhwc']:7.2f} ({gflops:4.0f} GF) {cols} {tcols}"
              f"   err {err:.1e}")


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads(kw):
    p = kw.get("padding", 0)
    if isinstance(p, int):
        return ((p, p), (p, p))
    if all(isinstance(v, int) for v in p):
        return tuple((v, v) for v in p)
    return tuple(p)


if __name__ == "__main__":
    main()
