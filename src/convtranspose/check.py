"""Correctness sweep behind ``python -m convtranspose check``.

Every backend runs random valid problems (every parameter: strides, asymmetric padding,
output_padding, dilation, groups, unbatched, N = 0) and the benchmark suite, and is
compared with the float64 reference under the tolerance table of
:mod:`convtranspose.testing`.
"""
from __future__ import annotations

import sys

import numpy as np

from .api import conv_transpose2d
from .reference import conv_transpose2d_reference
from .suite import SUITE
from .testing import TOLERANCE, random_problem, relative_error

__all__ = ["run_check"]


def _cases(count, seed, suite):
    rng = np.random.default_rng(seed)
    for i in range(count):
        p = random_problem(rng)
        yield "random", str(p), p, i
    if suite:
        for shape in SUITE:
            yield "suite", shape.name, shape, 0


def _arrays(case, dtype, seed):
    if hasattr(case, "flops"):            # a suite Shape
        x, w, b = case.arrays(dtype, seed)
        return x, w, b, case.kwargs()
    x, w, b = case.arrays(dtype, seed)
    return x, w, b, case.kwargs


def run_check(backends, dtypes=(np.float32, np.float64), count=500, seed=0, suite=True,
              stream=None):
    """Run the sweep; print a table to ``stream`` (default stdout); return True when
    everything passed."""
    stream = sys.stdout if stream is None else stream
    stats = {}      # (backend, dtype, kind) -> [passed, total, worst error]
    failures = []
    cases = list(_cases(count, seed, suite))
    for i, (kind, label, case, s) in enumerate(cases):
        if stream.isatty():
            stream.write(f"\r{i + 1}/{len(cases)} {label[:60]:<60}")
            stream.flush()
        for dtype in map(np.dtype, dtypes):
            x, w, b, kw = _arrays(case, dtype, s)
            expected = conv_transpose2d_reference(x, w, b, **kw)
            for backend in backends:
                got = conv_transpose2d(x, w, b, backend=backend, **kw)
                err = relative_error(got, expected) if got.dtype == dtype else np.inf
                entry = stats.setdefault((backend, dtype.name, kind), [0, 0, 0.0])
                ok = err <= TOLERANCE[dtype]
                entry[0] += ok
                entry[1] += 1
                entry[2] = max(entry[2], err)
                if not ok:
                    failures.append(f"{backend} {dtype.name} {kind} {label}: error {err:.3g}")
    if stream.isatty():
        stream.write("\n")
    stream.write(f"{'backend':<10}{'dtype':<9}{'cases':<8}{'passed':>12}{'max error':>12}"
                 f"{'tolerance':>12}  result\n")
    for (backend, dt, kind), (passed, total, worst) in sorted(stats.items()):
        verdict = "PASS" if passed == total else "FAIL"
        stream.write(f"{backend:<10}{dt:<9}{kind:<8}{f'{passed}/{total}':>12}"
                     f"{worst:>12.2e}{TOLERANCE[np.dtype(dt)]:>12.0e}  {verdict}\n")
    for line in failures[:20]:
        stream.write(f"FAIL {line}\n")
    return not failures
