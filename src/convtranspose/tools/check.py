"""Correctness sweep behind ``python -m convtranspose check``.

Every backend runs random valid problems (every parameter: strides, asymmetric padding,
output_padding, dilation, groups, unbatched, N = 0) and the benchmark suite, and is
compared with the float64 reference under the tolerance table of
:mod:`convtranspose.testing`.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from ..api import conv_transpose2d
from ..reference import conv_transpose2d_reference
from ..suite import SUITE
from ..testing import TOLERANCE, random_problem, relative_error

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


def _progress(stream, done, cases, start):
    """Report ``done`` of ``cases`` checked: a counter redrawn in place on a terminal;
    elsewhere (pipes, CI logs) whole lines, flushed: one at the start, then one per 100
    random problems, at the end of the random problems and per suite shape, so a long
    check is never silent."""
    total = len(cases)
    if stream.isatty():
        label = cases[done][1][:60] if done < total else "done"
        stream.write(f"\r{min(done + 1, total)}/{total} {label:<60}"
                     + ("\n" if done == total else ""))
    elif not done:
        kinds = [kind for kind, *_ in cases]
        stream.write(f"checking {kinds.count('random')} random problems and "
                     f"{kinds.count('suite')} suite shapes\n")
    elif (done == total or done % 100 == 0 or cases[done - 1][0] == "suite"
          or cases[done][0] != cases[done - 1][0]):
        kind, label = cases[done - 1][:2]
        stream.write(f"checked {done}/{total} (last: {kind} {label}) "
                     f"in {time.perf_counter() - start:.0f} s\n")
    stream.flush()


def run_check(backends, dtypes=(np.float32, np.float64), count=500, seed=0, suite=True,
              stream=None):
    """Run the sweep; print a table to ``stream`` (default stdout); return True when
    everything passed."""
    stream = sys.stdout if stream is None else stream
    stats = {}      # (backend, dtype, kind) -> [passed, total, worst error]
    failures = []
    cases = list(_cases(count, seed, suite))
    start = time.perf_counter()
    for i, (kind, label, case, s) in enumerate(cases):
        _progress(stream, i, cases, start)
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
    _progress(stream, len(cases), cases, start)
    stream.write(f"{'backend':<10}{'dtype':<9}{'cases':<8}{'passed':>12}{'max error':>12}"
                 f"{'tolerance':>12}  result\n")
    for (backend, dt, kind), (passed, total, worst) in sorted(stats.items()):
        verdict = "PASS" if passed == total else "FAIL"
        stream.write(f"{backend:<10}{dt:<9}{kind:<8}{f'{passed}/{total}':>12}"
                     f"{worst:>12.2e}{TOLERANCE[np.dtype(dt)]:>12.0e}  {verdict}\n")
    for line in failures[:20]:
        stream.write(f"FAIL {line}\n")
    return not failures
