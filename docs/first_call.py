"""First-call and peak-memory measurements quoted in docs/performance.md.

Usage: PYTHONPATH=src python docs/first_call.py first DTYPE   (one fresh process per call)
       PYTHONPATH=src python docs/first_call.py peak

``first``: seconds from ``import convtranspose`` to the result of one small call through
each CPU path (direct's gather kernel, im2col phase form, im2col col2im form, and the
engine's transposed convolution, correlation and weight gradient) in ``DTYPE``; run it in a new
process with an empty ``NUMBA_CACHE_DIR`` for the cold figure, then again for the warm one.
``peak``: for every suite shape and backend, the largest memory allocated during the call
(``tracemalloc``, which sees NumPy's allocations) beyond the output array.
"""
import sys
import time

t0 = time.perf_counter()
import numpy as np  # noqa: E402

if sys.argv[1] == "first":
    import convtranspose as ct  # noqa: E402
    dtype = np.dtype(sys.argv[2])
    x = np.ones((2, 4, 5, 5), dtype)
    w = np.ones((4, 3, 3, 3), dtype)
    t1 = time.perf_counter()
    ct.conv_transpose2d(x, w, stride=2, backend="auto")
    t2 = time.perf_counter()
    from convtranspose.cpu import direct, im2col
    from convtranspose.params import normalise
    params, shape, _ = normalise(x.shape, w.shape, None, [x.dtype], stride=2)
    direct.run(x, w, None, params, np.empty(shape, dtype))
    big = np.ones((2, 4, 40, 40), dtype)         # above the serial threshold
    p2, s2, _ = normalise(big.shape, w.shape, None, [x.dtype], stride=2)
    direct.run(big, w, None, p2, np.empty(s2, dtype))
    for form in im2col.FORMS.values():
        form(x, w, None, params, np.empty(shape, dtype))
    xe = np.ones((2, 16, 6, 6), dtype)           # a layer the register-blocked engine runs:
    we = np.ones((16, 8, 4, 4), dtype)           # its forward, correlation, weight gradient
    ye = ct.conv_transpose2d(xe, we, stride=2, padding=1, backend="direct")
    ct.conv_transpose2d_backward(ye, xe, we, stride=2, padding=1, backend="direct")
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
