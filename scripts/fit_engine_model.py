"""Fit the cost model's constants for the engine form of ``direct`` (cpu/nd_engine.py).

Usage::

    OPENBLAS_NUM_THREADS=1 python scripts/fit_engine_model.py [--reps 5]

One thread, the calling thread's CPU time (``time.thread_time``, median of ``--reps``, each
after an untimed call), float32, on the suite's layers that the engine runs
(:func:`convtranspose.cpu.direct.uses_engine`) and a few more of the same kind, each with
channels-first and with channels-last operands; the held-out layers are left out, so that
they judge the fit. Each time is split into what the model counts
(:func:`convtranspose.dispatch.engine_terms`): multiply-adds of the tiles, tiles, elements
of the input's copy, elements of a channels-first result and tasks; the constants are the
non-negative least-squares fit of the relative error, after the fixed cost of a call
(``dispatch._CALL_S``). Prints them and the fit's error per layer.
"""
from __future__ import annotations

import argparse
import time

import numba
import numpy as np
from scipy.optimize import nnls

from convtranspose import dispatch
from convtranspose.cpu import direct
from convtranspose.params import normalise
from convtranspose.suite import SUITE, _shape

EXTRA = (
    _shape("x_s2k3", 16, 128, 64, 16, 16, 3, 2, 1, op=1),
    _shape("x_s1k5", 4, 64, 64, 32, 32, 5, 1, 2),
    _shape("x_s4k8", 8, 64, 32, 8, 8, 8, 4, 2),
    _shape("x_c256", 16, 256, 256, 8, 8, 3, 1, 1),
    _shape("x_s2k2", 4, 64, 32, 64, 64, 2, 2, 0),
    _shape("x_g4", 8, 128, 128, 16, 16, 4, 2, 1, g=4),
    _shape("x_k1", 4, 256, 64, 32, 32, 1, 1, 0),
    _shape("x_c16", 8, 64, 16, 32, 32, 4, 2, 1),
)


def seconds(fn, reps):
    times = []
    for _ in range(reps):
        fn()
        t = time.thread_time()
        fn()
        times.append(time.thread_time() - t)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    numba.set_num_threads(1)
    rows, names, measured = [], [], []
    for s in SUITE + EXTRA:
        x, w, b = s.arrays(np.float32)
        params, shape, _ = normalise(x.shape, w.shape, b.shape, [x.dtype] * 3, **s.kwargs())
        if not direct.uses_engine(w.shape, params):
            continue
        for last in (False, True):
            xs = np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1) if last else x
            out = np.empty(shape, np.float32)
            if last:
                out = np.moveaxis(np.empty((shape[0], *shape[2:], shape[1]), np.float32), -1, 1)
            t = seconds(lambda: direct.run_engine(xs, w, b, params, out), args.reps)
            rows.append(dispatch.engine_terms(x.shape, w.shape, params, shape[2:], np.float32,
                                              last))
            names.append(s.name + (" NHWC" if last else ""))
            measured.append(max(t - dispatch._CALL_S, 1e-6))
    a = np.array(rows) / np.array(measured)[:, None]
    coef, _ = nnls(a, np.ones(len(rows)))
    labels = ["s per multiply-add (1/rate)", "s per tile", "s per copied input element",
              "s per channels-first result element", "s per task"]
    for label, c in zip(labels, coef):
        print(f"{label:<36} {c:.3g}" + (f"   ({2 / c / 1e9:.1f} GFLOP/s)" if label.startswith(
            "s per multiply") and c else ""))
    for name, t, row in zip(names, measured, rows):
        print(f"{name:<16} measured {t * 1e3:9.3f} ms  model {np.dot(row, coef) * 1e3:9.3f} ms")


if __name__ == "__main__":
    main()
