"""First-call and peak-memory measurements quoted in docs/performance.md.

Usage: PYTHONPATH=src python docs/first_call.py first DTYPE   (one fresh process per call)
       PYTHONPATH=src python docs/first_call.py peak

``first``: seconds from ``import convtranspose`` to the result of one small ``auto`` call,
then to every CPU kernel of ``DTYPE`` compiled or loaded (the steps of
``convtranspose.tools.precompile.STEPS``, as ``python -m convtranspose compile`` runs them, a line
each); run it in a new process with an empty ``NUMBA_CACHE_DIR`` for the cold figure, then
again for the warm one.
``peak``: for every suite shape and backend, the largest memory allocated during the call
(``tracemalloc``, which sees NumPy's allocations) beyond the output array.
"""
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402

if sys.argv[1] == "first":
    import convtranspose as ct  # noqa: E402
    from convtranspose.tools.precompile import compile_kernels  # noqa: E402
    dtype = np.dtype(sys.argv[2])
    x = np.ones((2, 4, 5, 5), dtype)
    w = np.ones((4, 3, 3, 3), dtype)
    t1 = time.perf_counter()
    ct.conv_transpose2d(x, w, stride=2, backend="auto")
    t2 = time.perf_counter()
    compile_kernels([dtype], stream=sys.stdout)
    t3 = time.perf_counter()
    print(f"{dtype}: import {t1 - t0:.2f} s, first auto call done at {t2 - t0:.2f} s, "
          f"every CPU kernel compiled/loaded at {t3 - t0:.2f} s")
else:
    import tracemalloc
    import convtranspose as ct
    from convtranspose.cpu import im2col
    from convtranspose.suite import SUITE
    tracemalloc.start()
    worst = 0
    for s in SUITE:
        x, w, b = s.arrays(np.float32)
        row = [f"{s.name:13s}"]
        for backend in ("direct", "im2col"):
            ct.conv_transpose2d(x, w, b, backend=backend, **s.kwargs())   # compile
            im2col.release_workspace()
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            y = ct.conv_transpose2d(x, w, b, backend=backend, **s.kwargs())
            extra = tracemalloc.get_traced_memory()[1] - base - y.nbytes
            worst = max(worst, extra)
            row.append(f"{backend} {extra / 2**20:8.2f} MiB")
            del y
        print(" | ".join(row), flush=True)
    print(f"largest extra: {worst / 2**20:.1f} MiB")
